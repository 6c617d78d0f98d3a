"""`python -m bench.api [--quick] [--no-save] [--postgres]`: requests/s and latency of the
API's incident listing and KPI queries beside a bare FastAPI endpoint, same server, same
run.

The server (`bench.api_server`: uvicorn, one process, the real app) runs as a subprocess
on a database seeded with incidents through the incident store; the load generator is
an asyncio HTTP/1.1 keep-alive client in this process (raw sockets, no HTTP library
overhead) with a fixed number of connections, each sending its next request when the
previous answer is complete. Each case: 1 s warm-up, then a timed window; requests/s
= answers in the window / window; p50 and p99 of per-request latency. Every answer's
status is checked (200 expected; anything else fails the run).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from random import Random

import httpx
from sqlalchemy import event
from sqlalchemy.orm import Session

from api.principal import Principal, Role
from api.security import issue_token
from bench.ingest_report import markdown_table
from pantau.city import load_city
from pantau.clock import SystemClock
from pantau.incidents import (
    ConditionChange,
    ConditionState,
    DedupKey,
    Evidence,
    Hazard,
    Severity,
    WorkflowState,
)
from pantau.local.ports import free_port
from pantau.store import IncidentStore, load_sla_policy, make_engine, migrate, placement_by_zone
from pantau.store.api_tables import UserRow
from pantau.zoneindex import ZoneIndex

RESULTS_DIR = Path(__file__).resolve().parent / "results"
UNCACHED_PAGES = 1000  # > api.listing_cache.MAX_ENTRIES
TARGET = 0.8  # listing throughput as a share of the bare endpoint's (the issue's target)
SEED = 2026


@dataclass(frozen=True, slots=True)
class Case:
    name: str
    path: str


@dataclass(frozen=True, slots=True)
class Result:
    case: str
    path: str
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float


def seed(database_url: str, incidents: int) -> None:
    """`incidents` incidents over the city's kelurahan in the past 30 days, through the
    incident store, with a realistic spread of workflow states."""
    city = load_city()
    zones = ZoneIndex.for_city(city)
    engine = make_engine(database_url)

    @event.listens_for(engine, "connect")
    def _fast(dbapi_conn: sqlite3.Connection, _record: object) -> None:
        # Seeding only: no fsync per transaction (the server reopens the file normally).
        dbapi_conn.execute("PRAGMA synchronous=OFF")

    migrate(engine)
    store = IncidentStore(
        engine,
        load_sla_policy(),
        SystemClock(),
        place=placement_by_zone(lambda zone_id: zones.zone(zone_id).level),
    )
    rng = Random(SEED)
    kelurahan = [z.id for z in city.zones.kelurahan]
    hazards = [Hazard.FLOOD, Hazard.HEAVY_RAIN, Hazard.ROAD_DAMAGE, Hazard.TRAFFIC_JAM]
    now = datetime.now(UTC).replace(microsecond=0)
    for i in range(incidents):
        at = now - timedelta(minutes=rng.randint(10, 30 * 24 * 60))
        update = store.apply(
            ConditionChange(
                key=DedupKey(f"bench-{i}", rng.choice(kelurahan), rng.choice(hazards)),
                state=ConditionState.ACTIVE,
                severity=Severity(rng.randint(1, 4)),
                at=at,
                evidence=Evidence(
                    device_ids=("wl-bench",),
                    metric="water_level",
                    peak_value=150.0,
                    first_at=at - timedelta(minutes=5),
                    last_at=at,
                ),
                reason="bench",
            )
        )
        assert update.incident is not None
        roll = rng.random()
        if roll < 0.7:
            ack = at + timedelta(minutes=rng.randint(1, 30))
            store.transition(update.incident.id, WorkflowState.ACKNOWLEDGED, "bench", "ok", ack)
            if roll < 0.6:
                done = min(ack + timedelta(minutes=rng.randint(10, 600)), now)
                store.transition(update.incident.id, WorkflowState.RESOLVED, "bench", "fixed", done)
    # The API accepts tokens of existing, active users only (api.sessions).
    with Session(engine) as session, session.begin():
        session.add(
            UserRow(
                username="bench",
                password_hash="!",
                role="operator",
                zones="",
                active=True,
                created_at=now,
            )
        )
    engine.dispose()


async def _client(
    host: str, port: int, requests: list[bytes], stop: float, latencies: list[float]
) -> int:
    reader, writer = await asyncio.open_connection(host, port)
    done = 0
    try:
        while time.perf_counter() < stop:
            request = requests[done % len(requests)]
            start = time.perf_counter()
            writer.write(request)
            status_line = await reader.readline()
            if b" 200 " not in status_line:
                raise RuntimeError(f"unexpected answer {status_line!r} to {request[:60]!r}")
            length = 0
            while True:
                line = await reader.readline()
                if line in {b"\r\n", b""}:
                    break
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - start)
            done += 1
    finally:
        writer.close()
    return done


async def _load(
    name: str, port: int, path: str, token: str, connections: int, seconds: float
) -> Result:
    # "[page]" in a path cycles over UNCACHED_PAGES distinct queries, more than the cache
    # holds, so every answer is computed afresh.
    pages = range(UNCACHED_PAGES) if "[page]" in path else range(1)
    paths = [path.replace("[page]", str(n)) for n in pages]
    request = [
        f"GET {p} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
        for p in paths
    ]
    warm: list[float] = []
    await asyncio.gather(
        *(_client("127.0.0.1", port, request, time.perf_counter() + 1.0, warm)
          for _ in range(connections))
    )  # fmt: skip
    latencies: list[float] = []
    began = time.perf_counter()
    stop = began + seconds
    counts = await asyncio.gather(
        *(_client("127.0.0.1", port, request, stop, latencies) for _ in range(connections))
    )
    elapsed = time.perf_counter() - began
    ordered = sorted(latencies)

    def pct(p: float) -> float:
        return 1000 * ordered[min(len(ordered) - 1, int(p * len(ordered)))]

    total = sum(counts)
    rps = round(total / elapsed, 1)
    return Result(
        name, path, total, round(elapsed, 2), rps, round(pct(0.5), 2), round(pct(0.99), 2)
    )


CASES = (
    Case("bare FastAPI endpoint (async)", "/bench/bare"),
    Case("bare FastAPI endpoint (sync, thread pool)", "/bench/bare-sync"),
    Case("incident list, 50 newest", "/incidents?limit=50"),
    Case(
        "incident list, active floods in a kecamatan",
        "/incidents?active=true&hazard=flood&kecamatan=kec-karawaci",
    ),
    Case("incident list, page 10 of 20", "/incidents?limit=20&offset=180"),
    Case("incident list, 50 newest, uncached", "/incidents?limit=50&offset=[page]"),
    Case("KPI, kota, one month", "/kpi?scope=kota&month={month}"),
    Case("KPI, agency bpbd, one month", "/kpi?scope=agency&id=bpbd&month={month}"),
    # start=<n>: unix seconds, a different (equivalent) period per request
    Case(
        "KPI, one kecamatan, uncached",
        "/kpi?scope=kecamatan&id=kec-karawaci&start=[page]&end={end}",
    ),
)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.api", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke check: small and short")
    p.add_argument("--no-save", action="store_true", help="do not write bench/results/")
    p.add_argument("--incidents", type=int, default=None, help="seeded incidents (5000)")
    p.add_argument("--seconds", type=float, default=None, help="timed window per case (8)")
    p.add_argument("--connections", type=int, default=16)
    args = p.parse_args(argv)
    incidents = args.incidents or (500 if args.quick else 5000)
    seconds = args.seconds or (2.0 if args.quick else 8.0)
    secret = secrets.token_urlsafe(32)
    month = datetime.now(UTC).strftime("%Y-%m")
    end_of_time = "2100-01-01T00:00:00Z"
    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp:
        url = f"sqlite:///{tmp}/pantau.db"
        t0 = time.perf_counter()
        seed(url, incidents)
        print(f"seeded {incidents} incidents in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        port = free_port()
        env = {**os.environ, "PANTAU_API__JWT_SECRET": secret}
        server = subprocess.Popen(
            [sys.executable, "-m", "bench.api_server", url, str(port)], env=env
        )
        try:
            deadline = time.monotonic() + 300  # a busy shared box imports slowly
            while True:
                try:
                    httpx.get(f"http://127.0.0.1:{port}/bench/bare", timeout=1)
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise RuntimeError("the API server did not start") from None
                    time.sleep(0.2)
            token = issue_token(
                Principal(subject="bench", role=Role.OPERATOR),
                secret,
                datetime.now(UTC),
                timedelta(hours=1),
            )
            results = []
            for case in CASES:
                path = case.path.format(month=month, end=end_of_time)
                r = asyncio.run(_load(case.name, port, path, token, args.connections, seconds))
                results.append(r)
                print(f"{case.name}: {r.rps} req/s, p99 {r.p99_ms} ms", file=sys.stderr)
        finally:
            server.terminate()
            server.wait(timeout=10)
    bare = results[0].rps
    rows = [
        [r.case, f"{r.rps:,.0f}", f"{r.rps / bare:.2f}", f"{r.p50_ms:.1f}", f"{r.p99_ms:.1f}"]
        for r in results
    ]
    print(markdown_table(["case", "req/s", "x bare", "p50 ms", "p99 ms"], rows))
    listing = results[2].rps / bare
    verdict = "met" if listing >= TARGET else "not met"
    print(f"\nlisting / bare = {listing:.2f} (target >= {TARGET}): {verdict}")
    print(
        f"{incidents} incidents on SQLite, {args.connections} connections, {seconds:g} s per "
        f"case, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    if not args.no_save:
        RESULTS_DIR.mkdir(exist_ok=True)
        name = f"api-{datetime.now(UTC):%Y-%m-%d}{'-quick' if args.quick else ''}.json"
        (RESULTS_DIR / name).write_text(
            json.dumps(
                {
                    "incidents": incidents,
                    "connections": args.connections,
                    "seconds": seconds,
                    "results": [asdict(r) for r in results],
                    "listing_vs_bare": round(listing, 3),
                    "load_average": os.getloadavg(),
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
