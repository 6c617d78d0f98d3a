"""Simulator -> real Mosquitto -> ingest -> real InfluxDB, on the storm scenario.

The simulator's report is the ground truth: every valid reading it published must be
in InfluxDB exactly once (counted per device and as point identities), and every
malformed message must come back on the dead-letter topic with the reason the
simulator meant it to have.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from ingest import deadletter
from ingest.service import IngestService
from pantau.city import load_city
from pantau.influx.query import InfluxQL
from pantau.influx.writers import make_writer
from pantau.settings import Settings
from pantau.topics import Topics
from simulators.publisher import run_scenario
from simulators.scenario import find_scenario, load_scenario
from testkit.mqtt import Collector, wait_for

pytestmark = pytest.mark.integration


def test_storm_scenario_lands_exactly_once_and_rejects_carry_their_reason(
    settings: Settings,
) -> None:
    city = load_city()
    scenario = load_scenario(find_scenario("storm-karawaci"), city)
    topics = Topics(settings.mqtt.root)
    dead = Collector(settings.mqtt, topics.all_deadletter)
    births = Collector(settings.mqtt, f"{settings.mqtt.root}/devices/+/status")
    ingest = IngestService(settings, city, make_writer(settings.influx))
    ingest.start()
    try:
        assert ingest.wait_subscribed(10)
        report = run_scenario(city, scenario, settings.mqtt, speed=None)
        assert report.completed and report.failed == 0
        assert report.malformed, "the storm scenario injects malformed payloads"

        influx = InfluxQL.from_settings(settings.influx)

        def per_device() -> Counter[str]:
            rows = influx.rows("SELECT count(value) FROM /.*/ GROUP BY device")
            counts: Counter[str] = Counter()
            for row in rows:
                counts[str(row["device"])] += int(str(row["count"]))
            return counts

        expected = Counter(k.device_id for k in report.reading_keys)
        wait_for(lambda: per_device() == expected, 90, "every valid reading in InfluxDB")
        wait_for(lambda: len(dead.snapshot()) >= report.expected_rejections, 30, "all dead letters")
        time.sleep(1.0)  # a late duplicate or extra dead letter would show up now
        assert per_device() == expected
        assert sum(expected.values()) == report.valid_readings

        # identities, not just counts: each (device, metric, time) the simulator sent
        stored = {
            (str(row["device"]), series.name, int(str(row["time"])))
            for series in influx.query("SELECT value FROM /.*/ GROUP BY device", epoch="ms")
            for row in series.rows()
        }
        sent = {(k.device_id, k.metric, ms(k.time)) for k in report.reading_keys}
        assert stored == sent
        influx.close()

        letters = [deadletter.decode(bytes(m.payload)) for m in dead.snapshot()]
        assert len(letters) == report.expected_rejections
        got = Counter((letter.reason, letter.payload) for letter in letters)
        want = Counter[tuple[str, bytes]]()
        for m in report.malformed:
            want[(m.reason, m.payload)] += m.rejections
        assert got == want
        assert all(m.topic.startswith(f"{settings.mqtt.root}/deadletter/") for m in dead.snapshot())

        # every device announced itself with a retained birth naming its gateway
        statuses = {m.topic: json.loads(m.payload) for m in births.snapshot()}
        for device_id in city.devices:
            assert statuses[topics.device_status(device_id)]["device"] == device_id
    finally:
        ingest.stop()
        dead.close()
        births.close()
    per_reason = Counter[str]()
    for m in report.malformed:
        per_reason[m.reason] += m.rejections
    assert ingest.stats.rejected == per_reason
    assert datetime.now(UTC) > report.end  # simulated time never ran ahead of the wall clock


def ms(when: datetime) -> int:
    return (when - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
