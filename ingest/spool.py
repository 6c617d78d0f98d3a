"""The durable spool between the MQTT acknowledgement and InfluxDB.

ingest acknowledges a message once its readings are here (fsynced), so an InfluxDB
outage leaves the backlog on local disk instead of in the broker, and a crash loses
nothing that was acknowledged. Layout of the directory:

- `NNNNNNNNNNNN.seg`: append-only segments of records, each `>II` (payload length,
  CRC-32 of the payload) then the payload (one batch of line protocol). A new process
  never appends to an old segment: it starts a fresh one, so a torn tail left by a
  crash (never acknowledged: the fsync had not returned) only ends its segment.
- `cursor`: `segment offset` of the first record InfluxDB has not yet taken. It is
  replaced atomically after each write, without fsync: a stale cursor after a power
  cut only writes some points again, and point identity makes that an overwrite.
- `lock`: flock, so two processes never share a spool.

Whole segments are deleted once the cursor has passed them. The spool is bounded:
`append` waits (backpressure, so ingest stops acknowledging) while the segments on disk
would exceed `max_bytes`.
"""

from __future__ import annotations

import fcntl
import logging
import os
import struct
import threading
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from pantau.errors import UserError

log = logging.getLogger(__name__)

HEADER = struct.Struct(">II")  # payload length, CRC-32 of the payload
SUFFIX = ".seg"
CURSOR = "cursor"
LOCK = "lock"


class SpoolLocked(UserError):
    """Another process holds the spool."""


@dataclass(frozen=True, order=True, slots=True)
class Position:
    segment: int
    offset: int


@dataclass(frozen=True, slots=True)
class Chunk:
    """Records read in order, and where the next read starts once they are committed."""

    records: list[bytes]
    end: Position

    @property
    def size(self) -> int:
        return sum(len(r) for r in self.records)


def _segment_name(index: int) -> str:
    return f"{index:012d}{SUFFIX}"


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Spool:
    """One writer thread appends, one reader thread reads and commits."""

    def __init__(self, directory: Path, *, max_bytes: int, segment_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self._cond = threading.Condition()
        self._lock_file: IO[str] | None = None
        self._sizes: dict[int, int] = {}  # segment -> bytes on disk (committed appends)
        self._head = 0  # the segment appended to
        self._head_fd = -1
        self._read_pos = Position(0, 0)
        self._committed = Position(0, 0)  # everything before it is in InfluxDB
        self._reader: tuple[int, IO[bytes]] | None = None
        self.appended_records = 0

    # --- lifecycle --------------------------------------------------------------------
    def open(self) -> Spool:
        self.directory.mkdir(parents=True, exist_ok=True)
        lock = (self.directory / LOCK).open("a+")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise SpoolLocked(
                f"the spool {self.directory} is in use by another Pantau ingest (or demo) "
                "started in this folder: stop that one first, or give this one its own "
                "spool (PANTAU_INGEST__SPOOL_DIR, or pantau demo --run-dir DIR)"
            ) from None
        self._lock_file = lock
        existing = sorted(
            int(p.name.removesuffix(SUFFIX))
            for p in self.directory.glob(f"*{SUFFIX}")
            if p.name.removesuffix(SUFFIX).isdigit()
        )
        cursor = self._read_cursor()
        if cursor is None or cursor.segment not in existing:
            cursor = None  # none, garbled or stale: read from the oldest segment
        for index in existing:
            path = self.directory / _segment_name(index)
            if cursor is not None and index < cursor.segment:
                path.unlink()  # written to InfluxDB, not yet deleted when we stopped
            else:
                self._sizes[index] = path.stat().st_size
        self._read_pos = cursor or Position(min(self._sizes, default=0), 0)
        self._committed = self._read_pos
        self._head = max(self._sizes, default=-1) + 1
        self._open_head()
        if self.pending_bytes():
            log.info(
                "spool %s: %d bytes not yet in InfluxDB from an earlier run",
                self.directory,
                self.pending_bytes(),
            )
        return self

    def close(self) -> None:
        with self._cond:
            self._close_reader()
            if self._head_fd >= 0:
                os.close(self._head_fd)
                self._head_fd = -1
            if self._lock_file is not None:
                self._lock_file.close()
                self._lock_file = None
            self._cond.notify_all()

    # --- writer side --------------------------------------------------------------------
    def append(self, records: Sequence[bytes], stop: threading.Event) -> bool:
        """Append `records` durably (one write, one fsync: a group commit). Waits while the
        spool is full; False if `stop` was set while waiting (nothing appended). OSError
        if the disk fails: nothing is appended, and the call may be retried."""
        data = b"".join(HEADER.pack(len(r), zlib.crc32(r)) + r for r in records)
        with self._cond:
            # A batch larger than the whole bound still goes into an empty spool.
            while self.disk_bytes() + len(data) > self.max_bytes and self.pending_bytes():
                if stop.is_set():
                    return False
                self._cond.wait(0.5)
            if self._sizes[self._head] >= self.segment_bytes:
                self._roll()
            head, fd = self._head, self._head_fd
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except OSError:
            # Disk full or failing: whatever part got written is a torn tail. Seal this
            # segment at its last whole record (the reader stops there) and go on in a
            # fresh one, so the caller can retry the same records.
            with self._cond:
                self._roll()
            raise
        with self._cond:
            self._sizes[head] += len(data)
            self.appended_records += len(records)
            self._cond.notify_all()
        return True

    def _open_head(self) -> None:
        path = self.directory / _segment_name(self._head)
        self._head_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        _fsync_dir(self.directory)  # the new name must survive a power cut too
        self._sizes[self._head] = os.fstat(self._head_fd).st_size

    def _roll(self) -> None:
        os.close(self._head_fd)
        self._head += 1
        self._open_head()

    # --- reader side --------------------------------------------------------------------
    def read(
        self, max_bytes: int, timeout: float, until: Callable[[], bool] | None = None
    ) -> Chunk | None:
        """Records from the read position, up to about `max_bytes`, waiting up to
        `timeout` for some; None if there are none. The wait also ends early once
        `until()` is true (checked at each `wake`)."""
        with self._cond:
            if (
                not self._cond.wait_for(
                    lambda: self._readable() or (until is not None and until()), timeout
                )
                or not self._readable()
            ):
                return None
            pos = self._read_pos
            end_offset = self._sizes[pos.segment]
            sealed = pos.segment != self._head
        records: list[bytes] = []
        size = 0
        f = self._reader_for(pos.segment)
        f.seek(pos.offset)
        offset = pos.offset
        while offset < end_offset and size < max_bytes:
            header = f.read(HEADER.size)
            if len(header) < HEADER.size:
                break
            length, crc = HEADER.unpack(header)
            payload = f.read(length) if offset + HEADER.size + length <= end_offset else b""
            if len(payload) != length or zlib.crc32(payload) != crc:
                # Only a sealed segment can hold one: the tail a crash cut short, never
                # acknowledged, so the broker has sent those messages again.
                log.warning(
                    "spool %s: torn or corrupt record at %s:%d; skipping the rest of it",
                    self.directory,
                    _segment_name(pos.segment),
                    offset,
                )
                offset = end_offset
                break
            records.append(payload)
            size += length
            offset += HEADER.size + length
        end = Position(pos.segment, offset)
        if sealed and offset >= end_offset:
            end = Position(pos.segment + 1, 0)
        with self._cond:
            self._read_pos = end
        return Chunk(records, end)

    def wake(self) -> None:
        """Make a waiting `read` look at its `until` again (any thread)."""
        with self._cond:
            self._cond.notify_all()

    def commit(self, end: Position) -> None:
        """InfluxDB has taken everything before `end`: save the cursor, drop whole segments."""
        tmp = self.directory / f"{CURSOR}.tmp"
        tmp.write_text(f"{end.segment} {end.offset}\n")
        os.replace(tmp, self.directory / CURSOR)
        with self._cond:
            self._committed = end
            done = [s for s in self._sizes if s < end.segment]
            if self._reader is not None and self._reader[0] in done:
                self._close_reader()
            for index in done:
                del self._sizes[index]
                (self.directory / _segment_name(index)).unlink(missing_ok=True)
            self._cond.notify_all()

    def _readable(self) -> bool:
        pos = self._read_pos
        if pos.segment not in self._sizes:
            return False
        return pos.offset < self._sizes[pos.segment] or pos.segment != self._head

    def _reader_for(self, segment: int) -> IO[bytes]:
        if self._reader is None or self._reader[0] != segment:
            self._close_reader()
            self._reader = (segment, (self.directory / _segment_name(segment)).open("rb"))
        return self._reader[1]

    def _close_reader(self) -> None:
        if self._reader is not None:
            self._reader[1].close()
            self._reader = None

    def _read_cursor(self) -> Position | None:
        try:
            segment, offset = (self.directory / CURSOR).read_text().split()
            return Position(int(segment), int(offset))
        except (OSError, ValueError):
            return None  # none yet, or cut short by a power cut: start at the oldest segment

    # --- sizes --------------------------------------------------------------------------
    def disk_bytes(self) -> int:
        with self._cond:  # also read by the metrics thread
            return sum(self._sizes.values())

    def pending_bytes(self) -> int:
        """Bytes appended and not yet committed (record headers included)."""
        with self._cond:
            pos = self._committed
            return sum(
                size - (pos.offset if s == pos.segment else 0)
                for s, size in self._sizes.items()
                if s >= pos.segment
            )

    def drained(self) -> bool:
        """True when InfluxDB has taken everything appended."""
        return self.pending_bytes() == 0
