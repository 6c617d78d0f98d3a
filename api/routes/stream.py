"""/stream/incidents: server-sent events of incident timeline events the caller may see.

Events are read from the timeline table (the rules service and every API replica
write there), so the stream shows changes from any process. A reconnecting client
sends Last-Event-ID and misses nothing.

With several writers at once (API and rules replicas on PostgreSQL) ids are taken in
one order and committed in another: id 41 may become visible after 42 has been sent.
So each poll also lists the new ids regardless of scope, remembers the ones skipped
below the newest, and looks for them again for `GAP_WAIT_S`; one that shows up by then
is sent late (out of id order), one that never does was a rolled-back transaction.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from sqlalchemy import func, or_, select

from api.context import ApiContext
from api.deps import MAX_ID, Ctx, CurrentPrincipal, OptionalId, api_key, authenticated, oauth2
from api.incident_queries import public, scope_filter
from api.principal import Principal
from api.schemas import Message
from pantau.store import incident_from_row
from pantau.store.models import IncidentEventRow, IncidentRow

from .incidents import deny_missing, in_scope

router = APIRouter(prefix="/stream", tags=["live"])
BATCH = 500
KEEPALIVE_S = 15.0
GAP_WAIT_S = 10.0  # longest a skipped id is waited for (a transaction still open)
MAX_GAPS = 1000
RECHECK_S = 5.0  # the caller's token and session are checked again this often


def _latest_id(ctx: ApiContext) -> int:
    with ctx.readers() as session:
        return int(session.scalar(select(func.max(IncidentEventRow.id))) or 0)


class Gaps:
    """Ids skipped below the cursor, each with when it was first missed."""

    def __init__(self) -> None:
        self.missing: dict[int, float] = {}

    def note(self, after: int, seen: list[int], now: float) -> None:
        """`seen`: the ids after `after` in order, every scope (a gap is a gap for all)."""
        if not seen:
            return
        present = set(seen)
        for i in range(after + 1, seen[-1]):
            if i not in present and len(self.missing) < MAX_GAPS:
                self.missing.setdefault(i, now)

    def pending(self, now: float) -> list[int]:
        for i in [i for i, t in self.missing.items() if now - t > GAP_WAIT_S]:
            del self.missing[i]
        return sorted(self.missing)


def new_ids(ctx: ApiContext, after: int) -> list[int]:
    with ctx.readers() as session:
        rows = session.scalars(
            select(IncidentEventRow.id)
            .where(IncidentEventRow.id > after)
            .order_by(IncidentEventRow.id)
            .limit(BATCH)
        )
        return list(rows)


def read_events(
    ctx: ApiContext,
    who: Principal,
    after: int,
    incident_id: int | None,
    also: list[int] | None = None,
) -> list[tuple[int, dict[str, Any]]]:
    """Events after `after` (and those of the ids `also`) the caller may see, by id."""
    wanted = IncidentEventRow.id > after
    if also:
        wanted = or_(wanted, IncidentEventRow.id.in_(also))
    query = (
        select(IncidentEventRow, IncidentRow)
        .join(IncidentRow, IncidentRow.id == IncidentEventRow.incident_id)
        .where(wanted, *scope_filter(who, ctx.geo))
        .order_by(IncidentEventRow.id)
        .limit(BATCH)
    )
    if incident_id is not None:
        query = query.where(IncidentRow.id == incident_id)
    out = []
    with ctx.readers() as session:
        for event, row in session.execute(query).all():
            incident = public(incident_from_row(row), ctx.geo).model_dump(mode="json")
            out.append(
                (
                    event.id,
                    {
                        "event_id": event.id,
                        "incident_id": event.incident_id,
                        "seq": event.seq,
                        "at": event.at.isoformat(),
                        "kind": event.kind.value,
                        "from_state": event.from_state,
                        "to_state": event.to_state,
                        "actor": event.actor,
                        "reason": event.reason,
                        "incident": incident,
                    },
                )
            )
    return out


@router.get(
    "/incidents",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "event: incident, data: JSON"},
        401: {"model": Message},
        404: {"model": Message},
    },
)
async def incidents(
    request: Request,
    ctx: Ctx,
    who: CurrentPrincipal,
    *,
    incident_id: OptionalId = None,
    since: Annotated[int | None, Query(ge=0, le=MAX_ID, description="replay after this id")] = None,
    last_event_id: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    if incident_id is not None and not await run_in_threadpool(in_scope, ctx, who, incident_id):
        await run_in_threadpool(deny_missing, ctx, who, incident_id, "read:stream")
    if last_event_id is not None and last_event_id.isdigit():
        cursor = int(last_event_id)
    elif since is not None:
        cursor = since
    else:
        cursor = await run_in_threadpool(_latest_id, ctx)
    poll = ctx.settings.api.stream_poll_s
    token, key = await oauth2(request), await api_key(request)

    async def events() -> AsyncIterator[str]:
        nonlocal cursor
        gaps = Gaps()
        yield f"retry: 2000\n: connected at event {cursor}\n\n"
        idle = recheck = 0.0
        while not await request.is_disconnected():
            if recheck >= min(RECHECK_S, ctx.settings.api.session_check_s):
                # An expired token or a session no longer the user's ends the stream;
                # the client's reconnect then gets 401.
                recheck = 0.0
                if await authenticated(ctx, token, key) != who:
                    yield ": session ended\n\n"
                    return
            now = time.monotonic()
            seen = await run_in_threadpool(new_ids, ctx, cursor)
            late = gaps.pending(now)
            gaps.note(cursor, seen, now)
            batch = await run_in_threadpool(read_events, ctx, who, cursor, incident_id, late)
            top = seen[-1] if seen else cursor
            for event_id, data in batch:
                gaps.missing.pop(event_id, None)
                if event_id > top:
                    break  # committed after the id list was read: the next poll has it
                cursor = max(cursor, event_id)
                yield f"id: {event_id}\nevent: incident\ndata: {json.dumps(data)}\n\n"
            cursor = max(cursor, top)
            if len(seen) == BATCH:
                continue
            await asyncio.sleep(poll)
            idle += poll
            recheck += poll
            if idle >= KEEPALIVE_S:
                idle = 0.0
                yield ": keepalive\n\n"

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
