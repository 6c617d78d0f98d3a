"""Cached incident lists: a repeat answer is the same bytes until an incident event is
committed (by the API or by another writer, in any order), never crosses scopes, and
still needs a valid, unexpired token."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert

from api.principal import Principal, Role
from api.security import TokenError, TokenReader, issue_token
from pantau.store.models import IncidentEventRow
from pantau.store.types import EventKind
from tests.api.conftest import World, flood, make_world

QUERY = "/incidents?limit=50&active=true"


def _ids(body: dict[str, list[dict[str, object]]]) -> list[object]:
    return [i["id"] for i in body["data"]]


def test_a_repeat_list_holds_until_an_event_is_written(any_world: World) -> None:
    w = any_world
    ops = w.headers("ops")
    first = w.client.get(QUERY, headers=ops)
    assert first.status_code == 200
    # The second answer is served from the cache: the same bytes, the same headers.
    again = w.client.get(QUERY, headers=ops)
    assert again.content == first.content
    assert again.headers["content-type"] == "application/json"
    assert len(w.ctx.listing_cache._entries) >= 1

    # A transition through the API shows at once.
    assert w.client.post(f"/incidents/{w.karawaci.id}/acknowledge", headers=ops).status_code == 200
    after = w.client.get(QUERY, headers=ops).json()
    states = {i["id"]: i["workflow_state"] for i in after["data"]}
    assert states[w.karawaci.id] == "acknowledged"

    # So does an incident another writer (the rules service) opens behind the API's back.
    opened = w.ctx.store.apply(flood("kel-sukasari", datetime.now(UTC)))
    assert opened.incident is not None
    assert opened.incident.id in _ids(w.client.get(QUERY, headers=ops).json())


def test_cached_lists_do_not_cross_scopes_or_outlive_tokens(world: World) -> None:
    w = world
    ops, barat, selatan = w.headers("ops"), w.headers("barat"), w.headers("selatan")
    everything = _ids(w.client.get(QUERY, headers=ops).json())
    assert {w.karawaci.id, w.ciledug.id, w.road.id} <= set(everything)
    # Same query, other scope: each crew gets its own list, also on the second asking.
    for _ in range(2):
        assert _ids(w.client.get(QUERY, headers=barat).json()) == [w.karawaci.id]
        assert _ids(w.client.get(QUERY, headers=selatan).json()) == [w.ciledug.id]
    # A cached list is no answer to a bad or expired token, or to none.
    now = datetime.now(UTC)
    ops_principal = Principal(subject="ops", role=Role.OPERATOR)
    expired = issue_token(
        ops_principal, w.ctx.signing_key, now - timedelta(hours=2), timedelta(hours=1)
    )
    for headers in (
        {"Authorization": f"Bearer {expired}"},
        {"Authorization": "Bearer not-a-token"},
        {"Authorization": "Basic b3BzOnB3"},
        {},
    ):
        assert w.client.get(QUERY, headers=headers).status_code == 401


def test_a_remembered_token_still_expires() -> None:
    key = "k" * 8 + "0123456789abcdefghijklmnopqrstuv"
    reader = TokenReader(key)
    who = Principal(subject="ops", role=Role.OPERATOR)
    now = datetime.now(UTC)
    # `exp` is in whole seconds: this token expires within 1-2 s from now.
    expires = int(now.timestamp()) + 2
    token = issue_token(who, key, now, datetime.fromtimestamp(expires, UTC) - now)
    assert reader.read(token).principal == who
    assert reader.read(token).principal == who  # remembered
    time.sleep(max(0.0, expires - time.time()) + 0.05)
    with pytest.raises(TokenError):
        reader.read(token)


@pytest.fixture
def pg_world(postgres_url: str) -> Iterator[World]:
    yield from make_world(postgres_url)


def test_the_version_sees_events_committed_out_of_order(pg_world: World) -> None:
    """PostgreSQL hands out ids before commit: the transaction holding the smaller id may
    commit last. The version must change at each commit anyway."""
    w = pg_world

    def event(seq: int) -> dict[str, object]:
        now = datetime.now(UTC)
        return {
            "incident_id": w.karawaci.id,
            "seq": seq,
            "at": now,
            "recorded_at": now,
            "kind": EventKind.WORKFLOW,
            "from_state": None,
            "to_state": "open",
            "actor": "test",
            "reason": "out of order",
        }

    events = w.ctx.events
    with w.ctx.engine.connect() as early, w.ctx.engine.connect() as late:
        early.execute(insert(IncidentEventRow), event(1001))  # takes the smaller id
        late.execute(insert(IncidentEventRow), event(1002))
        before = events.current()
        late.commit()
        middle = events.current()
        assert middle != before
        early.commit()  # max(id) does not move; the version must
        after = events.current()
        assert after != middle
        assert after[0] == middle[0]
