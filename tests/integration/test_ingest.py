"""Ingest against the real broker and InfluxDB started for the test run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from ingest import deadletter
from ingest.service import IngestService
from pantau.city import City, load_city
from pantau.influx.query import InfluxQL
from pantau.influx.writers import make_writer
from pantau.local import LocalStack
from pantau.settings import Settings
from pantau.topics import Topics
from pantau.wire import SENML_CONTENT_TYPE, Sample, encode_native, encode_senml
from testkit.mqtt import Collector, Publisher, RssiStream, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def city() -> City:
    return load_city()


@pytest.fixture
def ingest(settings: Settings, city: City) -> Iterator[IngestService]:
    service = IngestService(settings, city, make_writer(settings.influx))
    service.start()
    assert service.wait_subscribed(10)
    yield service
    service.stop()


def stored_per_device(settings: Settings, measurement: str = "/.*/") -> Counter[str]:
    with InfluxQL.from_settings(settings.influx) as influx:
        rows = influx.rows(f"SELECT count(value) FROM {measurement} GROUP BY device")
    counts: Counter[str] = Counter()
    for row in rows:
        counts[str(row["device"])] += int(str(row["count"]))
    return counts


def test_valid_readings_once_each_and_rejects_dead_lettered_with_reason(
    settings: Settings, city: City, ingest: IngestService
) -> None:
    topics = Topics(settings.mqtt.root)
    dead = Collector(settings.mqtt, topics.all_deadletter)
    pub = Publisher(settings.mqtt)
    devices = [d for d in city.devices.values() if d.kind == "water_level_station"][:20]
    start = datetime.now(UTC) - timedelta(hours=1)
    expected: Counter[str] = Counter()
    for i in range(50):
        when = start + timedelta(seconds=60 * i)
        for n, d in enumerate(devices):
            samples = [Sample("water_level", 50.0 + i, "cm"), Sample("battery", 90.0, "%")]
            if n % 2:
                payload = encode_senml(d.id, when, samples)
                pub.publish(topics.sensor_up(d.id), payload, SENML_CONTENT_TYPE)
            else:
                payload = encode_native(d.id, i, when, samples)
                pub.publish(topics.sensor_up(d.id), payload)
            if i % 10 == 0:  # a redelivered duplicate must not be stored twice
                pub.publish(topics.sensor_up(d.id), payload)
            expected[d.id] += 2
    d0 = devices[0]
    bad = {
        "malformed_json": (topics.sensor_up(d0.id), b'{"device": '),
        "unknown_device": (topics.sensor_up("no-such-device"), b"{}"),
        "device_mismatch": (
            topics.sensor_up(d0.id),
            encode_native(devices[1].id, 1, start, [Sample("battery", 1.0)]),
        ),
        "bad_unit": (
            topics.sensor_up(d0.id),
            encode_native(d0.id, 1, start, [Sample("water_level", 1.0, "furlong")]),
        ),
        "out_of_range": (
            topics.sensor_up(d0.id),
            encode_native(d0.id, 1, start, [Sample("water_level", 99999.0, "cm")]),
        ),
        "bad_timestamp": (
            topics.sensor_up(d0.id),
            encode_native(d0.id, 1, start + timedelta(days=3), [Sample("battery", 1.0)]),
        ),
        "unknown_metric": (
            topics.sensor_up(d0.id),
            encode_native(d0.id, 1, start, [Sample("rainfall_rate", 1.0, "mm/h")]),
        ),
    }
    for topic, payload in bad.values():
        pub.publish(topic, payload)
    pub.close()

    wait_for(lambda: len(dead.snapshot()) >= len(bad), 30, "dead letters")
    wait_for(lambda: stored_per_device(settings) == expected, 30, "every valid reading stored")
    time.sleep(0.5)  # anything extra would show up now
    assert stored_per_device(settings) == expected
    letters = {m.topic: deadletter.decode(bytes(m.payload)) for m in dead.snapshot()}
    assert len(dead.snapshot()) == len(bad)
    for reason, (topic, payload) in bad.items():
        letter = letters[topics.deadletter(reason)]
        assert (letter.reason, letter.topic, letter.payload) == (reason, topic, payload)
        assert letter.detail
    dead.close()
    assert ingest.stats.rejected == Counter({r: 1 for r in bad})


def test_kill_9_mid_stream_loses_nothing(stack: LocalStack, settings: Settings, city: City) -> None:
    env = {
        **os.environ,
        **stack.environment(),
        "PANTAU_MQTT__ROOT": settings.mqtt.root,
        "PANTAU_INFLUX__DATABASE": settings.influx.database,
        "PANTAU_INGEST__CLIENT_ID": f"ingest-{settings.mqtt.root}",
    }
    cmd = [sys.executable, "-m", "pantau.cli", "ingest"]

    def start_ingest() -> subprocess.Popen[bytes]:
        return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    topics = Topics(settings.mqtt.root)
    devices = list(city.devices.values())[:100]
    start = datetime.now(UTC) - timedelta(hours=2)
    total = 20_000
    pub = Publisher(settings.mqtt)

    def wait_until_subscribed() -> None:
        # Readings sent before ingest's first subscription have no session to wait in,
        # so probe (battery, not counted below) until one is stored.
        probe = devices[0]

        def probe_stored() -> bool:
            pub.publish(
                topics.sensor_up(probe.id),
                encode_native(probe.id, None, datetime.now(UTC), [Sample("battery", 50.0)]),
            )
            time.sleep(0.3)
            return bool(stored_per_device(settings, "battery"))

        wait_for(probe_stored, 30, "ingest to subscribe")

    def stored() -> int:
        return sum(stored_per_device(settings, "rssi").values())

    proc = start_ingest()
    wait_until_subscribed()
    killed_at = -1
    try:
        for i in range(total):
            d = devices[i % len(devices)]
            when = start + timedelta(seconds=i // len(devices))
            payload = encode_native(d.id, i, when, [Sample("rssi", -70.0)])
            pub.publish(topics.sensor_up(d.id), payload)
            if i == total // 3:
                pub.flush()
                # wait until ingest has really written some, then kill it mid-stream
                wait_for(lambda: stored() > 0, 30, "first writes")
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                killed_at = stored()
                proc = start_ingest()
        pub.close()
        wait_for(lambda: stored() == total, 90, "all readings")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert 0 < killed_at < total, "the kill must land mid-stream"
    assert stored_per_device(settings, "rssi") == Counter(
        {d.id: total // len(devices) for d in devices}
    ), err.decode()[-2000:]
    with InfluxQL.from_settings(settings.influx) as influx:
        (row,) = influx.rows('SELECT count(value), count(seq) FROM "rssi"')
    assert row["count"] == row["count_1"] == total
    assert json.dumps(row)  # rows are plain JSON values


def test_influxdb_outage_mid_stream_loses_nothing(
    stack: LocalStack, settings: Settings, city: City, ingest: IngestService
) -> None:
    devices = list(city.devices.values())[:50]
    stream = RssiStream(settings.mqtt, devices)
    publish = stream.send
    publish(0, 2000)
    wait_for(lambda: sum(stored_per_device(settings, "rssi").values()) == 2000, 30, "first half")
    stack.influxd.stop()
    try:
        publish(2000, 4000)  # accepted by the broker while InfluxDB is down
        time.sleep(2)  # ingest retries meanwhile and acknowledges nothing
    finally:
        stack.influxd.start()
    wait_for(lambda: sum(stored_per_device(settings, "rssi").values()) == 4000, 60, "backlog")
    assert stored_per_device(settings, "rssi") == Counter({d.id: 80 for d in devices})
    stream.close()
