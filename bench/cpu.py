"""Where the CPU went during a benchmark window, read from /proc (Linux only).

`ps -o pcpu` is a process's average over its whole life, so it cannot tell what a
broker did during one 5-second case; utime+stime deltas from /proc/<pid>/stat can.
Short-lived helpers (mosquitto_pub, mosquitto_sub) are counted once reaped, through
RUSAGE_CHILDREN, and whatever the machine did besides all of that is "other": on a
shared 2-core box that number says how far to trust a run.
"""

from __future__ import annotations

import os
import resource
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType

TICKS_PER_S = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class CpuUse:
    """CPU seconds in the window; cores = seconds / wall (1.0 = one core busy)."""

    seconds: float
    cores: float
    peak_cores: float | None = None  # busiest sampling interval; None when not sampled

    def as_text(self) -> str:
        peak = f" (peak {self.peak_cores:.2f})" if self.peak_cores is not None else ""
        return f"{self.cores:.2f}{peak}"


def process_cpu_s(pid: int) -> float | None:
    """utime + stime of `pid` (all its threads) in seconds; None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            # The command name may hold spaces and parentheses: split after the last ')'.
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_S


def machine_cpu_s() -> tuple[float, float]:
    """(busy, steal) CPU seconds of all CPUs since boot, from the first line of /proc/stat."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal: idle and iowait are not busy.
    user, nice, system, _, _, irq, softirq, steal = (values + [0] * 8)[:8]
    return (user + nice + system + irq + softirq) / TICKS_PER_S, steal / TICKS_PER_S


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class CpuWatch:
    """CPU of named processes over a `with` block, sampled every `interval_s` for peaks.

    Keep long-lived children (services, ingest) alive until the block ends: a child
    reaped inside the window would be counted again under "clients".
    """

    def __init__(self, pids: Mapping[str, int], interval_s: float = 0.5) -> None:
        self._pids = dict(pids)
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="cpu-watch", daemon=True)
        self._first: dict[str, float] = {}
        self._last: dict[str, float] = {}
        self._peak: dict[str, float] = dict.fromkeys(self._pids, 0.0)
        self._lock = threading.Lock()
        self._started = 0.0
        self._sampled_at = 0.0
        self._wall = 0.0
        self._children0 = 0.0
        self._children = 0.0
        self._machine0 = (0.0, 0.0)
        self._machine = (0.0, 0.0)

    def __enter__(self) -> CpuWatch:
        for name, pid in self._pids.items():
            cpu = process_cpu_s(pid)
            if cpu is not None:
                self._first[name] = self._last[name] = cpu
        self._children0 = _children_cpu_s()
        self._machine0 = machine_cpu_s()
        self._started = self._sampled_at = time.monotonic()
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
        self._take_sample()
        self._wall = time.monotonic() - self._started
        self._children = _children_cpu_s() - self._children0
        busy, steal = machine_cpu_s()
        self._machine = (busy - self._machine0[0], steal - self._machine0[1])

    def _sample(self) -> None:
        while not self._stop.wait(self._interval_s):
            self._take_sample()

    def _take_sample(self) -> None:
        with self._lock:
            now = time.monotonic()
            elapsed_s, self._sampled_at = now - self._sampled_at, now
            for name, pid in self._pids.items():
                cpu = process_cpu_s(pid)
                if cpu is None or name not in self._last:
                    continue
                # CPU time moves in 10 ms ticks: a short last interval would invent peaks.
                if elapsed_s >= self._interval_s / 2:
                    cores = (cpu - self._last[name]) / elapsed_s
                    self._peak[name] = max(self._peak[name], cores)
                self._last[name] = cpu

    def result(self) -> dict[str, CpuUse]:
        """Per named process, plus "clients" (children reaped in the window), "other"
        (machine busy time outside all of those), "machine" and "steal" (hypervisor)."""
        wall = max(self._wall, 1e-9)
        out: dict[str, CpuUse] = {}
        for name, first in self._first.items():
            used = self._last[name] - first
            out[name] = CpuUse(used, used / wall, self._peak[name])
        out["clients"] = CpuUse(self._children, self._children / wall)
        busy, steal = self._machine
        ours = sum(u.seconds for u in out.values())
        other = max(0.0, busy - ours)
        out["other"] = CpuUse(other, other / wall)
        out["machine"] = CpuUse(busy, busy / wall)
        out["steal"] = CpuUse(steal, steal / wall)
        return out

    @property
    def wall_s(self) -> float:
        return self._wall
