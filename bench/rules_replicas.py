"""The rules service as 1, 2 and 3 replicas (rules.partitioned) under a steady load.

Per (replicas, rate) run: a fresh topic root, InfluxDB database and PostgreSQL
database; N `python -m pantau.cli rules` processes with PANTAU_RULES__PARTITIONED=true
and their own PANTAU_REPLICA, sharing the 13 kecamatan partitions through leases. Once
every partition is consuming and the shares have settled, the background load and the
flood injections of bench/rules_latency.py run against them (same devices, same pacing,
same publish -> crew alert measure). Reported per run: readings/s achieved, CPU-seconds
of all replicas per 1,000 readings and each replica's cores, p50/p99 publish -> alert.

    uv run python -m bench.rules_replicas [--replicas 1,2,3] [--rates 1000,2000,5000]
        [--injections 20] [--warmup 10] [--idle 10] [--service-tree DIR] [--no-save]

`--idle S`: each run first measures the settled replicas' CPU for S seconds with no
input (what waiting costs: 13 partition workers). `--service-tree DIR` runs the
replicas from another source tree (`git archive` of the commit to compare with).

Targets (issue 19): CPU per reading with 2 replicas within 15 % of one replica's; p99
publish -> alert < 500 ms at 5,000 readings/s with 2 replicas.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import psycopg

from bench.cpu import CpuWatch
from bench.replicas_plot import plot_rules_replicas
from bench.rules_latency import (
    TAIL_S,
    AlertListener,
    Background,
    Injection,
    background_devices,
    inject,
    match_alerts,
    percentile,
    pick_stations,
)
from pantau.city import City, load_city
from pantau.local import LocalStack
from pantau.local.ports import free_port
from pantau.local.postgres import Postgres
from pantau.store import migrate
from pantau.topics import Topics

RESULTS_DIR = Path(__file__).resolve().parent / "results"
PARTITION_LINE = re.compile(r"partition (\S+) consuming")


@dataclass(slots=True)
class ReplicaRun:
    replicas: int
    rate: int
    load_s: float
    written: int
    injections: list[Injection]
    cpu_s: dict[str, float] = field(default_factory=dict)  # CPU-seconds per replica
    loadavg: str = ""
    idle_cores: dict[str, float] = field(default_factory=dict)  # before the load, no input

    @property
    def achieved(self) -> float:
        return self.written / self.load_s

    @property
    def cpu_s_per_1k(self) -> float:
        """All replicas' CPU-seconds per 1,000 readings (the cost of the work)."""
        return sum(self.cpu_s.values()) / (self.written / 1000) if self.written else float("nan")

    def latencies_ms(self) -> list[float]:
        return [
            (i.alert_at - i.last_publish) * 1000
            for i in self.injections
            if i.alert_at is not None and i.last_publish is not None
        ]

    def as_dict(self) -> dict[str, object]:
        lat = self.latencies_ms()
        return {
            "replicas": self.replicas,
            "offered_per_s": self.rate,
            "achieved_per_s": round(self.achieved, 1),
            "cpu_s_per_1k_readings": round(self.cpu_s_per_1k, 4),
            "cpu_s_per_1k_readings_per_replica": round(self.cpu_s_per_1k / self.replicas, 4),
            "cores_by_replica": {k: round(v / self.load_s, 3) for k, v in self.cpu_s.items()},
            "alerts": f"{len(lat)}/{len(self.injections)}",
            "p50_ms": round(percentile(lat, 50), 1),
            "p99_ms": round(percentile(lat, 99), 1),
            "loadavg": self.loadavg,
            "idle_cores_by_replica": {k: round(v, 3) for k, v in self.idle_cores.items()},
        }


class Replicas:
    """N rules replicas on one root, InfluxDB database and PostgreSQL database."""

    def __init__(
        self,
        stack: LocalStack,
        root: str,
        database: str,
        url: str,
        n: int,
        work: Path,
        tree: Path | None = None,
    ) -> None:
        base = {
            **os.environ,
            **stack.environment(),
            "PANTAU_MQTT__ROOT": root,
            "PANTAU_INFLUX__DATABASE": database,
            "PANTAU_DATABASE_URL": url,
            "PANTAU_RULES__CLIENT_ID": f"bench-{root}",
            "PANTAU_RULES__PARTITIONED": "true",
        }
        if tree is not None:  # another checkout's source, run with this environment
            base["PYTHONPATH"] = str(tree)
        self.logs = [work / f"rules-{root}-r{i}.log" for i in range(n)]
        self.procs: list[subprocess.Popen[bytes]] = []
        for i, log in enumerate(self.logs):
            with log.open("ab") as sink:
                self.procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "pantau.cli", "rules"],
                        env={**base, "PANTAU_REPLICA": f"r{i}"},
                        cwd=tree,
                        stdin=subprocess.DEVNULL,
                        stdout=sink,
                        stderr=subprocess.STDOUT,
                    )
                )

    def consuming(self) -> dict[str, set[str]]:
        """Partitions each replica logged as consuming at some point."""
        return {
            f"r{i}": set(PARTITION_LINE.findall(log.read_text(errors="replace")))
            for i, log in enumerate(self.logs)
            if log.exists()
        }

    def wait_settled(self, partitions: int, timeout: float = 120) -> None:
        """Every partition consuming and each replica's share taken (13 over 2: 7, 6)."""
        deadline = time.monotonic() + timeout
        n = len(self.procs)
        fair = sorted([partitions // n + (1 if i < partitions % n else 0) for i in range(n)])
        while time.monotonic() < deadline:
            for p, log in zip(self.procs, self.logs, strict=True):
                if p.poll() is not None:
                    raise RuntimeError(f"a replica exited:\n{log.read_text()[-2000:]}")
            seen = self.consuming()
            union = set().union(*seen.values()) if seen else set()
            held = sorted(self._held())
            if len(union) >= partitions and held == fair:
                time.sleep(2.0)  # the last handovers' rebuilds and SUBACKs
                return
            time.sleep(0.5)
        raise RuntimeError(f"replicas not settled in {timeout:g} s: {self.consuming()}")

    def _held(self) -> list[int]:
        """Partitions each replica holds now: consuming lines less the ones it gave back."""
        out = []
        for log in self.logs:
            text = log.read_text(errors="replace") if log.exists() else ""
            held: set[str] = set()
            for line in text.splitlines():
                if m := re.search(r"took partition (\S+)", line):
                    held.add(m.group(1))
                elif m := re.search(r"partition (\S+) lost, stopping", line):
                    held.discard(m.group(1))
            out.append(len(held))
        return out

    def stop(self) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def fresh_database(postgres: Postgres) -> str:
    name = f"bench_{uuid.uuid4().hex[:10]}"
    admin = f"host={postgres.host} port={postgres.port} user=postgres dbname=postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = postgres.url_of(name)
    migrate(url)  # once, before the replicas (they would race to create the tables)
    return url


def run(
    stack: LocalStack,
    postgres: Postgres,
    city: City,
    n: int,
    rate: int,
    opts: argparse.Namespace,
    work: Path,
    progress: Callable[[str], None],
) -> ReplicaRun:
    root = f"br{uuid.uuid4().hex[:8]}"
    topics = Topics(root)
    database = f"bench_rr_{root}"
    stack.create_database(database)
    stations = pick_stations(city, opts.injections)
    devices = background_devices(city, stations)
    url = fresh_database(postgres)
    replicas = Replicas(stack, root, database, url, n, work, opts.service_tree)
    listener = AlertListener(stack, root)
    background = Background(stack, topics, devices)
    stop = threading.Event()
    try:
        replicas.wait_settled(len(city.zones.kecamatan))
        if not listener.wait_subscribed(10):
            raise RuntimeError("alert listener not subscribed")
        pids = {f"r{i}": p.pid for i, p in enumerate(replicas.procs)}
        idle: dict[str, float] = {}
        if opts.idle > 0:  # settled, no input: what waiting costs
            with CpuWatch(pids) as quiet:
                time.sleep(opts.idle)
            idle = {k: u.cores for k, u in quiet.result().items() if k in pids}
            progress(f"  {n} replica(s) idle: {idle} cores")
        with CpuWatch(pids) as watch:
            background.start(rate)
            first = time.time() + opts.warmup
            injections = [
                Injection(d, round(first + i * opts.spacing, 3)) for i, d in enumerate(stations)
            ]
            injector = threading.Thread(
                target=inject, args=(stack, topics, injections, stop), daemon=True
            )
            injector.start()
            deadline = injections[-1].last_time + 1.0 + TAIL_S
            progress(
                f"  {n} replica(s), {rate:,}/s: alerts expected by {deadline - time.time():.0f} s"
            )
            while time.time() < deadline:
                time.sleep(0.5)
                match_alerts(injections, listener.received)
                if all(i.alert_at is not None for i in injections):
                    break
            stop.set()
            written = background.stop()
            injector.join()
        loadavg = Path("/proc/loadavg").read_text().strip()
    finally:
        stop.set()
        replicas.stop()
        listener.close()
        stack.drop_database(database)
    match_alerts(injections, listener.received)
    # The watch also reports the machine and other processes: the replicas only.
    cpu = {name: use.seconds for name, use in watch.result().items() if name in pids}
    load_s = background.stopped - background.started
    return ReplicaRun(n, rate, load_s, written, injections, cpu, loadavg, idle)


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.rules_replicas", description=__doc__)
    parser.add_argument("--replicas", type=_ints, default=(1, 2, 3))
    parser.add_argument("--rates", type=_ints, default=(1000, 2000, 5000))
    parser.add_argument("--injections", type=int, default=20, help="stations made to breach")
    parser.add_argument("--spacing", type=float, default=0.5, help="s between injections")
    parser.add_argument("--warmup", type=float, default=10.0, help="s of load before them")
    parser.add_argument("--no-save", action="store_true", help="do not write bench/results/")
    parser.add_argument(
        "--idle", type=float, default=10.0, help="s of no input, measured before each load"
    )
    parser.add_argument("--service-tree", type=Path, help="run the replicas from this tree")
    parser.add_argument("--tag", default="", help="appended to the results file name")
    opts = parser.parse_args(argv)
    city = load_city()
    results: list[dict[str, object]] = []

    def progress(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    with tempfile.TemporaryDirectory(prefix="pantau-bench-rr-") as tmp:
        work = Path(tmp)
        postgres = Postgres(work / "pg", free_port())
        postgres.start()
        try:
            with LocalStack(work / "stack") as stack:
                for n in opts.replicas:
                    for rate in opts.rates:
                        done = run(stack, postgres, city, n, rate, opts, work, progress)
                        results.append(done.as_dict())
                        progress("  " + json.dumps(results[-1]))
        finally:
            postgres.stop()
    progress(
        f"\n{'replicas':>8} {'offered/s':>9} {'achieved/s':>10} {'cpu-s/1k':>9} "
        f"{'per replica':>11} {'p50 ms':>7} {'p99 ms':>7} {'idle cores':>10}"
    )
    for r in results:
        progress(
            f"{r['replicas']:>8} {r['offered_per_s']:>9} {r['achieved_per_s']:>10} "
            f"{r['cpu_s_per_1k_readings']:>9} {r['cpu_s_per_1k_readings_per_replica']:>11} "
            f"{r['p50_ms']:>7} {r['p99_ms']:>7} "
            f"{sum(cast(dict[str, float], r['idle_cores_by_replica']).values()):>10.3f}"
        )
    if not opts.no_save:
        RESULTS_DIR.mkdir(exist_ok=True)
        tag = f"-{opts.tag}" if opts.tag else ""
        path = RESULTS_DIR / f"rules-replicas-{datetime.now(UTC):%Y-%m-%d}{tag}.json"
        path.write_text(json.dumps({"runs": results}, indent=2) + "\n")
        plot_rules_replicas(results, path.with_suffix(".png"), f"rules replicas ({path.stem})")
        progress(f"saved {path} and its plot")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
