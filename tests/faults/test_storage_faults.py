"""InfluxDB outages and ingest crashes under load: stored equals sent, point for point.

Load: 200 devices, one QoS 1 `rssi` reading per message, 400 msg/s (the full-length
figures at 2,000+/s from 1,000+ devices are bench/faults.py's).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from pantau.devices import Device
from pantau.local import LocalStack
from pantau.settings import Settings
from tests.faults.harness import (
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
