"""Two `pantau api` replicas as processes on one PostgreSQL, as behind a load balancer:
what one does shows on the other (list and live stream), and the login delays and the
citizen-report limit count both replicas' requests together (about 15 s)."""

from __future__ import annotations

import json
import queue
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import psycopg
import pytest
from sqlalchemy import insert

from api.context import build_context
from api.geography import Geography
from pantau.local import LocalStack
from pantau.local.ports import free_port
from pantau.local.postgres import Postgres
from pantau.settings import Settings
from pantau.store import make_engine
from pantau.store.models import IncidentEventRow
from pantau.store.types import EventKind
from testkit.services import ServiceProcess, wait_until
from tests.api.conftest import CITY, PASSWORD, ZONES, api_settings, seed

FREE = 3  # failed logins before the first delay
REPORTS = 4  # citizen reports per address per hour


class Replica:
    def __init__(self, name: str, proc: ServiceProcess, port: int) -> None:
        self.name, self.proc = name, proc
        self.base = f"http://127.0.0.1:{port}"
        self.http = httpx.Client(base_url=self.base, timeout=30)

    def login(self, username: str, password: str = PASSWORD) -> httpx.Response:
        return self.http.post("/auth/token", data={"username": username, "password": password})

    def headers(self, username: str) -> dict[str, str]:
        r = self.login(username)
        assert r.status_code == 200, r.text
        return {"Authorization": f"Bearer {r.json()['access_token']}"}

    def ready(self) -> bool:
        assert self.proc.alive(), self.proc.log_tail()
        try:
            return self.http.get("/openapi.json").status_code == 200
        except httpx.TransportError:
            return False


@pytest.fixture(scope="module")
def replicas(
    stack: LocalStack, postgres: Postgres, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Replica, Replica, Any]]:
    """Started once for the module (a replica takes seconds to start on a loaded
    machine); each test uses its own users, incident or counters."""
    db = f"replicas_{uuid.uuid4().hex[:12]}"
    admin = f"host={postgres.host} port={postgres.port} user=postgres dbname=postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
    postgres_url = postgres.url_of(db)
    tmp_path = tmp_path_factory.mktemp("api-replicas")
    settings = Settings()
    secret = secrets.token_urlsafe(32)
    api = api_settings(postgres_url)
    ctx = build_context(api, city=CITY, zones=ZONES, use_influx=False)
    incidents = seed(ctx)
    ctx.close()
    started = []
    for name in ("a", "b"):
        port = free_port()
        env = {
            "PANTAU_DATABASE_URL": postgres_url,
            "PANTAU_API__JWT_SECRET": secret,  # one key: a token from one works on both
            "PANTAU_API__PORT": str(port),
            "PANTAU_API__ARGON2_MEMORY_KIB": "1024",
            "PANTAU_API__ARGON2_TIME_COST": "1",
            "PANTAU_API__LOGIN_FAILURES_FREE": str(FREE),
            "PANTAU_API__REPORT_RATE_PER_HOUR": str(REPORTS),
            "PANTAU_API__STREAM_POLL_S": "0.2",
        }
        proc = ServiceProcess("api", stack, settings, tmp_path / f"api-{name}.log", env)
        proc.launch()
        started.append(Replica(name, proc, port))
    try:
        for r in started:
            wait_until(r.ready, 240, f"api replica {r.name} serving")  # a loaded machine
        yield started[0], started[1], (*incidents, postgres_url)
    finally:
        for r in started:
            r.http.close()
            r.proc.stop()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{db}" WITH (FORCE)')


def _stream(
    base: str, headers: dict[str, str], out: queue.Queue[dict[str, Any]], count: int = 1
) -> None:
    with httpx.stream("GET", f"{base}/stream/incidents", headers=headers, timeout=60) as r:
        for line in r.iter_lines():
            if line.startswith("data: "):
                out.put(json.loads(line[6:]))
                count -= 1
                if count == 0:
                    return  # all the test waits for: close the stream


def test_an_acknowledgement_on_one_replica_shows_on_the_other(
    replicas: tuple[Replica, Replica, Any],
) -> None:
    a, b, (karawaci, *_) = replicas
    ops = b.headers("ops")
    listed = b.http.get("/incidents", headers=ops).json()  # B's list, now cached
    mine = next(i for i in listed["data"] if i["id"] == karawaci.id)
    assert mine["workflow_state"] == "open"
    live: queue.Queue[dict[str, Any]] = queue.Queue()
    threading.Thread(target=_stream, args=(b.base, ops, live), daemon=True).start()
    time.sleep(1.0)  # the stream starts after the latest event at connect time
    # The token B issued is good on A (one signing key); the change is made on A.
    r = a.http.post(f"/incidents/{karawaci.id}/acknowledge", json={"note": "on A"}, headers=ops)
    assert r.status_code == 200, r.text
    event = live.get(timeout=20)
    assert event["incident_id"] == karawaci.id and event["to_state"] == "acknowledged"
    assert event["actor"] == "operator:ops"
    again = b.http.get("/incidents", headers=ops).json()
    mine = next(i for i in again["data"] if i["id"] == karawaci.id)
    assert mine["workflow_state"] == "acknowledged"
    assert b.http.get(f"/incidents/{karawaci.id}", headers=ops).json()["incident"][
        "workflow_state"
    ] == ("acknowledged")


def test_login_delays_count_failures_on_every_replica(
    replicas: tuple[Replica, Replica, Any],
) -> None:
    a, b, _ = replicas
    # Failures on A until the delay has doubled twice (1 s, then 2 s, then 4 s)...
    failures = 0
    while failures < FREE + 2:
        r = a.login("barat", "wrong")
        if r.status_code == 429:
            time.sleep(float(r.headers["Retry-After"]))
            continue
        assert r.status_code == 401, r.text
        failures += 1
    # ...and B, which saw none of them, delays the same username from the same address,
    # even with the right password (it is not checked while a delay runs).
    r = b.login("barat")
    assert r.status_code == 429, r.text
    assert r.headers["X-Login-Delay"] == "account" and int(r.headers["Retry-After"]) >= 2
    # Another user from this address is not delayed (a crew is never locked out by
    # someone guessing its name), on either replica.
    assert b.login("selatan").status_code == 200
    assert a.login("ops").status_code == 200


def test_the_citizen_report_limit_holds_across_replicas(
    replicas: tuple[Replica, Replica, Any],
) -> None:
    a, b, _ = replicas
    centre = Geography(ZONES).centre("kel-sukasari")
    assert centre is not None
    lon, lat = centre
    codes = []
    for i in range(REPORTS + 2):
        replica = (a, b)[i % 2]
        data = {"lon": str(lon), "lat": str(lat), "category": "genangan"}
        codes.append(replica.http.post("/reports", data=data).status_code)
    # Per replica in memory this would be six 201s (four each); shared it is four.
    assert codes == [201] * REPORTS + [429] * 2


def test_an_event_committed_after_a_later_one_still_reaches_the_stream(
    replicas: tuple[Replica, Replica, Any],
) -> None:
    """Two writers: an event id taken first and committed last (a transaction of another
    replica still open while a later one commits) is sent when it commits."""
    a, b, (_, ciledug, road, url) = replicas
    ops = b.headers("ops")
    live: queue.Queue[dict[str, Any]] = queue.Queue()
    threading.Thread(target=_stream, args=(b.base, ops, live, 2), daemon=True).start()
    time.sleep(1.0)
    engine = make_engine(url)
    try:
        with engine.connect() as slow:
            held = slow.begin()
            now = datetime.now(UTC)
            slow.execute(
                insert(IncidentEventRow).values(
                    incident_id=ciledug.id,
                    seq=10_000,
                    at=now,
                    recorded_at=now,
                    kind=EventKind.WORKFLOW,
                    from_state="open",
                    to_state="open",
                    actor="operator:slow",
                    reason="committed after a later event",
                )
            )
            r = a.http.post(f"/incidents/{road.id}/acknowledge", headers=ops)
            assert r.status_code == 200, r.text
            first = live.get(timeout=20)
            assert first["incident_id"] == road.id
            held.commit()
        second = live.get(timeout=20)
    finally:
        engine.dispose()
    assert second["actor"] == "operator:slow" and second["event_id"] < first["event_id"]
