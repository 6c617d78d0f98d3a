"""InfluxDB outages and ingest crashes under load: stored equals sent, point for point.

Load: 200 devices, one QoS 1 `rssi` reading per message, 400 msg/s (the full-length
figures at 2,000+/s from 1,000+ devices are bench/faults.py's).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ingest import deadletter
from pantau.devices import Device
from pantau.influx.lineprotocol import series_key
from pantau.influx.writers import make_writer
from pantau.local import LocalStack
from pantau.settings import Settings
from pantau.topics import Topics
from pantau.wire import Sample, encode_native
from testkit.mqtt import Collector, Publisher
from testkit.services import (
    IngestProcess,
    PacedLoad,
    directory_bytes,
    stored_count,
    stored_keys,
    wait_ingesting,
    wait_until,
)

pytestmark = pytest.mark.integration

RATE = 400.0
OUTAGE_S = 15.0


def assert_stored_exactly(settings: Settings, load: PacedLoad) -> None:
    keys = stored_keys(settings)
    assert sum(keys.values()) == load.total, "lost or extra readings"
    assert set(keys) == load.keys, "stored points are not the points sent"
    assert max(keys.values()) == 1, "a (device, time) stored twice"


def test_influxdb_down_under_load_spools_to_disk_and_drains_exactly(
    stack: LocalStack, settings: Settings, devices: list[Device], probe: Device, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    ingest = IngestProcess(stack, settings, spool, tmp_path / "ingest.log")
    ingest.start()
    try:
        wait_ingesting(settings, probe)
        load = PacedLoad(settings, devices, RATE).start()
        time.sleep(3)
        stack.influxd.stop()
        try:
            down_at = time.monotonic()
            spooled = [directory_bytes(spool)]
            while time.monotonic() - down_at < OUTAGE_S:
                time.sleep(1)
                spooled.append(directory_bytes(spool))
            sent_while_down = load.total
        finally:
            stack.influxd.start()
        load.stop()
        recovery_s = wait_until(
            lambda: stored_count(settings) >= load.total, 120, "the backlog in InfluxDB"
        )
        assert ingest.alive(), ingest.log_tail()
        # The backlog waited in the spool (acknowledged, so not in the broker) and grew
        # while InfluxDB was down.
        assert spooled[-1] > spooled[0] + 100_000, spooled
        assert sent_while_down > RATE * (OUTAGE_S + 2)
        assert recovery_s < 60
        assert_stored_exactly(settings, load)
        # What InfluxDB took is deleted: whole segments, down to the one being appended.
        wait_until(lambda: len(list(spool.glob("*.seg"))) == 1, 10, "written segments deleted")
    finally:
        ingest.stop()


def test_ingest_sigkilled_under_load_loses_nothing(
    stack: LocalStack, settings: Settings, devices: list[Device], probe: Device, tmp_path: Path
) -> None:
    ingest = IngestProcess(stack, settings, tmp_path / "spool", tmp_path / "ingest.log")
    ingest.start()
    try:
        wait_ingesting(settings, probe)
        load = PacedLoad(settings, devices, RATE).start()
        at_kill = [0]
        for _ in range(3):
            # a restarted ingest first makes progress, then dies mid-stream again
            wait_until(lambda: stored_count(settings) > at_kill[-1], 60, "ingest to write")
            time.sleep(2)
            ingest.kill()
            at_kill.append(stored_count(settings))
            ingest.start()
        time.sleep(3)
        load.stop()
        wait_until(lambda: stored_count(settings) >= load.total, 120, "every reading stored")
        assert ingest.kills == 3
        # each kill landed mid-stream, with ingest making progress in between
        assert 0 < at_kill[1] < at_kill[2] < at_kill[3] < load.total, at_kill
        assert_stored_exactly(settings, load)
    finally:
        ingest.stop()


def test_lines_influxdb_refuses_are_dead_lettered_with_its_reason_and_the_rest_lands(
    stack: LocalStack, settings: Settings, probe: Device, tmp_path: Path
) -> None:
    """A 4xx is never retried: the refused lines are isolated and dead-lettered with the
    server's message; the others of the batch are stored."""
    topics = Topics(settings.mqtt.root)
    now = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    # `rssi` with a string field in this shard: every float `value` after it conflicts
    writer = make_writer(settings.influx)
    writer.write([f'rssi{series_key(probe)} value="broken" {int(now.timestamp() * 1000) - 1}'])
    writer.close()
    dead = Collector(settings.mqtt, topics.all_deadletter)
    ingest = IngestProcess(stack, settings, tmp_path / "spool", tmp_path / "ingest.log")
    ingest.start()
    try:
        pub = Publisher(settings.mqtt)
        wait_ingesting(settings, probe)
        for i in range(10):
            when = now + timedelta(seconds=i)
            samples = [Sample("rssi", -70.0), Sample("battery", 80.0)]
            pub.publish(topics.sensor_up(probe.id), encode_native(probe.id, i, when, samples))
        pub.close()
        wait_until(lambda: len(dead.snapshot()) >= 10, 60, "ten dead letters")
        wait_until(lambda: stored_count(settings, "battery") >= 11, 30, "the batteries")
        time.sleep(1)
        letters = [deadletter.decode(bytes(m.payload)) for m in dead.snapshot()]
        assert len(letters) == 10
        assert {letter.reason for letter in letters} == {"influx_rejected"}
        assert all("field type conflict" in letter.detail for letter in letters), letters[0]
        assert all(letter.payload.startswith(b"rssi,") for letter in letters)
        assert stored_count(settings, "battery") == 11  # ten and the probe
        assert ingest.alive()
    finally:
        dead.close()
        ingest.stop()
