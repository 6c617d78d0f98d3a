"""Revocable sessions: deactivating a user, changing their role or scope, or logging them
out everywhere ends their tokens within `api.session_check_s` (<= 60 s) on every request,
cached lists included, and closes their open event streams."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from api.app import create_app
from api.principal import Role
from api.security import issue_token
from pantau.settings import ApiSettings
from tests.api.conftest import SELATAN, World, make_world
from tests.api.server import serve

CHECK_S = 0.3


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    yield from make_world(f"sqlite:///{tmp_path}/pantau.db", session_check_s=CHECK_S)


def _eventually(check: Callable[[], bool], within: float) -> float:
    """Seconds until `check()` held; fails after `within`."""
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < within, "did not happen in time"
        time.sleep(0.05)
    return time.monotonic() - start


def test_the_check_period_is_at_most_a_minute() -> None:
    assert ApiSettings().session_check_s <= 60
    with pytest.raises(ValidationError):
        ApiSettings(session_check_s=61)


def test_a_moved_crew_loses_its_old_scope_and_a_deactivated_one_everything(world: World) -> None:
    c = world.client
    barat = world.headers("barat")
    karawaci = f"/incidents/{world.karawaci.id}"
    assert c.get(karawaci, headers=barat).status_code == 200
    assert c.get("/incidents?active=true", headers=barat).status_code == 200  # now cached
    assert c.get("/incidents?active=true", headers=barat).status_code == 200

    # Moved to Selatan: the old token stops everywhere (the cached list too).
    world.ctx.accounts.update_user("barat", kecamatan=SELATAN)
    _eventually(lambda: c.get(karawaci, headers=barat).status_code == 401, CHECK_S + 2)
    assert c.get("/incidents?active=true", headers=barat).status_code == 401
    assert c.post(f"{karawaci}/acknowledge", headers=barat).status_code == 401
    # A new login carries the new scope.
    moved = world.headers("barat")
    assert c.get(karawaci, headers=moved).status_code == 404
    assert c.get(f"/incidents/{world.ciledug.id}", headers=moved).status_code == 200

    # Deactivated: the token stops, and so does logging in.
    world.ctx.accounts.update_user("barat", active=False)
    _eventually(lambda: c.get("/auth/me", headers=moved).status_code == 401, CHECK_S + 2)
    r = c.post("/auth/token", data={"username": "barat", "password": "correct-horse-battery"})
    assert r.status_code == 401


def test_a_role_change_and_log_out_everywhere_end_old_tokens(world: World) -> None:
    c = world.client
    ops = world.headers("ops")
    world.ctx.accounts.update_user("ops", role=Role.AUDITOR)
    _eventually(
        lambda: c.post(f"/incidents/{world.road.id}/acknowledge", headers=ops).status_code == 401,
        CHECK_S + 2,
    )
    # The same user, logged in again, is an auditor now: reads, cannot act.
    auditor = world.headers("ops")
    assert c.get("/auth/me", headers=auditor).json()["role"] == "auditor"
    assert c.post(f"/incidents/{world.road.id}/acknowledge", headers=auditor).status_code == 403

    # A lost phone: every session of the user ends, other users' do not.
    selatan = world.headers("selatan")
    world.ctx.accounts.revoke_sessions("ops")
    _eventually(lambda: c.get("/auth/me", headers=auditor).status_code == 401, CHECK_S + 2)
    assert c.get("/auth/me", headers=selatan).status_code == 200
    assert c.get("/auth/me", headers=world.headers("ops")).status_code == 200


def _stream_until_closed(url: str, headers: dict[str, str], opened: threading.Event) -> list[str]:
    lines: list[str] = []
    with httpx.stream("GET", url, headers=headers, timeout=30) as r:
        assert r.status_code == 200
        opened.set()
        lines.extend(r.iter_lines())  # returns when the server ends the stream
    return lines


def test_an_open_stream_closes_when_the_session_ends_or_the_token_expires(world: World) -> None:
    barat = world.headers("barat")
    with serve(create_app(world.ctx)) as base:
        result: list[list[str]] = []
        opened = threading.Event()
        reader = threading.Thread(
            target=lambda: result.append(
                _stream_until_closed(f"{base}/stream/incidents", barat, opened)
            ),
            daemon=True,
        )
        reader.start()
        assert opened.wait(10)
        world.ctx.accounts.update_user("barat", kecamatan=SELATAN)
        took = _eventually(lambda: not reader.is_alive(), CHECK_S + 5)
        assert ": session ended" in result[0], result
        assert took < 5
        # Reconnecting with the old token: 401.
        assert httpx.get(f"{base}/stream/incidents", headers=barat).status_code == 401

        # A token that expires while its stream is open: the stream ends with it.
        session = world.ctx.accounts.session_of("selatan")
        assert session is not None
        now = datetime.now(UTC)
        short = issue_token(
            session.principal, world.ctx.signing_key, now, timedelta(seconds=2), session.version
        )
        lines = _stream_until_closed(
            f"{base}/stream/incidents", {"Authorization": f"Bearer {short}"}, threading.Event()
        )
        assert ": session ended" in lines
        assert time.time() - now.timestamp() < 2 + CHECK_S + 3
