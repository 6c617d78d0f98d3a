"""ingest's drain: several InfluxDB writes in flight at once, the spool's cursor moved
in spool order only, so InfluxDB going away mid-drain loses nothing."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ingest.service import IngestService, IngestStats
from ingest.spool import Spool
from pantau.city import City, load_city
from pantau.devices import Device
from pantau.influx.writers import make_writer
from pantau.local import LocalStack
from pantau.settings import Settings
from pantau.topics import Topics
from pantau.wire import SENML_CONTENT_TYPE
from testkit.mqtt import Publisher
from testkit.services import Key, stored_keys, wait_until

pytestmark = pytest.mark.integration

CONCURRENCY = 4
CYCLES = 4
PACKS = 20  # per pack of BIG readings, SMALL packs of one reading
BIG = 999  # SenML: at most 1,000 records a pack, the base one included
SMALL = 40
TOTAL = PACKS * (BIG + SMALL)
_DEVICE = re.compile(rb",device=([^,]+)")


@pytest.fixture(scope="module")
def city() -> City:
    return load_city()


def pack(device: Device, start: datetime, first: int, size: int) -> bytes:
    """SenML water levels `first`.. `first + size - 1` seconds after `start`."""
    records: list[dict[str, object]] = [
        {"bn": f"{device.id}/", "bt": int(start.timestamp()) + first, "bu": "cm"}
    ]
    records += [{"n": "water_level", "v": 100.0 + j % 50, "t": j} for j in range(size)]
    return json.dumps(records).encode()


def spooled_keys(directory: Path) -> set[Key]:
    """(device, time) of every line in the spool from its cursor on: not yet in InfluxDB
    as far as the spool knows, so the next run writes them."""
    spool = Spool(directory, max_bytes=1024**3, segment_bytes=16 * 1024**2).open()
    keys = set()
    try:
        while (chunk := spool.read(1024**2, timeout=0)) is not None:
            for record in chunk.records:
                for line in record.split(b"\n"):
                    match = _DEVICE.search(line)
                    assert match is not None, line
                    keys.add((match.group(1).decode(), int(line.rsplit(b" ", 1)[1])))
    finally:
        spool.close()
    return keys


def test_writes_overlap_yet_the_cursor_never_passes_a_chunk_not_written(
    stack: LocalStack,
    settings: Settings,
    city: City,
    tmp_path: Path,
) -> None:
    spool_dir = tmp_path / "spool"
    # Batches of up to 10 readings, so a pack of BIG is a batch (and a chunk) of its own
    # between chunks of 10 single readings: the small writes after a big one are done
    # before it, and the cursor must wait for the big one.
    settings = settings.model_copy(
        update={
            "ingest": settings.ingest.model_copy(
                update={
                    "spool_dir": spool_dir,
                    "batch_max_points": 10,
                    "drain_batch_bytes": 1024,
                    "write_concurrency": CONCURRENCY,
                    "stop_drain_s": 0.5,
                }
            )
        }
    )

    def service() -> IngestService:
        writer = make_writer(settings.influx, connections=CONCURRENCY + 1)
        return IngestService(settings, city, writer)

    topics = Topics(settings.mqtt.root)
    devices = [d for d in city.devices.values() if "water_level" in d.metrics][:PACKS]
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    pub = Publisher(settings.mqtt)
    # 1. A backlog in the spool: everything acknowledged while InfluxDB is away.
    first = service()
    first.start()
    try:
        assert first.wait_subscribed(10)
        stack.influxd.stop()
        for device in devices:
            topic = topics.sensor_up(device.id)
            pub.publish(topic, pack(device, start, 0, BIG), SENML_CONTENT_TYPE)
            for i in range(SMALL):
                pub.publish(topic, pack(device, start, BIG + i, 1), SENML_CONTENT_TYPE)
        pub.flush()
        wait_until(lambda: first.stats.readings_spooled == TOTAL, 60, "everything spooled")
    finally:
        first.stop()  # InfluxDB away: it gives up on it, the spool keeps everything
        pub.close()
        if not stack.influxd.running:
            stack.influxd.start()
    assert first.stats.readings_written == 0

    # 2. Drain it with several writes in flight and take InfluxDB away mid-drain (killed:
    # the writes in flight are cut off), a few times over.
    for _ in range(CYCLES):
        drain = service()
        drain.start()
        try:

            def progressed(stats: IngestStats = drain.stats) -> bool:
                return stats.readings_written >= TOTAL // 10

            wait_until(progressed, 30, "the drain under way", 0.002)
            stack.influxd.kill()
            time.sleep(1.0)  # the writers fail and retry
        finally:
            drain.stop()  # gives up after stop_drain_s: the rest stays in the spool
            if not stack.influxd.running:
                stack.influxd.start()

        # 3. The cursor never passed a chunk InfluxDB did not have: each reading is
        # either stored or in the spool from the cursor on.
        stored = set(stored_keys(settings, "water_level"))
        pending = spooled_keys(spool_dir)
        assert stored and pending, "InfluxDB went away before the drain began or after it ended"
        assert len(stored | pending) == TOTAL, TOTAL - len(stored | pending)

    # 4. The next run writes the rest: every reading once.
    third = service()
    began = time.monotonic()
    third.start()
    try:
        wait_until(third.spool.drained, 60, "the spool drained", 0.01)
        wall_s = time.monotonic() - began
    finally:
        third.stop()
    # The writes took longer, added up, than the whole drain: they overlapped.
    assert third.stats.write_seconds > wall_s, (third.stats.write_seconds, wall_s)
    final = stored_keys(settings, "water_level")
    assert len(final) == TOTAL
    assert max(final.values()) == 1
