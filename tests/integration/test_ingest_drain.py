"""ingest's drain: several InfluxDB writes in flight at once, the spool's cursor moved
in spool order only, so InfluxDB going away mid-drain loses nothing."""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path

import pytest

from ingest.service import IngestService
from ingest.spool import Spool
from pantau.city import City, load_city
from pantau.influx.writers import make_writer
from pantau.local import LocalStack
from pantau.settings import Settings
from testkit.mqtt import RssiStream
from testkit.services import Key, stored_keys, wait_until

pytestmark = pytest.mark.integration

TOTAL = 20_000
CONCURRENCY = 4
_DEVICE = re.compile(rb",device=([^,]+)")


@pytest.fixture(scope="module")
def city() -> City:
    return load_city()


def spooled_keys(directory: Path) -> set[Key]:
    """(device, time) of every line in the spool from its cursor on: not yet in InfluxDB
    as far as the spool knows, so the next run writes them."""
    spool = Spool(directory, max_bytes=1024**3, segment_bytes=16 * 1024**2).open()
    keys = set()
    try:
        while (chunk := spool.read(1024**2, timeout=0)) is not None:
            spool.commit(chunk.end)  # only to read on: this spool object is thrown away
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
    caplog: pytest.LogCaptureFixture,
) -> None:
    spool_dir = tmp_path / "spool"
    # Batches of 10 lines, a chunk each: 2,000 writes, so the drain takes a while.
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

    stream = RssiStream(settings.mqtt, list(city.devices.values())[:50])
    # 1. A backlog in the spool: everything acknowledged while InfluxDB is away.
    first = service()
    first.start()
    try:
        assert first.wait_subscribed(10)
        stack.influxd.stop()
        stream.send(0, TOTAL)
        wait_until(lambda: first.stats.messages == TOTAL, 60, "everything spooled")
    finally:
        first.stop()  # InfluxDB away: it gives up on it, the spool keeps everything
        stream.close()
        if not stack.influxd.running:
            stack.influxd.start()
    assert first.stats.readings_written == 0

    # 2. Drain it with several writes in flight and take InfluxDB away mid-drain.
    second = service()
    caplog.set_level(logging.WARNING, logger="ingest.service")
    caplog.clear()  # the first run's retries
    second.start()
    try:
        wait_until(lambda: second.stats.readings_written > 0, 30, "the drain", poll=0.005)
        stack.influxd.stop()
        time.sleep(1.0)  # the writers in flight fail and retry
    finally:
        second.stop()  # gives up after stop_drain_s: the rest stays in the spool
        if not stack.influxd.running:
            stack.influxd.start()
    retrying = {r.threadName for r in caplog.records if "unavailable" in r.getMessage()}
    assert len(retrying) >= 2, retrying  # more than one chunk was in flight at once

    # 3. The cursor never passed a chunk InfluxDB did not have: each reading is either
    # stored or in the spool from the cursor on.
    stored = set(stored_keys(settings))
    pending = spooled_keys(spool_dir)
    assert stored and pending, "InfluxDB went away before the drain began or after it ended"
    assert len(stored | pending) == TOTAL, TOTAL - len(stored | pending)

    # 4. The next run writes the rest: every reading once.
    third = service()
    third.start()
    try:
        wait_until(third.spool.drained, 60, "the spool drained")
    finally:
        third.stop()
    final = stored_keys(settings)
    assert len(final) == TOTAL
    assert max(final.values()) == 1
    assert stored | pending == set(final)
