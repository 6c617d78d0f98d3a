"""One spool chunk into InfluxDB: ingest's writer threads (ingest.service) call
`ChunkWriter.write`, several at once.

A chunk's records (each a batch's lines joined by newlines) go out as they are in the
spool, joined into one body: no decode, split or encode per line. 429, 5xx and no
answer are retried with backoff for as long as it takes (until the service gives up on
InfluxDB: Stopping); a 4xx refusal is narrowed down by bisection to the lines InfluxDB
refuses, which come back with its reason for the dead letters.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from ingest.deadletter import Rejection
from ingest.spool import Chunk
from pantau.clock import Clock
from pantau.influx.writers import InfluxWriter, WriteRejected, WriteUnavailable

log = logging.getLogger("ingest.service")  # one logger for bench.ingest's debug timeline

BACKOFF_MAX_S = 30.0


class Stopping(Exception):
    """The service is stopping: leave the batch unacknowledged for redelivery."""


@dataclass(slots=True)
class Written:
    """A chunk in InfluxDB: its lines, those InfluxDB refused, and how long it took."""

    lines: int
    rejections: list[Rejection]
    seconds: float


@dataclass(slots=True, eq=False)
class Write:
    """A spool chunk handed to a writer thread: `done` once written (`result`) or
    given up on (`error`: Stopping)."""

    chunk: Chunk
    done: threading.Event = field(default_factory=threading.Event)
    result: Written | None = None
    error: Exception | None = None


class ChunkWriter:
    """Keeps nothing per write: the writer threads share one."""

    def __init__(self, writer: InfluxWriter, abort: threading.Event, clock: Clock) -> None:
        """`abort`: give up on InfluxDB (the retries raise Stopping)."""
        self._writer = writer
        self._abort = abort
        self._clock = clock

    def write(self, chunk: Chunk) -> Written:
        """The chunk's records into InfluxDB, as they are in the spool (one body)."""
        started = time.monotonic()
        # A record is its batch's lines joined by newlines, so the records joined are the
        # body of one write: no splitting, unless InfluxDB refuses some line of it.
        records = [record for record in chunk.records if record]
        lines = sum(record.count(b"\n") + 1 for record in records)
        rejections = [
            Rejection(
                "influx_rejected",
                f"InfluxDB answered {err.status}: {err.message}",
                "",
                line,
                self._clock.now(),
            )
            for line, err in self._write_records(records)
        ]
        write_s = time.monotonic() - started
        if log.isEnabledFor(logging.DEBUG):
            log.debug("chunk written at %.6f: %d lines, %.1f ms", time.time(), lines, write_s * 1e3)
        return Written(lines, rejections, write_s)

    def _write_records(self, records: list[bytes]) -> list[tuple[bytes, WriteRejected]]:
        """Write the records in one go; if InfluxDB refuses, line by line (_write)."""
        if not records:
            return []
        try:
            self._retrying(b"\n".join(records))
        except WriteRejected as err:
            return self._isolate([ln for record in records for ln in record.split(b"\n")], err)
        return []

    def _write(self, lines: list[bytes]) -> list[tuple[bytes, WriteRejected]]:
        """Write all lines, retrying while InfluxDB is unavailable; return the lines it
        refused, isolated by bisection so one bad line does not sink its batch."""
        try:
            self._retrying(b"\n".join(lines))
        except WriteRejected as err:
            return self._isolate(lines, err)
        return []

    def _isolate(self, lines: list[bytes], err: WriteRejected) -> list[tuple[bytes, WriteRejected]]:
        """`lines` were refused as a whole (`err`): find which, by halves."""
        if len(lines) == 1:
            log.warning(
                "InfluxDB refused %r: %s", lines[0][:200].decode("utf-8", "replace"), err.message
            )
            return [(lines[0], err)]
        half = len(lines) // 2
        return self._write(lines[:half]) + self._write(lines[half:])

    def _retrying(self, body: bytes) -> None:
        """429, 5xx and no answer at all: back off and try again, for as long as it takes."""
        delay = 0.2
        while True:
            try:
                self._writer.write_body(body)
                return
            except WriteUnavailable as err:
                log.warning("InfluxDB unavailable (%s); retrying in %.1fs", err, delay)
            if self._abort.wait(delay):
                raise Stopping
            delay = min(delay * 2, BACKOFF_MAX_S)
