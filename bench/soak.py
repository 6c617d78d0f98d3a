"""Soak: a simulated week (or `--days N`) of the whole fleet at its real reporting rates,
with every camera's analyses at its `sample_fps`, played as fast as the machine takes
it through real Mosquitto -> `pantau ingest` and `pantau rules` processes -> InfluxDB.

After each simulated day: InfluxDB's bytes on disk for raw readings and for their
5-minute and hourly aggregates (the downsampler is run on the day, timed), the RSS and
CPU seconds of each service (mosquitto, influxd, ingest, rules) and of the bench
itself, the load average; after the first and the last day the p95 time of every
InfluxDB panel of the shipped dashboards (dashboards/generated) as Grafana would run
it for a 24-hour, a 3-day and a 7-day range ending where the played data ends: the
dashboards' hidden level variables pick raw, 5-minute or hourly data per range; over
the week each panel is also run with `$rp` forced to raw. Writes a JSON file and
prints a row per day.

    uv run python -m bench.soak --days 1 --day-hours 1   # a check (~2 min)
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
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from bench.mosquitto_clients import PublishJob, run_publishers
from dashboards import expand
from dashboards.build import GENERATED
from dashboards.model import INFLUX
from pantau.cameras import Camera, load_cameras
from pantau.city import City, load_city
from pantau.devices import default_config_dir
from pantau.frame_analysis import (
    ANALYSIS_CONTENT_TYPE,
    FrameAnalysis,
    Measure,
    encode_analysis,
)
from pantau.influx import level_table
from pantau.influx.downsample import Downsampler
from pantau.influx.query import InfluxQL
from pantau.influx.retention import ensure_retention
from pantau.local import LocalStack
from pantau.local.mosquitto import MosquittoOptions
from pantau.settings import Settings
from pantau.topics import Topics
from pantau.wire import rfc3339
from simulators.publisher import run_scenario
from simulators.scenario import find_scenario, load_scenario
from testkit.services import IngestProcess, RulesProcess, wait_until

DAY = timedelta(days=1)  # the spacing of the played days
PANEL_RUNS = 10


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


def analysis_lines(camera: Camera, start: datetime, end: datetime, seq0: int) -> list[bytes]:
    """The camera's analyses over [start, end) at its sample_fps, one payload per line:
    the vision worker's encoding (encode_analysis) done once, then only its time and
    seq change, so generating a day costs the bench seconds, not minutes."""
    measures = [
        Measure("camera_brightness", 0.5, "/", 0.9),
        Measure("camera_sharpness", 1.0, "/", 0.9),
        Measure("camera_fault", 0.0, "/", 0.9),
    ]
    measures += [Measure("region_occupancy", 0.2, "/", 0.8, r.id) for r in camera.regions]
    if camera.gauge is not None:
        measures.append(Measure("water_depth", 3.0, "cm", 0.8))
    w, h = camera.frame_size
    marker = datetime(2000, 1, 1, tzinfo=UTC)
    template = encode_analysis(
        FrameAnalysis(
            camera_id=camera.id, time=marker, seq=0, width=w, height=h, measures=tuple(measures)
        )
    )
    head, tail = template.split(f'"{rfc3339(marker)}","seq":0'.encode(), 1)
    step = 1 / camera.sample_fps
    first = start.timestamp()
    count = round((end - start).total_seconds() * camera.sample_fps)
    return [
        b'%s"%s","seq":%d%s'
        % (head, rfc3339(datetime.fromtimestamp(first + i * step, UTC)).encode(), seq0 + i, tail)
        for i in range(count)
    ]


# Analyses go out in rounds of this much simulated time, each once the broker holds
# fewer than ROUND_BACKLOG messages: the rules service (which reads every analysis,
# slower than ingest on this box) and ingest are then never more than ~2 rounds behind.
# Unbounded, the broker's queues grew to hundreds of thousands of messages and
# mosquitto spent its time on them while the consumers starved.
ROUND = timedelta(minutes=15)
ROUND_BACKLOG = 60_000
SETTLED_BACKLOG = 2_000  # at the day's end: the retained statuses and little else


class BrokerBacklog:
    """The broker's stored message count (`$SYS/broker/store/messages/count`, every
    `sys_interval`): what its subscribers' queues hold, retained messages included."""

    TOPIC = "$SYS/broker/store/messages/count"

    def __init__(self, stack: LocalStack) -> None:
        self._cond = threading.Condition()
        self._count: int | None = None
        self._client = paho.Client(CallbackAPIVersion.VERSION2, "soak-backlog")
        self._client.on_connect = lambda c, *_: c.subscribe(self.TOPIC)
        self._client.on_message = self._on_message
        self._client.connect(stack.mqtt_host, stack.mqtt_port)
        self._client.loop_start()

    def _on_message(self, _c: object, _u: object, msg: paho.MQTTMessage) -> None:
        with self._cond:
            self._count = int(msg.payload)
            self._cond.notify_all()

    def wait_below(self, limit: int, timeout: float = 3600) -> int:
        """Until the count is under `limit`; that count. The broker publishes it only
        when it changes, so the last value holds once a sys_interval has passed."""
        fresh = time.monotonic() + 1.5
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._count is None or self._count >= limit or time.monotonic() < fresh:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the broker still holds {self._count} messages")
                self._cond.wait(0.5)
            return self._count

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()


def publish_analyses(
    stack: LocalStack,
    settings: Settings,
    backlog: BrokerBacklog,
    cameras: dict[str, Camera],
    start: datetime,
    end: datetime,
    work: Path,
) -> int:
    """Every camera's analyses over [start, end) at its sample_fps, QoS 1, one
    `mosquitto_pub -l` per camera and round (the C client: the bench's own publishing
    costs little CPU beside the services it measures). The number published."""
    topics = Topics(settings.mqtt.root)
    sent = 0
    t = start
    while t < end:
        stop = min(t + ROUND, end)
        backlog.wait_below(ROUND_BACKLOG)
        jobs = []
        for camera in cameras.values():
            seq0 = round((t - start).total_seconds() * camera.sample_fps)
            lines = analysis_lines(camera, t, stop, seq0)
            path = work / f"{camera.id}.lines"
            path.write_bytes(b"\n".join(lines) + b"\n")
            jobs.append(PublishJob(topics.camera_analysis(camera.id), path, len(lines), len(lines)))
        run_publishers(stack, jobs, ("-D", "publish", "content-type", ANALYSIS_CONTENT_TYPE))
        sent += sum(j.count for j in jobs)
        t = stop
    return sent


def _analyses_into(
    out: list[int],
    stack: LocalStack,
    settings: Settings,
    backlog: BrokerBacklog,
    cameras: dict[str, Camera],
    day: datetime,
    played: timedelta,
    work: Path,
) -> None:
    out.append(publish_analyses(stack, settings, backlog, cameras, day, day + played, work))


def _wait_stored(influx: InfluxQL, day: datetime, readings: int) -> None:
    """Until the day's readings are in and the count stops moving (the analyses' many
    measures arrive besides them)."""
    seen = [-1]

    def settled() -> bool:
        n = _count(influx, day, day + DAY)
        done = n >= readings and n == seen[0]
        seen[0] = n
        return done

    wait_until(settled, 3600, "ingest to store the day", poll=5)


def _count(influx: InfluxQL, start: datetime, end: datetime) -> int:
    rows = influx.rows(
        "SELECT count(value) FROM /.*/ WHERE time >= $s AND time < $e",
        params={"s": start.isoformat(), "e": end.isoformat()},
    )
    return sum(int(str(v)) for r in rows for k, v in r.items() if k.startswith("count"))


# The dashboards whose panels read the fleet's readings and the cameras' analyses
# (performance reads monthly KPIs and pipeline Pantau's own metrics: neither grows
# with the played history).
DASHBOARDS = ("city-overview", "drainage", "cameras", "traffic")


@dataclass(frozen=True, slots=True)
class Panel:
    dashboard: str
    title: str
    targets: tuple[str, ...]  # InfluxQL with Grafana's variables and macros
    interval: str | None  # the panel's minimum interval (may be a variable)


def dashboard_panels() -> list[tuple[dict[str, Any], list[Panel]]]:
    """The committed dashboards' InfluxDB panels (SQL targets left out: PostgreSQL)."""
    out = []
    for name in DASHBOARDS:
        model = json.loads((GENERATED / f"{name}.json").read_text(encoding="utf-8"))
        found = []
        for p in model["panels"]:
            queries = tuple(
                t["query"] for t in p["targets"] if t["datasource"]["uid"] == INFLUX.uid
            )
            if queries:
                found.append(Panel(name, p["title"], queries, p.get("interval")))
        out.append((model, found))
    return out


class PanelTimer:
    """Runs dashboard panels as Grafana would for a time range: the dashboard's
    variables resolved for the range (the hidden rp / rp_window / rp_bucket ones from
    the level table, so the range picks raw, 5-minute or hourly data), then each target
    expanded (dashboards.expand) and sent to InfluxDB; a panel's time is its targets'
    together."""

    def __init__(self, influx: InfluxQL, city: City) -> None:
        self.influx = influx
        # What the PostgreSQL-backed variable (kelurahan) would list: every zone.
        self.zones = {z.id: z for z in city.zones.kelurahan}

    def _sql(self, query: str) -> list[str]:
        if "kelurahan" not in query:
            raise ValueError(f"a SQL variable the soak does not know: {query[:80]}")
        return list(self.zones)

    def values(
        self, model: dict[str, Any], when: expand.TimeRange, force: Mapping[str, str] | None = None
    ) -> dict[str, list[str]]:
        values = expand.variables(
            model,
            when,
            run_influxql=lambda q: [str(r["value"]) for r in self.influx.rows(q)],
            run_sql=self._sql,
            datasource_uid=INFLUX.uid,
        )
        return {**values, **{k: [v] for k, v in (force or {}).items() if k in values}}

    def once(self, panel: Panel, when: expand.TimeRange, values: expand.Values) -> float:
        queries = [
            expand.influxql(q, when, values, min_interval=panel.interval) for q in panel.targets
        ]
        t0 = time.perf_counter()
        for q in queries:
            self.influx.query(q)
        return (time.perf_counter() - t0) * 1000

    def p95(self, panel: Panel, when: expand.TimeRange, values: expand.Values) -> float:
        times = [self.once(panel, when, values) for _ in range(PANEL_RUNS)]
        return statistics.quantiles(times, n=20, method="inclusive")[-1]


def panel_ranges(end: datetime) -> dict[str, expand.TimeRange]:
    """The ranges an operator picks, ending where the played data ends: a day reads raw
    readings, 3 days the 5-minute aggregates, a week the hourly ones (level_for)."""
    return {name: expand.TimeRange(end - span, end) for name, span in RANGES.items()}


RANGES = {"24 h": DAY, "3 days": 3 * DAY, "7 days": 7 * DAY}


def time_panels(
    timer: PanelTimer, settings: Settings, end: datetime
) -> dict[str, dict[str, object]]:
    """p95 milliseconds of every InfluxDB panel of DASHBOARDS for each range (the
    heaviest are picked from these when reported). Over the week each panel is also
    timed with $rp forced to the raw level: what it would cost without the aggregates."""
    level_table.write(settings.influx, settings.retention, datetime.now(UTC))  # as ingest does
    raw = level_table.rows(datetime.now(UTC), settings.retention)[0]
    force_raw = {"rp": raw.rp, "rp_window": raw.window, "rp_bucket": raw.bucket}
    out: dict[str, dict[str, object]] = {}
    for rname, when in panel_ranges(end).items():
        for model, found in dashboard_panels():
            values = timer.values(model, when)
            forced = timer.values(model, when, force_raw) if rname == "7 days" else None
            for panel in found:
                row: dict[str, object] = {
                    "rp": values["rp"][0] if values.get("rp") else None,
                    "p95_ms": round(timer.p95(panel, when, values), 1),
                }
                if forced is not None:
                    row["p95_ms_from_raw"] = round(timer.p95(panel, when, forced), 1)
                out[f"{rname} | {panel.dashboard}: {panel.title}"] = row
    return out


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
        with LocalStack(run / "stack", mosquitto_options=broker) as stack:
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
            try:
                for d in range(args.days):
                    day = first + d * DAY
                    t0 = time.monotonic()
                    cams: list[int] = []
                    thread = threading.Thread(
                        target=_analyses_into,
                        args=(cams, stack, settings, backlog, cameras, day, played, run / "lines"),
                    )
                    thread.start()
                    report = run_scenario(city, scenario, settings.mqtt, speed=None, start=day)
                    thread.join()
                    if not cams:
                        raise RuntimeError("publishing the analyses failed (see above)")
                    _wait_stored(influx, day, len(report.reading_keys))
                    backlog.wait_below(SETTLED_BACKLOG)  # rules caught up too
                    played_s = time.monotonic() - t0
                    t1 = time.monotonic()
                    ds = Downsampler.from_settings(settings)
                    ds.run(day, day + DAY)
                    ds.close()
                    downsample_s = time.monotonic() - t1
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
                        "points_in_influx": _count(influx, day, day + DAY),
                        "played_s": round(played_s, 1),
                        "downsample_s": round(downsample_s, 1),
                        "bytes": rp,
                        "rss_mb": {
                            "mosquitto": _rss(stack.mosquitto.pid) >> 20,
                            "influxd": _rss(stack.influxd.pid) >> 20,
                            "ingest": ingest.rss_bytes() >> 20,
                            "rules": _rss(rules.proc.pid if rules.proc else None) >> 20,
                        },
                        # CPU seconds used so far: where the played time goes.
                        "cpu_s": {
                            "bench": round(_bench_cpu_s(), 1),
                            "mosquitto": round(_cpu_s(stack.mosquitto.pid), 1),
                            "influxd": round(_cpu_s(stack.influxd.pid), 1),
                            "ingest": round(_cpu_s(ingest.proc.pid if ingest.proc else None), 1),
                            "rules": round(_cpu_s(rules.proc.pid if rules.proc else None), 1),
                        },
                        "loadavg": load.now(),
                        "at": datetime.now(UTC).strftime("%H:%M:%S"),
                    }
                    if d in (0, args.days - 1):
                        t2 = time.monotonic()
                        row["panels"] = time_panels(timer, settings, day + DAY)
                        row["panels_s"] = round(time.monotonic() - t2, 1)
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
