"""Bad input against a live ingest: malformed payloads of every kind, a device flooding
far above its budget, clocks beyond the skew bound. Each rejected message reaches the
dead-letter topic with its reason; valid traffic alongside loses nothing."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from ingest import deadletter
from ingest.service import IngestService
from pantau.city import City
from pantau.devices import Device
from pantau.influx.lineprotocol import series_key, to_line
from pantau.influx.query import InfluxQL
from pantau.influx.writers import make_writer
from pantau.readings import Reading
from pantau.settings import Settings
from pantau.topics import Topics
from pantau.wire import Sample, encode_native
from testkit.mqtt import Collector, Publisher
from testkit.payloads import malformed, native
from testkit.services import MEASUREMENT, stored_keys, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def ingest(settings: Settings, city: City) -> Iterator[IngestService]:
    service = IngestService(settings, city, make_writer(settings.influx))
    service.start()
    assert service.wait_subscribed(10)
    yield service
    service.stop()


def test_a_thousand_malformed_payloads_are_dead_lettered_with_their_reason(
    settings: Settings, city: City, ingest: IngestService
) -> None:
    topics = Topics(settings.mqtt.root)
    dead = Collector(settings.mqtt, topics.all_deadletter)
    pub = Publisher(settings.mqtt)
    devices = sorted(
        d.id for d in city.devices.values() if MEASUREMENT in city.devices[d.id].metrics
    )
    now = datetime.now(UTC).replace(microsecond=0)
    want: Counter[tuple[str, int, str]] = Counter()
    valid: set[tuple[str, int]] = set()
    for n in range(1200):
        device = devices[n % len(devices)]
        reason, payload = malformed(device, now, n)
        pub.publish(topics.sensor_up(device), payload)
        want[(reason, *deadletter.fingerprint(payload))] += 1
        # valid traffic interleaved, which must all land
        when = now - timedelta(minutes=30) + timedelta(seconds=n // len(devices))
        pub.publish(topics.sensor_up(device), native(device, when, seq=n))
        valid.add((device, int(when.timestamp() * 1000)))
    pub.close()

    wait_until(lambda: len(dead.snapshot()) >= sum(want.values()), 120, "every dead letter")
    wait_until(lambda: sum(stored_keys(settings).values()) >= len(valid), 60, "valid readings")
    time.sleep(1)  # anything extra would show up now
    letters = [deadletter.decode(bytes(m.payload)) for m in dead.snapshot()]
    dead.close()
    got = Counter(deadletter.envelope_fingerprint(bytes(m.payload)) for m in dead.snapshot())
    assert got == want  # each payload, byte-exact up to KEEP_BYTES, by size and hash beyond
    for letter in letters:
        assert len(letter.payload) <= deadletter.KEEP_BYTES
    assert all(letter.detail for letter in letters)
    assert set(stored_keys(settings)) == valid
    assert ingest.wait_subscribed(0), "ingest is still up and subscribed"
    assert sum(ingest.stats.rejected.values()) == sum(want.values())


def test_a_noisy_device_is_shed_and_reported_while_the_others_lose_nothing(
    settings: Settings, city: City, ingest: IngestService, devices: list[Device]
) -> None:
    topics = Topics(settings.mqtt.root)
    dead = Collector(settings.mqtt, topics.deadletter("rate_limited"))
    pub = Publisher(settings.mqtt)
    noisy, calm = devices[0], devices[1:101]
    factor = settings.ingest.rate_limit_factor
    now = datetime.now(UTC)
    start = now - timedelta(hours=1)
    sent_noisy = 0
    began = time.monotonic()
    expected_calm: set[tuple[str, int]] = set()
    for tick in range(5 * 10):  # 5 s: the noisy device 50 messages per 0.1 s = 500/s
        for k in range(50):
            n = tick * 50 + k
            when = now + timedelta(milliseconds=2 * n)  # its clock: 500 readings a second
            payload = encode_native(noisy.id, n, when, [Sample(MEASUREMENT, -50.0)])
            pub.publish(topics.sensor_up(noisy.id), payload)
            sent_noisy += 1
        for i, d in enumerate(calm):  # the others: one reading a minute of device time
            if (tick + i) % 10 == 0:
                when = start + timedelta(minutes=tick // 10 * 10 + i % 10)
                pub.publish(
                    topics.sensor_up(d.id),
                    encode_native(d.id, tick, when, [Sample(MEASUREMENT, -70.0)]),
                )
                expected_calm.add((d.id, int(when.timestamp() * 1000)))
        time.sleep(max(0.0, began + (tick + 1) * 0.1 - time.monotonic()))
    pub.close()

    def stored_noisy() -> int:
        return sum(1 for device, _ in stored_keys(settings) if device == noisy.id)

    wait_until(
        lambda: len(dead.snapshot()) + stored_noisy() >= sent_noisy, 60, "the noisy device judged"
    )
    wait_until(
        lambda: expected_calm <= set(stored_keys(settings)), 60, "every calm device's reading"
    )
    time.sleep(1)
    shed = len(dead.snapshot())
    kept = stored_noisy()
    # It was held to its budget: `factor` messages per report interval of its clock (the
    # 5 s may straddle two windows), and every message it lost was reported.
    assert kept <= 2 * factor
    assert shed + kept == sent_noisy
    assert shed >= sent_noisy - 2 * factor
    letter = deadletter.decode(bytes(dead.snapshot()[0].payload))
    assert letter.reason == "rate_limited" and noisy.id in letter.topic
    assert "messages per" in letter.detail
    dead.close()
    others = {k for k in stored_keys(settings) if k[0] != noisy.id}
    assert others == expected_calm
    assert ingest.stats.rejected == Counter({"rate_limited": shed})


def test_clock_skew_beyond_the_bound_is_quarantined_and_overwrites_nothing(
    settings: Settings, city: City, ingest: IngestService, devices: list[Device]
) -> None:
    topics = Topics(settings.mqtt.root)
    dead = Collector(settings.mqtt, topics.deadletter("bad_timestamp"))
    device = devices[0]
    skew = timedelta(seconds=settings.ingest.max_future_skew_s)
    max_age = timedelta(seconds=settings.ingest.max_age_s)
    now = datetime.now(UTC).replace(microsecond=0)
    old = now - max_age - timedelta(hours=1)  # a point stored before, by a backfill
    ms_old = int(old.timestamp() * 1000)
    # the same series (measurement and tags) ingest writes, so a write would overwrite it
    writer = make_writer(settings.influx)
    stored = Reading(device_id=device.id, metric=MEASUREMENT, value=-42.0, unit="dBm", time=old)
    writer.write([to_line(stored, series_key(device))])
    writer.close()
    pub = Publisher(settings.mqtt)
    within = now + skew - timedelta(seconds=30)
    beyond = [now + skew + timedelta(seconds=60), now + timedelta(days=2), old]
    for when in beyond:
        pub.publish(
            topics.sensor_up(device.id),
            encode_native(device.id, None, when, [Sample(MEASUREMENT, -99.0)]),
        )
    pub.publish(
        topics.sensor_up(device.id),
        encode_native(device.id, None, within, [Sample(MEASUREMENT, -60.0)]),
    )
    pub.close()
    wait_until(lambda: len(dead.snapshot()) >= len(beyond), 30, "the skewed readings")
    ms_within = int(within.timestamp() * 1000)
    wait_until(lambda: (device.id, ms_within) in stored_keys(settings), 30, "the reading within")
    time.sleep(0.5)
    letters = [deadletter.decode(bytes(m.payload)) for m in dead.snapshot()]
    dead.close()
    assert len(letters) == len(beyond)
    assert all(letter.reason == "bad_timestamp" for letter in letters)
    assert sum("ahead" in letter.detail for letter in letters) == 2
    assert sum("older than" in letter.detail for letter in letters) == 1
    with InfluxQL.from_settings(settings.influx) as influx:
        rows = influx.rows(f'SELECT value FROM "{MEASUREMENT}"', epoch="ms")
    values = {int(str(r["time"])): r["value"] for r in rows}
    assert values == {ms_old: -42.0, ms_within: -60.0}  # the stored point kept its value
