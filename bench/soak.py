"""Soak: a simulated week (or `--days N`) of the whole fleet at its real reporting rates,
with every camera's analyses at its `sample_fps`, played as fast as the machine takes
it through real Mosquitto -> `pantau ingest` and `pantau rules` processes -> InfluxDB.

After each simulated day: InfluxDB's bytes on disk for raw readings and for their
5-minute and hourly aggregates (the downsampler is run on the day, timed), the RSS of
each service (mosquitto, influxd, ingest, rules), and after the first and the last day
the p95 time of the heaviest dashboard panels. Writes a JSON file and prints a table.

    uv run python -m bench.soak --days 1     # the short version (bench/README.md)
    uv run python -m bench.soak              # the week
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pantau.cameras import Camera, load_cameras
from pantau.city import load_city
from pantau.devices import default_config_dir
from pantau.frame_analysis import FrameAnalysis, Measure, encode_analysis
from pantau.influx.downsample import Downsampler
from pantau.influx.query import InfluxQL
from pantau.influx.retention import AGG_5M, ensure_retention, source
from pantau.local import LocalStack
from pantau.mqtt import make_client
from pantau.settings import Settings
from pantau.topics import Topics
from simulators.publisher import run_scenario
from simulators.scenario import find_scenario, load_scenario
from testkit.services import IngestProcess, RulesProcess, wait_until

DAY = timedelta(days=1)  # the spacing of the played days
PANEL_RUNS = 20


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


def _analysis(camera: Camera, at: datetime, seq: int) -> bytes:
    measures = [
        Measure("camera_brightness", 0.5, "/", 0.9),
        Measure("camera_sharpness", 1.0, "/", 0.9),
        Measure("camera_fault", 0.0, "/", 0.9),
    ]
    measures += [Measure("region_occupancy", 0.2, "/", 0.8, r.id) for r in camera.regions]
    if camera.gauge is not None:
        measures.append(Measure("water_depth", 3.0, "cm", 0.8))
    w, h = camera.frame_size
    return encode_analysis(
        FrameAnalysis(
            camera_id=camera.id, time=at, seq=seq, width=w, height=h, measures=tuple(measures)
        )
    )


def publish_analyses(
    settings: Settings, cameras: dict[str, Camera], start: datetime, end: datetime
) -> int:
    """Every camera's analyses over [start, end) at its sample_fps, QoS 1, as fast as
    the broker acknowledges; the number published."""
    client = make_client(settings.mqtt, f"soak-cameras-{start:%m%d}", manual_ack=False)
    client.connect(settings.mqtt.host, settings.mqtt.port)
    client.loop_start()
    topics = Topics(settings.mqtt.root)
    sent = 0
    try:
        for camera in cameras.values():
            step = timedelta(seconds=1 / camera.sample_fps)
            t, seq, pending = start, 0, []
            while t < end:
                info = client.publish(
                    topics.camera_analysis(camera.id), _analysis(camera, t, seq), qos=1
                )
                pending.append(info)
                if len(pending) >= 2000:
                    for p in pending:
                        p.wait_for_publish(60)
                    pending.clear()
                t, seq, sent = t + step, seq + 1, sent + 1
            for p in pending:
                p.wait_for_publish(60)
    finally:
        client.loop_stop()
        client.disconnect()
    return sent


def _analyses_into(
    out: list[int],
    settings: Settings,
    cameras: dict[str, Camera],
    day: datetime,
    played: timedelta,
) -> None:
    out.append(publish_analyses(settings, cameras, day, day + played))


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


def _p95(influx: InfluxQL, q: str, params: Mapping[str, str | int | float | bool]) -> float:
    times = []
    for _ in range(PANEL_RUNS):
        t0 = time.perf_counter()
        influx.query(q, params=params)
        times.append(time.perf_counter() - t0)
    return statistics.quantiles(times, n=20)[-1] * 1000


def panels(influx: InfluxQL, station: str, start: datetime, end: datetime) -> dict[str, float]:
    """p95 milliseconds of the heaviest panels over the data played so far."""
    db = influx.database or "soak"
    last_day = {"s": (end - DAY).isoformat(), "e": end.isoformat()}
    span = {"s": start.isoformat(), "e": end.isoformat()}
    one = {**last_day, "d": station}
    return {
        "station 24 h, raw 1-min means": _p95(
            influx,
            'SELECT mean(value) FROM water_level WHERE "device" = $d AND time >= $s '
            "AND time < $e GROUP BY time(1m)",
            one,
        ),
        "city map: last value of every station": _p95(
            influx,
            "SELECT last(value) FROM water_level WHERE time >= $s AND time < $e GROUP BY device",
            last_day,
        ),
        "all stations, whole span, hourly from raw": _p95(
            influx,
            "SELECT mean(value) FROM water_level WHERE time >= $s AND time < $e "
            "GROUP BY time(1h), device",
            span,
        ),
        "all stations, whole span, hourly from 5-min aggregates": _p95(
            influx,
            f'SELECT sum("sum") / sum("count") FROM {source("water_level", AGG_5M, db)} '
            "WHERE time >= $s AND time < $e GROUP BY time(1h), device",
            span,
        ),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument(
        "--day-hours", type=float, default=24, help="play only this much of each day (a check)"
    )
    parser.add_argument("--out", type=Path, default=None, help="JSON results file")
    args = parser.parse_args(argv)
    city = load_city(default_config_dir())
    cameras = load_cameras(city)
    scenario = load_scenario(find_scenario("calm-day"), city)
    scenario = replace(scenario, malformed_rate=0.0, duration_s=args.day_hours * 3600)
    played = timedelta(hours=args.day_hours)
    with tempfile.TemporaryDirectory(prefix="pantau-soak-") as tmp:
        run = Path(tmp)
        with LocalStack(run / "stack") as stack:
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
            data = stack.influxd.directory
            first = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
            first -= timedelta(days=args.days, hours=1)
            days: list[dict[str, object]] = []
            station = next(d for d in sorted(city.devices) if d.startswith("wl-"))
            try:
                for d in range(args.days):
                    day = first + d * DAY
                    t0 = time.monotonic()
                    cams: list[int] = []
                    thread = threading.Thread(
                        target=_analyses_into, args=(cams, settings, cameras, day, played)
                    )
                    thread.start()
                    report = run_scenario(city, scenario, settings.mqtt, speed=None, start=day)
                    thread.join()
                    _wait_stored(influx, day, len(report.reading_keys))
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
                    }
                    if d in (0, args.days - 1):
                        row["panels_p95_ms"] = panels(influx, station, first, day + DAY)
                    days.append(row)
                    print(json.dumps(row), flush=True)
            finally:
                influx.close()
                ingest.stop()
                rules.stop()
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    result = {"days": days, "loadavg_end": load, "command": " ".join(sys.argv)}
    out = args.out or Path("bench/results") / f"soak-{datetime.now(UTC):%Y-%m-%d}-{args.days}d.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
