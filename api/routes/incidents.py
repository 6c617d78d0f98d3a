"""/incidents: list, detail, and the workflow transitions (each audited)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, NoReturn

from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import func, select

from api.audit import Outcome
from api.context import ApiContext
from api.deps import MAX_ID, Ctx, CurrentPrincipal, IncidentId, unprocessable
from api.evidence import FRAME_NAME, evidence_of, frame_file
from api.incident_context import incident_context
from api.incident_queries import (
    CITIZEN_RULE,
    IncidentFilter,
    awaiting_verification,
    list_incidents,
    public,
    scope_filter,
)
from api.listing_cache import listing_key, repeated_single
from api.principal import Principal, Role
from api.schemas import (
    Conflict,
    DispatchBody,
    IncidentDetailOut,
    IncidentList,
    Message,
    NoteBody,
    ReopenBody,
    Resolution,
    ResolutionCode,
    ResolveBody,
    SeverityName,
    TimelineEvent,
)
from pantau.incidents import ConditionState, Hazard, Severity, WorkflowState
from pantau.store import Incident, IncidentDetail, InvalidTransition
from pantau.store.api_tables import CitizenReportRow
from pantau.store.models import IncidentRow
from pantau.topics import DEVICE_ID_PATTERN

router = APIRouter(prefix="/incidents", tags=["incidents"])

Responses = dict[int | str, dict[str, Any]]
NOT_FOUND: Responses = {
    404: {"model": Message, "description": "no such incident in the caller's scope"}
}
AUTH: Responses = {401: {"model": Message, "description": "missing or invalid credentials"}}
WRITE: Responses = {
    **AUTH,
    **NOT_FOUND,
    403: {"model": Message, "description": "the caller's role may not do this"},
    409: {"model": Conflict, "description": "the workflow does not allow this move now"},
}
# Roles that may skip workflow steps (resolve straight from open), and those that may
# reject an open incident as a false alarm without acknowledging it first.
SKIP_STEPS = frozenset({Role.SUPERVISOR})
SKIP_TO_REJECT = frozenset({Role.OPERATOR, Role.SUPERVISOR})
# What a crew may do itself; the rest is for operators and supervisors.
# A crew may dispatch only itself (on its way), see `dispatch`.
CREW_MOVES = frozenset(
    {
        WorkflowState.ACKNOWLEDGED,
        WorkflowState.DISPATCHED,
        WorkflowState.ON_SITE,
        WorkflowState.RESOLVED,
    }
)


def _page(
    ctx: ApiContext, who: Principal, filters: IncidentFilter, limit: int, offset: int
) -> bytes:
    with ctx.readers() as session:
        rows, total = list_incidents(session, who, ctx.geo, filters, limit=limit, offset=offset)
    page = IncidentList(
        data=[public(i, ctx.geo) for i in rows], count=total, limit=limit, offset=offset
    )
    return page.model_dump_json().encode()


Many = Annotated[list[str] | None, Query()]


@router.get("", response_model=IncidentList, responses=AUTH, summary="List incidents")
async def list_(
    request: Request,
    ctx: Ctx,
    who: CurrentPrincipal,
    *,
    kelurahan: Annotated[list[str] | None, Query(description="any of these kelurahan")] = None,
    kecamatan: Annotated[list[str] | None, Query(description="any of these kecamatan")] = None,
    zone: Annotated[list[str] | None, Query(description="any of these zone ids, exact")] = None,
    agency: Many = None,
    hazard: Annotated[list[Hazard] | None, Query()] = None,
    severity: Annotated[list[SeverityName] | None, Query()] = None,
    workflow_state: Annotated[list[WorkflowState] | None, Query()] = None,
    condition_state: Annotated[list[ConditionState] | None, Query()] = None,
    active: bool | None = None,
    crew: Annotated[
        list[str] | None, Query(description="routed to or assigned to any of these crews")
    ] = None,
    opened_from: Annotated[datetime | None, Query(description="inclusive, ISO 8601")] = None,
    opened_to: Annotated[datetime | None, Query(description="exclusive, ISO 8601")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
) -> Response:
    """Filters may be repeated and mean "any of"; the other parameters may be given once."""
    for t in (opened_from, opened_to):
        if t is not None and t.tzinfo is None:
            raise unprocessable(("query", "opened_from"), "times need a UTC offset")
    twice = repeated_single(request.scope["query_string"])
    if twice is not None:
        raise unprocessable(("query", twice), f"{twice} may be given once")
    filters = IncidentFilter(
        kelurahan=tuple(kelurahan or ()),
        kecamatan=tuple(kecamatan or ()),
        zone=tuple(zone or ()),
        agency=tuple(agency or ()),
        hazard=tuple(hazard or ()),
        severity=tuple(Severity[s.upper()] for s in severity or ()),
        workflow_state=tuple(workflow_state or ()),
        condition_state=tuple(condition_state or ()),
        active=active,
        opened_from=opened_from,
        opened_to=opened_to,
        crew=tuple(crew or ()),
    )
    # Same scope + same normalized query + no new event since = the same answer
    # (repeats are usually served before routing, by api.fastpath.CachedListings). The
    # page itself is built in the thread pool.
    key = listing_key(who, request.scope["query_string"])
    version = ctx.version()
    body = None if key is None else ctx.listing_cache.get(key, version)
    if body is None:
        body = await run_in_threadpool(_page, ctx, who, filters, limit, offset)
        if key is not None:
            ctx.listing_cache.put(key, version, body)
    return Response(body, media_type="application/json")


def visible_detail(
    ctx: ApiContext, who: Principal, incident_id: int, action: str
) -> IncidentDetail:
    """The incident if the caller may see it; else 404, and the denial is audited.

    An incident outside the caller's scope and an id that names nothing take the same
    path to their 404 (the scoped lookup finds nothing, the existence check and the
    audit entry follow), so the answer's timing does not tell them apart."""
    detail = None
    if in_scope(ctx, who, incident_id):
        detail = ctx.store.get(incident_id)
    if detail is None:
        deny_missing(ctx, who, incident_id, action)
    assert detail is not None
    return detail


def in_scope(ctx: ApiContext, who: Principal, incident_id: int) -> bool:
    with ctx.readers() as session:
        found = session.scalar(
            select(IncidentRow.id).where(IncidentRow.id == incident_id, *scope_filter(who, ctx.geo))
        )
    return found is not None


def deny_missing(ctx: ApiContext, who: Principal, incident_id: int, action: str) -> NoReturn:
    """404 for an incident the caller may not see, whether it exists or not; audited."""
    with ctx.readers() as session:
        exists = session.scalar(select(IncidentRow.id).where(IncidentRow.id == incident_id))
    why = "outside the caller's scope" if exists is not None else "no such incident"
    ctx.audit.record(who, action, Outcome.DENIED, why, incident_id)
    raise HTTPException(status.HTTP_404_NOT_FOUND, f"incident {incident_id} not found")


def detail_out(ctx: ApiContext, detail: IncidentDetail) -> IncidentDetailOut:
    incident = detail.incident
    with ctx.readers() as session:
        reports = session.scalar(
            select(func.count())
            .select_from(CitizenReportRow)
            .where(CitizenReportRow.incident_id == incident.id)
        )
    resolution = None
    if incident.resolved_at is not None:
        last = next(
            (e for e in reversed(detail.timeline) if e.to_state == WorkflowState.RESOLVED.value),
            None,
        )
        if last is not None:
            code, _, note = last.reason.partition(": ")
            resolution = Resolution(code=code, note=note)
    evidence = evidence_of(ctx, incident)
    return IncidentDetailOut(
        incident=public(incident, ctx.geo),
        timeline=[
            TimelineEvent(
                seq=e.seq,
                at=e.at,
                recorded_at=e.recorded_at,
                kind=e.kind.value,
                from_state=e.from_state,
                to_state=e.to_state,
                actor=e.actor,
                reason=e.reason,
            )
            for e in detail.timeline
        ],
        evidence=evidence,
        citizen_reports=int(reports or 0),
        resolution=resolution,
        context=incident_context(ctx, incident, evidence),
    )


@router.get(
    "/{incident_id}",
    response_model=IncidentDetailOut,
    responses={**AUTH, **NOT_FOUND},
    summary="An incident with its timeline and evidence",
)
def get(ctx: Ctx, who: CurrentPrincipal, incident_id: IncidentId) -> IncidentDetailOut:
    return detail_out(ctx, visible_detail(ctx, who, incident_id, "read"))


@router.get(
    "/{incident_id}/frames/{camera_id}/{name}",
    response_class=Response,
    responses={
        200: {"content": {"image/jpeg": {}}, "description": "the JPEG"},
        **AUTH,
        404: {"model": Message, "description": "no such frame of an incident in scope"},
    },
    summary="A camera frame linked as the incident's evidence (staff only)",
)
def camera_frame(
    ctx: Ctx,
    who: CurrentPrincipal,
    incident_id: IncidentId,
    camera_id: Annotated[str, PathParam(pattern=DEVICE_ID_PATTERN)],
    name: Annotated[str, PathParam(pattern=FRAME_NAME.pattern)],
) -> Response:
    """Callers who may see the incident may see the frames its evidence links (and no
    other frame); each viewing is audited, since a picture may show people. Never
    cached by browsers or proxies."""
    detail = visible_detail(ctx, who, incident_id, "read:camera-frame")
    path = frame_file(ctx, detail.incident, camera_id, name)
    if path is None:
        raise HTTPException(404, f"incident {incident_id} links no frame {camera_id}/{name}")
    ctx.audit.record(who, "read:camera-frame", Outcome.ALLOWED, f"{camera_id}/{name}", incident_id)
    return Response(
        path.read_bytes(),
        media_type="image/jpeg",
        headers={"Cache-Control": "private, no-store", "X-Content-Type-Options": "nosniff"},
    )


def transition(
    ctx: ApiContext,
    who: Principal,
    incident_id: IncidentId,
    to: WorkflowState,
    reason: str,
    *,
    crew_id: str | None = None,
) -> IncidentDetailOut:
    action = f"transition:{to.value}"
    detail = visible_detail(ctx, who, incident_id, action)
    if not who.can_write or (who.role is Role.CREW and to not in CREW_MOVES):
        ctx.audit.record(who, action, Outcome.DENIED, f"role {who.role} may not", incident_id)
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"a {who.role} may not move to {to}")
    if crew_id is None and who.crew_id is not None and detail.incident.assignee_crew_id is None:
        crew_id = who.crew_id  # a crew acting on an incident takes it
    try:
        ctx.store.transition(incident_id, to, who.actor, reason, crew_id=crew_id)
    except InvalidTransition as err:
        ctx.audit.record(who, action, Outcome.DENIED, f"409: {err.why}", incident_id)
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            {"reason": err.why, "from_state": err.from_state.value, "to_state": to.value},
        ) from err
    ctx.audit.record(
        who,
        action,
        Outcome.ALLOWED,
        f"{detail.incident.workflow_state} -> {to}: {reason}",
        incident_id,
    )
    return get(ctx, who, incident_id)


def _reason(note: str, default: str) -> str:
    return note.strip() or default


@router.post("/{incident_id}/acknowledge", response_model=IncidentDetailOut, responses=WRITE)
def acknowledge(
    ctx: Ctx, who: CurrentPrincipal, incident_id: IncidentId, body: NoteBody | None = None
) -> IncidentDetailOut:
    detail = visible_detail(ctx, who, incident_id, "transition:acknowledged")
    # Acknowledging a citizen report is verifying it: it may now go on the public feeds.
    verifies = awaiting_verification(detail.incident)
    note = _reason(body.note if body else "", "verified" if verifies else "acknowledged")
    return transition(ctx, who, incident_id, WorkflowState.ACKNOWLEDGED, note)


@router.post("/{incident_id}/dispatch", response_model=IncidentDetailOut, responses=WRITE)
def dispatch(
    ctx: Ctx, who: CurrentPrincipal, incident_id: IncidentId, body: DispatchBody
) -> IncidentDetailOut:
    """Assign a crew of the incident's agency and send it; a crew may dispatch itself."""
    crew = next((c for c in ctx.roster.crews if c.id == body.crew_id), None)
    if crew is None:
        raise unprocessable(("body", "crew_id"), f"unknown crew {body.crew_id!r}")
    detail = visible_detail(ctx, who, incident_id, "transition:dispatched")
    if who.role is Role.CREW and crew.id != who.crew_id:
        ctx.audit.record(
            who,
            "transition:dispatched",
            Outcome.DENIED,
            f"a crew may not send {crew.id}",
            incident_id,
        )
        raise HTTPException(status.HTTP_403_FORBIDDEN, "a crew may dispatch only itself")
    if crew.agency != detail.incident.agency:
        raise unprocessable(
            ("body", "crew_id"), f"crew {crew.id} is not of agency {detail.incident.agency}"
        )
    note = _reason(body.note, f"dispatched {crew.id}")
    return transition(ctx, who, incident_id, WorkflowState.DISPATCHED, note, crew_id=crew.id)


@router.post("/{incident_id}/on-site", response_model=IncidentDetailOut, responses=WRITE)
def on_site(
    ctx: Ctx, who: CurrentPrincipal, incident_id: IncidentId, body: NoteBody | None = None
) -> IncidentDetailOut:
    note = _reason(body.note if body else "", "crew on site")
    return transition(ctx, who, incident_id, WorkflowState.ON_SITE, note)


@router.post("/{incident_id}/resolve", response_model=IncidentDetailOut, responses=WRITE)
def resolve(
    ctx: Ctx, who: CurrentPrincipal, incident_id: IncidentId, body: ResolveBody
) -> IncidentDetailOut:
    """Resolve with a resolution code and a note (kept on the timeline as `code: note`).

    From `open` (nobody acknowledged, nobody went) only a supervisor may, who may skip
    steps; an operator or supervisor may also reject an open report as a false alarm.
    While the data still says the condition is active, `condition_reason` must say why
    it is resolved anyway; the timeline keeps it."""
    action = "transition:resolved"
    incident = visible_detail(ctx, who, incident_id, action).incident
    rejecting = body.code is ResolutionCode.FALSE_ALARM and who.role in SKIP_TO_REJECT
    skips = who.role in SKIP_STEPS or rejecting
    if incident.workflow_state is WorkflowState.OPEN and not skips:
        _refuse(
            ctx,
            who,
            incident,
            action,
            f"a {who.role} resolves only an acknowledged incident: acknowledge it first",
        )
    condition_active = (
        incident.key.rule_id != CITIZEN_RULE and incident.condition_state is ConditionState.ACTIVE
    )
    why_anyway = body.condition_reason.strip()
    if condition_active and not why_anyway:
        _refuse(
            ctx,
            who,
            incident,
            action,
            "the condition is still active (the data has not cleared): "
            "give condition_reason, why it is resolved anyway",
        )
    reason = f"{body.code.value}: {body.note.strip() or body.code.value}"
    if condition_active:
        reason += f"; resolved while the condition is still active: {why_anyway}"
    return transition(ctx, who, incident_id, WorkflowState.RESOLVED, reason)


def _refuse(ctx: ApiContext, who: Principal, incident: Incident, action: str, why: str) -> None:
    ctx.audit.record(who, action, Outcome.DENIED, f"409: {why}", incident.id)
    raise HTTPException(
        status.HTTP_409_CONFLICT,
        {"reason": why, "from_state": incident.workflow_state.value, "to_state": "resolved"},
    )


@router.post("/{incident_id}/close", response_model=IncidentDetailOut, responses=WRITE)
def close(
    ctx: Ctx, who: CurrentPrincipal, incident_id: IncidentId, body: NoteBody | None = None
) -> IncidentDetailOut:
    note = _reason(body.note if body else "", "closed")
    return transition(ctx, who, incident_id, WorkflowState.CLOSED, note)


@router.post("/{incident_id}/reopen", response_model=IncidentDetailOut, responses=WRITE)
def reopen(
    ctx: Ctx, who: CurrentPrincipal, incident_id: IncidentId, body: ReopenBody
) -> IncidentDetailOut:
    return transition(ctx, who, incident_id, WorkflowState.OPEN, body.reason.strip() or "reopened")


@router.post("/{incident_id}/suppress", response_model=IncidentDetailOut, responses=WRITE)
def suppress(
    ctx: Ctx, who: CurrentPrincipal, incident_id: IncidentId, body: NoteBody | None = None
) -> IncidentDetailOut:
    note = _reason(body.note if body else "", "suppressed")
    return transition(ctx, who, incident_id, WorkflowState.SUPPRESSED, note)
