"""/stream/incidents: server-sent events of incident timeline events the caller may see.

Events are read from the timeline table (the rules service and this API both write
there), so the stream shows changes from any process, in commit order of their ids.
A reconnecting client sends Last-Event-ID and misses nothing.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from sqlalchemy import func, select

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
RECHECK_S = 5.0  # the caller's token and session are checked again this often


def _latest_id(ctx: ApiContext) -> int:
    with ctx.readers() as session:
        return int(session.scalar(select(func.max(IncidentEventRow.id))) or 0)


def read_events(
    ctx: ApiContext, who: Principal, after: int, incident_id: int | None
) -> list[tuple[int, dict[str, Any]]]:
    query = (
        select(IncidentEventRow, IncidentRow)
        .join(IncidentRow, IncidentRow.id == IncidentEventRow.incident_id)
        .where(IncidentEventRow.id > after, *scope_filter(who, ctx.geo))
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
            batch = await run_in_threadpool(read_events, ctx, who, cursor, incident_id)
            for event_id, data in batch:
                cursor = event_id
                yield f"id: {event_id}\nevent: incident\ndata: {json.dumps(data)}\n\n"
            if len(batch) == BATCH:
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
