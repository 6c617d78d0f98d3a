"""`python -m bench.ingest_replicas [--quick]`: ingest as 1 and 2 replicas (issue 19).

One LocalStack (mosquitto + influxd) and a private PostgreSQL (the leases). Each case
starts `pantau ingest` processes on a topic root and database of its own, waits until
the partitions are split and a probe is stored, then publishes a backlog of native
water-level readings (one per QoS 1 message, `mosquitto_pub -l` per device, as
bench.ingest's native case) and times it until InfluxDB holds every reading:

- 1 replica, no partitions: one session named for the process (the embedded default)
- 1 replica, 4 partitions: the four partition sessions of a shared subscription in one
  process (what replication costs when nothing is replicated)
- 2 replicas, 4 partitions: two partitions each

Reported: readings/s end to end, and CPU-seconds per 1,000 readings of each replica
(/proc utime+stime over the timed window). Exit 1 if a case stored fewer readings than
it sent. See bench/README.md for results and the machine they ran on.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import psycopg

from bench.cpu import CpuWatch
from bench.ingest import NATIVE, QUICK_SIZES, Bench, wait_stored
from bench.mosquitto_clients import run_publishers
from bench.stored_count import count_points
from pantau.city import load_city
from pantau.influx.query import InfluxQL
from pantau.local import LocalStack
from pantau.local.ports import free_port
from pantau.local.postgres import Postgres
from pantau.settings import Settings
from pantau.store import make_engine, migrate
from pantau.store.leases import holders
from testkit.services import IngestProcess, wait_ingesting, wait_until

READINGS = 100_000
QUICK_READINGS = 20_000


@dataclass(frozen=True, slots=True)
class Case:
    name: str
    replicas: int
    partitions: int


CASES = (
    Case("1 replica, no partitions", 1, 0),
    Case("1 replica, 4 partitions", 1, 4),
    Case("2 replicas, 4 partitions", 2, 4),
)


@dataclass(frozen=True, slots=True)
class Result:
    case: Case
    sent: int
    stored: int
    seconds: float
    cpu_s: tuple[float, ...]  # per replica

    @property
    def rate(self) -> float:
        return self.stored / self.seconds

    def row(self) -> str:
        per_k = " / ".join(f"{c / self.stored * 1000:.3f}" for c in self.cpu_s)
        total = sum(self.cpu_s) / self.stored * 1000
        lost = "" if self.stored == self.sent else f" LOST {self.sent - self.stored}"
        return (
            f"| {self.case.name} | {self.sent:,} | {self.rate:,.0f}{lost} | {per_k} | {total:.3f} |"
        )


def run_case(bench: Bench, postgres: Postgres, case: Case, readings: int, work: Path) -> Result:
    stack = bench.stack
    root = f"br{uuid.uuid4().hex[:8]}"
    database = f"bench_replicas_{uuid.uuid4().hex[:8]}"
    stack.create_database(database)
    db = f"leases_{uuid.uuid4().hex[:8]}"
    admin = f"host={postgres.host} port={postgres.port} user=postgres dbname=postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
    url = postgres.url_of(db)
    engine = make_engine(url)
    migrate(engine)
    base = Settings()
    settings = base.model_copy(
        update={
            "mqtt": base.mqtt.model_copy(update={"root": root}),
            "influx": base.influx.model_copy(update={"database": database}),
        }
    )
    env = {
        "PANTAU_INGEST__PARTITIONS": str(case.partitions),
        "PANTAU_INGEST__RATE_LIMIT_FACTOR": "0",  # it would shed a benchmark
        "PANTAU_DATABASE_URL": url,
    }
    procs = [
        IngestProcess(
            stack,
            settings,
            work / f"spool-{root}",
            work / f"ingest-{root}-{i}.log",
            PANTAU_REPLICA=f"ingest-{i}",
            **env,
        )
        for i in range(case.replicas)
    ]
    jobs = bench.jobs(NATIVE, root, readings)
    sent = sum(j.readings for j in jobs)
    for p in procs:
        p.start()
    try:
        if case.partitions:
            share = case.partitions // case.replicas
            want = Counter({f"ingest-{i}": share for i in range(case.replicas)})
            wait_until(
                lambda: Counter(x.owner for x in holders(engine, "ingest")) == want,
                240,
                "the partitions split",
            )
        wait_ingesting(settings, bench.devices[0], timeout=120)
        with InfluxQL(stack.influx_url, database, timeout_s=60) as influx:
            pids = {f"ingest-{i}": p.proc.pid for i, p in enumerate(procs) if p.proc}
            with CpuWatch(pids) as watch:
                started = time.monotonic()
                run_publishers(stack, jobs)
                stored, seconds = wait_stored(
                    influx, "water_level", sent, started, lambda: all(p.alive() for p in procs)
                )
            time.sleep(0.5)
            stored = count_points(influx, "water_level")
        cpu = watch.result()
    finally:
        for p in procs:
            p.stop()
        engine.dispose()
    stack.drop_database(database)
    return Result(case, sent, stored, seconds, tuple(cpu[n].seconds for n in sorted(pids)))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest_replicas", description=__doc__)
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_READINGS:,} readings")
    args = parser.parse_args(argv)
    readings = QUICK_READINGS if args.quick else READINGS
    city = load_city()
    print(f"load average before: {Path('/proc/loadavg').read_text().strip()}", flush=True)
    results = []
    with tempfile.TemporaryDirectory(prefix="pantau-bench-") as tmp:
        work = Path(tmp)
        postgres = Postgres(work / "postgres", free_port())
        postgres.start()
        try:
            with LocalStack(work / "stack") as stack:
                os.environ.update(stack.environment())
                bench = Bench(stack, city, QUICK_SIZES, work)
                for case in CASES:
                    print(f"{case.name} ...", flush=True)
                    results.append(run_case(bench, postgres, case, readings, work))
                    print(results[-1].row(), flush=True)
        finally:
            postgres.stop()
    print(f"load average after: {Path('/proc/loadavg').read_text().strip()}")
    print()
    print("| case | readings | readings/s | CPU-s per 1,000 readings, each replica | all |")
    print("|---|---:|---:|---:|---:|")
    for r in results:
        print(r.row())
    return 0 if all(r.stored == r.sent for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
