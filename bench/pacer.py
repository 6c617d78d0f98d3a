"""Paced load: `mosquitto_pub -l` processes fed through stdin at an offered rate.

The publishing stays in C (one `mosquitto_pub -l -q 1` per device topic); this process
only decides *when* each pre-built line is written to a publisher's stdin. A few pacing
threads share the devices, so one publisher whose pipe is full (the broker pushing back)
does not stall every other device. When the system under test pushes back, lines are
written late: the achieved rate (lines / seconds of writing) is reported beside the
offered one rather than assumed.
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from bench.mosquitto_clients import PUBLISHER_MAX_LINES, mqtt_args
from pantau.local import LocalStack

# Pacing threads wake this often. Each wake-up writes to a publisher's pipe, and 50
# `mosquitto_pub` woken every 5 ms pushed 11,000 of 16,000 lines/s offered on the loaded
# 2 cores where a 20 ms tick pushed 15,600: fewer, larger writes. 20 ms bursts are
# nothing against a point of 6-12 s.
TICK_S = 0.02
THREADS = 4


def due(rate: float, elapsed_s: float, written: int, total: int) -> int:
    """Lines to write now so that `written` catches up with `rate` lines/s after
    `elapsed_s`, never past `total`. A late thread catches up at once (the offered
    load is a schedule, not a rate per tick)."""
    if elapsed_s <= 0 or rate <= 0:
        return 0
    return max(0, min(total, int(rate * elapsed_s)) - written)


def interleave(lines_per_device: Sequence[int]) -> list[int]:
    """Device indices in send order: round-robin, one line per device in turn, skipping
    devices that have no lines left (so uneven counts still all get sent)."""
    order: list[int] = []
    left = list(lines_per_device)
    while any(left):
        for k, n in enumerate(left):
            if n:
                order.append(k)
                left[k] -= 1
    return order


@dataclass(frozen=True, slots=True)
class PacedStream:
    """One device topic's messages, sent in order by one `mosquitto_pub -l`."""

    topic: str
    lines: Sequence[bytes]  # payloads without the newline
    readings: int  # readings the lines carry


@dataclass(frozen=True, slots=True)
class PaceResult:
    written: int  # lines handed to publishers
    write_s: float  # first write until the last line was written
    publish_s: float  # first write until every publisher exited (its last PUBACK in)
    failures: tuple[str, ...]  # publishers that exited non-zero

    @property
    def achieved(self) -> float:
        return self.written / self.write_s if self.write_s > 0 else 0.0


class PacedPublishers:
    """`start(rate)` writes every stream's lines at `rate` lines/s in total; `finish()`
    closes stdin and waits for the publishers (they exit after their last PUBACK)."""

    def __init__(
        self, stack: LocalStack, streams: Sequence[PacedStream], extra: Sequence[str] = ()
    ) -> None:
        for s in streams:
            if b"\n" in b"".join(s.lines) or len(s.lines) > PUBLISHER_MAX_LINES:
                raise ValueError(f"{s.topic}: lines must be newline-free and at most 50,000")
        self._streams = streams
        self._procs = [
            subprocess.Popen(
                ["mosquitto_pub", *mqtt_args(stack, s.topic), "-l", *extra],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            for s in streams
        ]
        self._threads: list[threading.Thread] = []
        self._written = [0] * THREADS
        self._last_write = [0.0] * THREADS
        self._started = 0.0

    def start(self, rate: float) -> float:
        """Begin writing; returns the monotonic start time (the run's clock zero)."""
        self._started = time.monotonic()
        for p in range(THREADS):
            mine = list(range(p, len(self._streams), THREADS))
            if not mine:
                continue
            t = threading.Thread(
                target=self._pace, args=(p, mine, rate * self._share(mine)), daemon=True
            )
            self._threads.append(t)
            t.start()
        return self._started

    def _share(self, mine: Sequence[int]) -> float:
        """This thread's fraction of all lines, so every thread ends at the same time."""
        total = sum(len(s.lines) for s in self._streams)
        return sum(len(self._streams[k].lines) for k in mine) / total

    def _pace(self, p: int, mine: Sequence[int], rate: float) -> None:
        order = [mine[k] for k in interleave([len(self._streams[k].lines) for k in mine])]
        position = dict.fromkeys(mine, 0)
        written = 0
        try:
            while written < len(order):
                time.sleep(TICK_S)
                n = due(rate, time.monotonic() - self._started, written, len(order))
                chunks: dict[int, list[bytes]] = {}
                for k in order[written : written + n]:
                    chunks.setdefault(k, []).append(self._streams[k].lines[position[k]])
                    position[k] += 1
                for k, lines in chunks.items():  # one write per pipe per tick, not per line
                    stdin = self._procs[k].stdin
                    assert stdin is not None
                    stdin.write(b"\n".join(lines) + b"\n")
                    stdin.flush()
                written += n
                self._written[p] = written
        except BrokenPipeError:
            pass  # the publisher died: finish() reports its exit and the short count
        self._last_write[p] = time.monotonic()

    def finish(self, timeout_s: float) -> PaceResult:
        for t in self._threads:
            t.join()
        write_s = max(self._last_write, default=self._started) - self._started
        for proc in self._procs:
            assert proc.stdin is not None
            with contextlib.suppress(BrokenPipeError):  # reported below: its exit status
                proc.stdin.close()
        failures = []
        deadline = time.monotonic() + timeout_s
        for proc in self._procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                failures.append("killed: no final PUBACK in time")
                continue
            if proc.returncode != 0:
                assert proc.stderr is not None
                err = proc.stderr.read().decode(errors="replace")[-300:]
                failures.append(f"exit {proc.returncode}: {err}")
        written = sum(self._written)
        total = sum(len(s.lines) for s in self._streams)
        if written != total:
            failures.append(f"pacers wrote {written:,} of {total:,} lines")
        return PaceResult(
            written=written,
            write_s=write_s,
            publish_s=time.monotonic() - self._started,
            failures=tuple(failures),
        )

    def kill(self) -> None:
        """Cleanup after an error: no publisher outlives the run."""
        for proc in self._procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
