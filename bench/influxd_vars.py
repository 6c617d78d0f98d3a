"""What influxd's memory is made of, from its own `/debug/vars` (InfluxDB 1.x) and
/proc: the Go heap (in use, idle, returned to the OS), the TSM caches (points written
but not yet snapshotted to TSM files, per shard), the series index, the shards and the
compactions running. bench.soak records one `InfluxdMemory` after each played day, so
RSS growth can be put down to its cause instead of guessed at."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import urllib3

_HTTP = urllib3.PoolManager(timeout=urllib3.Timeout(total=30.0), retries=False)
_MB = 1 << 20


def proc_memory(pid: int | None) -> dict[str, int]:
    """VmRSS, RssAnon (heap, stacks) and RssFile (mapped files: the TSM files and the
    binary) of `pid` in bytes; empty when it is gone."""
    if pid is None:
        return {}
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return {}
    wanted = ("VmRSS", "RssAnon", "RssFile")
    return {
        k: int(v.split()[0]) * 1024
        for k, _, v in (line.partition(":") for line in lines)
        if k in wanted
    }


@dataclass(frozen=True, slots=True)
class InfluxdMemory:
    """One look at influxd; sizes in MB."""

    rss: float
    rss_anon: float
    rss_file: float
    heap_inuse: float  # Go heap spans holding objects
    heap_idle: float  # Go heap spans holding nothing (kept for reuse or released)
    heap_released: float  # ... of which returned to the OS (not in RSS)
    cache: float  # TSM caches together: points not yet snapshotted to TSM files
    caches_holding: int  # shards whose cache holds anything
    shards: int
    series: int  # the index's series, every database
    tsm_files: int
    compactions_active: int  # cache snapshots and TSM compactions running now

    def as_dict(self) -> dict[str, float | int]:
        return {k: round(v, 1) if isinstance(v, float) else v for k, v in asdict(self).items()}


_COMPACTIONS = (
    "cacheCompactionsActive",
    "tsmLevel1CompactionsActive",
    "tsmLevel2CompactionsActive",
    "tsmLevel3CompactionsActive",
    "tsmOptimizeCompactionsActive",
    "tsmFullCompactionsActive",
)


def parse(debug_vars: dict[str, Any], proc: dict[str, int]) -> InfluxdMemory:
    """An `InfluxdMemory` from a /debug/vars document and `proc_memory`."""
    mem = debug_vars["memstats"]

    def stats(kind: str) -> list[dict[str, Any]]:
        return [v.get("values", {}) for k, v in debug_vars.items() if k.startswith(f"{kind}:")]

    caches = [int(c.get("memBytes", 0)) for c in stats("tsm1_cache")]
    return InfluxdMemory(
        rss=proc.get("VmRSS", 0) / _MB,
        rss_anon=proc.get("RssAnon", 0) / _MB,
        rss_file=proc.get("RssFile", 0) / _MB,
        heap_inuse=mem["HeapInuse"] / _MB,
        heap_idle=mem["HeapIdle"] / _MB,
        heap_released=mem["HeapReleased"] / _MB,
        cache=sum(caches) / _MB,
        caches_holding=sum(1 for c in caches if c),
        shards=len(stats("shard")),
        series=sum(int(d.get("numSeries", 0)) for d in stats("database")),
        tsm_files=sum(int(f.get("numFiles", 0)) for f in stats("tsm1_filestore")),
        compactions_active=sum(
            int(e.get(k, 0)) for e in stats("tsm1_engine") for k in _COMPACTIONS
        ),
    )


def read(url: str, pid: int | None) -> InfluxdMemory:
    """influxd at `url` (its HTTP API) with process id `pid`, now."""
    resp = _HTTP.request("GET", f"{url}/debug/vars")
    if resp.status != 200:
        raise RuntimeError(f"influxd /debug/vars: HTTP {resp.status}")
    return parse(json.loads(resp.data), proc_memory(pid))


def points_written(url: str) -> int:
    """Points influxd has accepted since it started (its `write` statistics): a cheap
    counter to watch instead of counting a day of points with a query every few seconds."""
    resp = _HTTP.request("GET", f"{url}/debug/vars")
    if resp.status != 200:
        raise RuntimeError(f"influxd /debug/vars: HTTP {resp.status}")
    return int(json.loads(resp.data)["write"]["values"].get("pointReq", 0))


def points_in(url: str, database: str) -> int:
    """Points influxd has accepted into `database` since it started (the `writePointsOk`
    of its shards): what bench.stored_count watches while a burst is stored."""
    resp = _HTTP.request("GET", f"{url}/debug/vars")
    if resp.status != 200:
        raise RuntimeError(f"influxd /debug/vars: HTTP {resp.status}")
    return sum(
        int(v.get("values", {}).get("writePointsOk", 0))
        for k, v in json.loads(resp.data).items()
        if k.startswith("shard:") and (v.get("tags") or {}).get("database") == database
    )


def wait_quiet(url: str, timeout: float, poll: float = 1.0, cache_mb: float = 1.0) -> float:
    """Until no cache snapshot or TSM compaction runs and the caches hold under
    `cache_mb` together (the played shards, cold, snapshotted into TSM files), seen
    twice in a row, at most `timeout` s; the seconds waited."""
    t0 = time.monotonic()
    quiet = 0
    while time.monotonic() - t0 < timeout and quiet < 2:
        now = read(url, None)
        quiet = quiet + 1 if now.compactions_active == 0 and now.cache < cache_mb else 0
        time.sleep(poll)
    return time.monotonic() - t0
