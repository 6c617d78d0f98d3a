"""Login throttling that cannot be turned against a user (issue 15), and password
hashing with bounded concurrency (issue 16)."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.security import HashBusy, HashPool
from api.throttle import LoginDelays, Reason
from pantau.clock import ManualClock
from tests.api.conftest import PASSWORD, World


def test_delays_grow_per_username_and_address_and_are_forgotten() -> None:
    clock = ManualClock(datetime(2026, 11, 1, tzinfo=UTC))
    d = LoginDelays(free=3, max_delay_s=60, clock=clock)
    for _ in range(3):
        assert d.wait("barat", "10.0.0.1") is None
        d.failed("barat", "10.0.0.1")
    waits = []
    for _ in range(8):  # each further failure doubles the wait, up to the cap
        delay = d.wait("barat", "10.0.0.1")
        assert delay is not None and delay.reason is Reason.ACCOUNT
        waits.append(delay.seconds)
        clock.advance(timedelta(seconds=delay.seconds))
        assert d.wait("barat", "10.0.0.1") is None
        d.failed("barat", "10.0.0.1")
    assert waits == [1, 2, 4, 8, 16, 32, 60, 60]
    # The user from another address, and another user from this one: not delayed.
    assert d.wait("barat", "10.0.0.2") is None
    assert d.wait("selatan", "10.0.0.1") is None
    # Fifteen quiet minutes forget it all; so does a success, for that pair.
    clock.advance(timedelta(minutes=15))
    assert d.wait("barat", "10.0.0.1") is None
    for _ in range(4):
        d.failed("selatan", "10.0.0.3")
    assert d.wait("selatan", "10.0.0.3") is not None
    d.succeeded("selatan", "10.0.0.3")
    assert d.wait("selatan", "10.0.0.3") is None


def test_an_address_guessing_many_usernames_is_delayed_as_a_whole() -> None:
    clock = ManualClock(datetime(2026, 11, 1, tzinfo=UTC))
    d = LoginDelays(free=2, max_delay_s=60, clock=clock)
    for i in range(8):  # 4 x free, one failure per username
        d.failed(f"user-{i}", "10.0.0.9")
    delay = d.wait("someone-else", "10.0.0.9")
    assert delay is not None and delay.reason is Reason.ADDRESS
    assert d.wait("someone-else", "10.0.0.10") is None


def test_a_flood_of_failures_from_one_address_does_not_lock_the_user_out(world: World) -> None:
    app = create_app(world.ctx)
    attacker = TestClient(app, client=("198.51.100.66", 40000))
    phone = TestClient(app, client=("203.0.113.20", 40000))
    codes = [
        attacker.post("/auth/token", data={"username": "barat", "password": f"guess-{i}"})
        for i in range(60)
    ]
    assert {r.status_code for r in codes} == {401, 429}
    delayed = [r for r in codes if r.status_code == 429]
    assert len(delayed) >= 50 and all(int(r.headers["Retry-After"]) >= 1 for r in delayed)
    # Delayed, not locked: even the right password from the attacker's address waits...
    r = attacker.post("/auth/token", data={"username": "barat", "password": PASSWORD})
    assert r.status_code == 429 and r.headers["X-Login-Delay"] == "account"
    # ...while the crew on its own phone logs in at once.
    r = phone.post("/auth/token", data={"username": "barat", "password": PASSWORD})
    assert r.status_code == 200
    # The delay is audited once per delay, not once per refused attempt.
    log = world.client.get("/audit?limit=500", headers=world.headers("audit")).json()["data"]
    delays = [e for e in log if e["detail"].startswith("delayed")]
    assert 1 <= len(delays) < len(delayed)


def test_the_hash_pool_runs_at_most_its_workers_at_once() -> None:
    pool = HashPool(workers=2, queue=30)
    running, peak, lock = [0], [0], threading.Lock()

    def work() -> None:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.02)
        with lock:
            running[0] -= 1

    futures = [pool.submit(work) for _ in range(30)]
    with pytest.raises(HashBusy):  # the queue is full: refused, not queued without end
        pool.submit(work)
    for f in futures:
        f.result(timeout=10)
    pool.close()
    assert peak[0] == 2
