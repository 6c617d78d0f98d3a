"""Soak: a simulated week (or `--days N`) of the whole fleet at its real reporting rates,
with every camera's analyses at its `sample_fps`, played as fast as the machine takes
it through real Mosquitto -> `pantau ingest` and `pantau rules` processes -> InfluxDB.

After each simulated day: InfluxDB's bytes on disk for raw readings and for their
5-minute and hourly aggregates (the downsampler is run on the day, timed), the RSS and
CPU seconds of each service (mosquitto, influxd, ingest, rules) and of the bench
itself, what influxd's memory holds (bench.influxd_vars), the load average; after the
first and the last day (once influxd has snapshotted and compacted) the p95 time of every
InfluxDB panel of the shipped dashboards (dashboards/generated) as Grafana would run
it for a 24-hour, a 3-day and a 7-day range ending where the played data ends: the
dashboards' hidden level variables pick raw, 5-minute or hourly data per range; over
the week each panel is also run with `$rp` forced to raw, and on the last day the first
day's 24 hours once more. The feed: bench.soak_feed. Writes a JSON file and prints a
row per day.

    uv run python -m bench.soak --days 2 --day-hours 1   # a check (~4-5 min)
    uv run python -m bench.soak                          # the week
    uv run python -m bench.soak --table bench/results/soak-....json   # its tables
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench import influxd_vars
from bench.soak_feed import (
    SETTLED_BACKLOG,
    BrokerBacklog,
    Gate,
    publish_analyses,
)
from bench.soak_panels import DAY, RANGES, PanelTimer, time_panels
from pantau.cameras import Camera, load_cameras
from pantau.city import load_city
from pantau.devices import default_config_dir
from pantau.influx.downsample import Downsampler
from pantau.influx.query import InfluxQL
from pantau.influx.retention import ensure_retention
from pantau.local import LocalStack
from pantau.local.mosquitto import MosquittoOptions
from pantau.settings import Settings
from simulators.publisher import run_scenario
from simulators.scenario import find_scenario, load_scenario
from testkit.services import IngestProcess, RulesProcess, wait_until


def tree_bytes(path: Path) -> int:
    """Bytes of the files under `path`, at any depth (shards are directories)."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _rss(pid: int | None) -> int:
    if pid is None:
        return 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _wait_stored(influx: InfluxQL, url: str, day: datetime, readings: int) -> int:
    """Until influxd's count of accepted points stops moving (polled from /debug/vars,
    cheap) and the day holds at least its readings (one count query, not one every 5 s
    over the day's 16 M points: those were influxd's biggest reads of the soak); the
    day's points."""
    seen = [-1]

    def settled() -> bool:
        n = influxd_vars.points_written(url)
        done = n == seen[0]
        seen[0] = n
        return done and _count(influx, day, day + DAY) >= readings

    wait_until(settled, 3600, "ingest to store the day", poll=2)
    return _count(influx, day, day + DAY)


def _count(influx: InfluxQL, start: datetime, end: datetime) -> int:
    rows = influx.rows(
        "SELECT count(value) FROM /.*/ WHERE time >= $s AND time < $e",
        params={"s": start.isoformat(), "e": end.isoformat()},
    )
    return sum(int(str(v)) for r in rows for k, v in r.items() if k.startswith("count"))


def _cpu_s(pid: int | None) -> float:
    """User + system CPU seconds of a process so far (0 if gone)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _bench_cpu_s() -> float:
    """This process's CPU and its finished children's (the mosquitto_pub publishers)."""
    me, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _cpu(procs: Mapping[str, Callable[[], int | None]]) -> dict[str, float]:
    """CPU seconds so far of each service and of the bench."""
    return {**{k: _cpu_s(pid()) for k, pid in procs.items()}, "bench": _bench_cpu_s()}


def _analyses_into(
    out: list[int],
    stack: LocalStack,
    settings: Settings,
    backlog: BrokerBacklog,
    gate: Gate,
    cameras: dict[str, Camera],
    day: datetime,
    played: timedelta,
    run: Path,
) -> None:
    lines = run / "lines"
    out.append(publish_analyses(stack, settings, backlog, gate, cameras, day, day + played, lines))


# At most this long for influxd to snapshot the played shards' caches and finish its
# compactions before the panels (~1 min: DATA_TUNING's cold duration).
QUIET_TIMEOUT_S = 180


def _panels(
    timer: PanelTimer,
    settings: Settings,
    stack: LocalStack,
    procs: Mapping[str, Callable[[], int | None]],
    end: datetime,
    again: datetime | None,
) -> dict[str, object]:
    """The panels' timings, taken once influxd has snapshotted the played day's cache
    and finished its compactions, so that every timing reads the same kind of storage
    (TSM files; a query over points still in a cache copies and sorts them); what
    influxd held and what each service used while they ran go with them."""
    quiet_s = influxd_vars.wait_quiet(stack.influx_url, QUIET_TIMEOUT_S)
    state = influxd_vars.read(stack.influx_url, stack.influxd.pid).as_dict()
    cpu0, t0 = _cpu(procs), time.monotonic()
    panels, spent = time_panels(timer, settings, end, again, cpu=lambda: _cpu_s(procs["influxd"]()))
    cpu1 = _cpu(procs)
    return {
        "panels": panels,
        "panels_s": round(time.monotonic() - t0, 1),
        "panels_waited_quiet_s": round(quiet_s, 1),
        "panels_influxd": state,
        "panels_cpu_s": {k: round(cpu1[k] - cpu0[k], 1) for k in cpu1},
        "panels_influxd_cpu_s_by_range": spent,
    }


class LoadSampler:
    """/proc/loadavg every `every` seconds on a thread: the run's background load."""

    def __init__(self, every: float = 30) -> None:
        self.samples: list[tuple[str, float]] = []
        self._stop = threading.Event()
        self._every = every
        self._thread = threading.Thread(target=self._run, name="loadavg", daemon=True)

    def now(self) -> float:
        return float(Path("/proc/loadavg").read_text().split()[0])

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((datetime.now(UTC).strftime("%H:%M:%S"), self.now()))
            self._stop.wait(self._every)

    def __enter__(self) -> LoadSampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict[str, float]:
        loads = [v for _, v in self.samples] or [self.now()]
        return {
            "min": min(loads),
            "median": statistics.median(loads),
            "max": max(loads),
        }


def _mb(n: object) -> str:
    return f"{int(str(n)) / 1e6:.1f}"


def table(result: Mapping[str, Any], heaviest: int = 4) -> str:
    """The results file as bench/README.md's markdown: a row per day, then the
    `heaviest` panels of each range (by their last-day p95) on the first and last day."""
    days = result["days"]
    out = [
        "| day | played (points) | downsampler | raw / 5-min / hourly on disk, cumulative "
        "| RSS mosquitto / influxd / ingest / rules | load |",
        "|---|---|---|---|---|---|",
    ]
    for d in days:
        b, r = d["bytes"], d["rss_mb"]
        out.append(
            f"| {d['day']} | {d['points_in_influx']:,} in {d['played_s']:,.0f} s "
            f"| {d['downsample_s']} s | {_mb(b['autogen'])} / {_mb(b['agg_5m'])} / "
            f"{_mb(b['agg_1h'])} MB | {r['mosquitto']} / {r['influxd']} / {r['ingest']} / "
            f"{r['rules']} MB | {d['loadavg']} |"
        )
    first, last = days[0]["panels"], days[-1]["panels"]
    n = days[-1]["day"]
    out += [
        "",
        f"| range | panel | level read | p95 day 1 | p95 day {n} | day {n}, $rp forced raw |",
        "|---|---|---|---|---|---|",
    ]
    for rname in RANGES:
        keys = sorted(
            (k for k in last if k.startswith(f"{rname} | ")), key=lambda k: -last[k]["p95_ms"]
        )
        for k in keys[:heaviest]:
            raw = last[k].get("p95_ms_from_raw")
            title = k.split(" | ", 1)[1].split(" (")[0].split(" - ")[0]
            out.append(
                f"| {rname} | {title} | {last[k]['rp']} | {first[k]['p95_ms']:,.0f} ms "
                f"| {last[k]['p95_ms']:,.0f} ms | {'' if raw is None else f'{raw:,.0f} ms'} |"
            )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument(
        "--day-hours", type=float, default=24, help="play only this much of each day (a check)"
    )
    parser.add_argument("--out", type=Path, default=None, help="JSON results file")
    parser.add_argument(
        "--influxd-data",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an influxd [data] setting instead of Pantau's (pantau.local.influxd."
        "DATA_TUNING), e.g. cache-snapshot-write-cold-duration=10m for influxd's default",
    )
    parser.add_argument(
        "--table",
        type=Path,
        default=None,
        help="print a results file's markdown tables, run nothing",
    )
    args = parser.parse_args(argv)
    if args.table:
        print(table(json.loads(args.table.read_text(encoding="utf-8"))))
        return 0
    city = load_city(default_config_dir())
    cameras = load_cameras(city)
    scenario = load_scenario(find_scenario("calm-day"), city)
    scenario = replace(scenario, malformed_rate=0.0, duration_s=args.day_hours * 3600)
    played = timedelta(hours=args.day_hours)
    began = datetime.now(UTC)
    load = LoadSampler()
    with tempfile.TemporaryDirectory(prefix="pantau-soak-") as tmp, load:
        run = Path(tmp)
        (run / "lines").mkdir()
        # The broker as deployed (deploy/mosquitto/mosquitto.conf saves every 30 s; the
        # test stack's 1 s rewrites the whole queue every ~2 s), and $SYS every second.
        broker = MosquittoOptions(autosave_interval_s=30, extra_lines=("sys_interval 1",))
        stack = LocalStack(run / "stack", mosquitto_options=broker)
        stack.influxd.data.update(kv.split("=", 1) for kv in args.influxd_data)
        with stack:
            settings = stack.settings(database="soak", root="soak")
            stack.create_database("soak")
            ensure_retention(settings.influx, settings.retention)
            env = {
                "PANTAU_INGEST__MAX_AGE_S": str((args.days + 2) * 86400),
                "PANTAU_RETENTION__DOWNSAMPLE_INTERVAL_S": "0",  # timed here, per day
                "PANTAU_METRICS__INFLUX_INTERVAL_S": "0",
            }
            ingest = IngestProcess(stack, settings, run / "spool", run / "ingest.log", **env)
            rules = RulesProcess(
                stack,
                settings,
                f"sqlite:///{run}/soak.db",
                run / "rules.log",
                PANTAU_RULES__TICK_INTERVAL_S="0",
                PANTAU_INGEST__MAX_AGE_S=env["PANTAU_INGEST__MAX_AGE_S"],
            )
            ingest.start()
            rules.start(timeout=300)  # a loaded machine starts it slowly
            influx = InfluxQL.from_settings(settings.influx)
            timer = PanelTimer(influx, city)
            backlog = BrokerBacklog(stack)
            data = stack.influxd.directory
            first = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
            first -= timedelta(days=args.days, hours=1)
            days: list[dict[str, object]] = []
            procs: dict[str, Callable[[], int | None]] = {
                "mosquitto": lambda: stack.mosquitto.pid,
                "influxd": lambda: stack.influxd.pid,
                "ingest": lambda: ingest.proc.pid if ingest.proc else None,
                "rules": lambda: rules.proc.pid if rules.proc else None,
            }
            try:
                for d in range(args.days):
                    day = first + d * DAY
                    t0 = time.monotonic()
                    cpu0 = _cpu(procs)
                    cams: list[int] = []
                    gate = Gate(day)
                    thread = threading.Thread(
                        target=_analyses_into,
                        args=(cams, stack, settings, backlog, gate, cameras, day, played, run),
                    )
                    thread.start()
                    report = run_scenario(
                        city, scenario, settings.mqtt, speed=None, start=day, pace=gate
                    )
                    thread.join()
                    if not cams:
                        raise RuntimeError("publishing the analyses failed (see above)")
                    published_s = time.monotonic() - t0
                    backlog.wait_below(SETTLED_BACKLOG)  # ingest and rules caught up
                    points = _wait_stored(influx, stack.influx_url, day, len(report.reading_keys))
                    played_s = time.monotonic() - t0
                    t1 = time.monotonic()
                    ds = Downsampler.from_settings(settings)
                    ds.run(day, day + DAY)
                    ds.close()
                    downsample_s = time.monotonic() - t1
                    cpu1 = _cpu(procs)
                    rp = {
                        name: tree_bytes(data / "data" / "soak" / name)
                        + tree_bytes(data / "wal" / "soak" / name)
                        for name in ("autogen", "agg_5m", "agg_1h")
                    }
                    row: dict[str, object] = {
                        "day": d + 1,
                        "readings": len(report.reading_keys),
                        "reading_messages": report.messages,
                        "analyses": cams[0],
                        "points_in_influx": points,
                        "played_s": round(played_s, 1),
                        "published_s": round(published_s, 1),
                        "downsample_s": round(downsample_s, 1),
                        "bytes": rp,
                        "rss_mb": {k: _rss(pid()) >> 20 for k, pid in procs.items()},
                        "influxd_memory": influxd_vars.read(
                            stack.influx_url, stack.influxd.pid
                        ).as_dict(),
                        # CPU seconds used so far, and by this day (played + downsampled).
                        "cpu_s": {k: round(v, 1) for k, v in cpu1.items()},
                        "day_cpu_s": {k: round(cpu1[k] - cpu0[k], 1) for k in cpu1},
                        "loadavg": load.now(),
                        "at": datetime.now(UTC).strftime("%H:%M:%S"),
                    }
                    if d in (0, args.days - 1):
                        again = first + DAY if d > 0 else None
                        row.update(_panels(timer, settings, stack, procs, day + DAY, again))
                    days.append(row)
                    print(json.dumps(row), flush=True)
            finally:
                backlog.close()
                influx.close()
                ingest.stop()
                rules.stop()
    result = {
        "command": " ".join(
            ["python -m bench.soak", *(argv if argv is not None else sys.argv[1:])]
        ),
        "played_per_day_h": args.day_hours,
        "influxd_data": stack.influxd.data,
        "started": began.isoformat(timespec="seconds"),
        "ended": datetime.now(UTC).isoformat(timespec="seconds"),
        "loadavg": {**load.summary(), "samples": load.samples},
        "days": days,
    }
    out = args.out or Path("bench/results") / f"soak-{began:%Y-%m-%d}-{args.days}d.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
