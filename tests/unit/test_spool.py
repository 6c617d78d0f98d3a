"""The ingest spool on a real directory: order, durability across reopen, torn tails,
segment deletion, backpressure."""

from __future__ import annotations

import errno
import os
import threading
import time
from pathlib import Path

import pytest

from ingest.spool import HEADER, Chunk, Spool, SpoolLocked


def spool(path: Path, *, max_bytes: int = 1 << 20, segment_bytes: int = 256) -> Spool:
    return Spool(path, max_bytes=max_bytes, segment_bytes=segment_bytes).open()


def read_all(s: Spool) -> list[bytes]:
    out: list[bytes] = []
    while (chunk := s.read(1 << 20, timeout=0.01)) is not None:
        out.extend(chunk.records)
        s.commit(chunk.end)
    return out


def records(n: int, start: int = 0) -> list[bytes]:
    return [f"m,device=d{i} value={i} {i}".encode() for i in range(start, start + n)]


def test_reads_in_order_across_segments_and_deletes_what_is_committed(tmp_path: Path) -> None:
    s = spool(tmp_path)
    stop = threading.Event()
    for r in records(40):
        assert s.append([r], stop)
    assert len(list(tmp_path.glob("*.seg"))) > 3  # 256-byte segments: it rolled
    assert read_all(s) == records(40)
    assert s.drained()
    assert len(list(tmp_path.glob("*.seg"))) == 1  # only the head is left
    s.close()


def test_reopen_resumes_after_the_last_commit(tmp_path: Path) -> None:
    s = spool(tmp_path, segment_bytes=1 << 20)
    stop = threading.Event()
    assert s.append(records(10), stop)
    chunk = s.read(1 << 20, timeout=0.1)
    assert chunk is not None and chunk.records == records(10)
    s.commit(chunk.end)
    assert s.append(records(5, 10), stop)
    first = s.read(1 << 20, timeout=0.1)  # read, not committed: a crash before the write
    assert first is not None and first.records == records(5, 10)
    s.close()

    again = spool(tmp_path)
    assert again.pending_bytes() > 0
    assert read_all(again) == records(5, 10)
    again.close()
    assert read_all(spool(tmp_path / "x")) == []


def test_a_torn_tail_ends_its_segment_and_later_records_still_come(tmp_path: Path) -> None:
    s = spool(tmp_path, segment_bytes=1 << 20)
    assert s.append(records(3), threading.Event())
    s.close()
    (seg,) = tmp_path.glob("*.seg")
    with seg.open("ab") as f:  # a crash mid-append: header says 100 bytes, 4 arrived
        f.write(HEADER.pack(100, 0) + b"m,de")
    again = spool(tmp_path, segment_bytes=1 << 20)
    assert again.append(records(2, 3), threading.Event())
    assert read_all(again) == records(5)
    again.close()


def test_a_corrupt_record_is_not_returned(tmp_path: Path) -> None:
    s = spool(tmp_path, segment_bytes=1 << 20)
    assert s.append(records(2), threading.Event())
    s.close()
    (seg,) = tmp_path.glob("*.seg")
    data = bytearray(seg.read_bytes())
    data[HEADER.size + 2] ^= 0xFF  # flip a bit in the first record's payload
    seg.write_bytes(bytes(data))
    assert read_all(spool(tmp_path)) == []  # the CRC catches it: the rest of that segment


def test_a_full_spool_blocks_the_writer_until_the_drain_commits(tmp_path: Path) -> None:
    s = spool(tmp_path, max_bytes=1 << 20, segment_bytes=64 << 10)
    big = b"x" * (200 << 10)
    stop = threading.Event()
    for _ in range(5):
        assert s.append([big], stop)
    done = threading.Event()

    def append_one_more() -> None:
        assert s.append([big], stop)
        done.set()

    writer = threading.Thread(target=append_one_more)
    writer.start()
    assert not done.wait(0.5), "the sixth 200 KB record must wait: the bound is 1 MB"
    chunk = s.read(300 << 10, timeout=0.1)
    assert isinstance(chunk, Chunk) and len(chunk.records) == 1
    s.commit(chunk.end)  # frees the first segment
    assert done.wait(5)
    writer.join()
    assert s.disk_bytes() <= 1 << 20


def test_stop_releases_a_writer_waiting_for_space(tmp_path: Path) -> None:
    s = spool(tmp_path, max_bytes=1 << 20, segment_bytes=64 << 10)
    stop = threading.Event()
    assert s.append([b"x" * (1 << 20)], stop)  # an empty spool takes even an oversized batch
    started = time.monotonic()
    threading.Timer(0.3, stop.set).start()
    assert not s.append([b"y"], stop)
    assert time.monotonic() - started < 5


def test_two_processes_never_share_a_spool(tmp_path: Path) -> None:
    s = spool(tmp_path)
    with pytest.raises(SpoolLocked):
        spool(tmp_path)
    s.close()
    spool(tmp_path).close()


def test_a_failed_append_leaves_no_torn_record_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = spool(tmp_path, segment_bytes=1 << 20)
    stop = threading.Event()
    assert s.append(records(2), stop)
    real_write = os.write

    def disk_full_halfway(fd: int, data: bytes | memoryview) -> int:
        real_write(fd, bytes(data[: len(data) // 2]))  # half lands, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", disk_full_halfway)
    with pytest.raises(OSError):
        s.append(records(3, 2), stop)
    monkeypatch.setattr(os, "write", real_write)
    assert s.append(records(3, 2), stop)  # the caller's retry
    assert read_all(s) == records(5)
    s.close()
