"""What the operations page does besides the workflow moves: a note on the timeline, a
crew assigned or reassigned without moving the workflow, an escalation by hand. Each
is checked against the caller's role and scope and audited, like the moves."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status

from api.audit import Outcome
from api.context import ApiContext
from api.deps import Ctx, CurrentPrincipal, IncidentId, unprocessable
from api.principal import Principal, Role
from api.routes.incidents import WRITE, get, visible_detail
from api.schemas import AssignBody, IncidentDetailOut, NoteBody, NoteIn
from pantau.escalation import LEVEL_STATE, OPS, escalation_dispatch, escalation_target
from pantau.incidents import WorkflowState
from pantau.store import INACTIVE_WORKFLOW, Dispatch, EventKind, Incident

router = APIRouter(prefix="/incidents", tags=["incidents"])

STAFF = frozenset({Role.OPERATOR, Role.SUPERVISOR})
ACTIVE = frozenset(set(WorkflowState) - set(INACTIVE_WORKFLOW))


def _deny(ctx: ApiContext, who: Principal, action: str, why: str, incident_id: int) -> None:
    ctx.audit.record(who, action, Outcome.DENIED, why, incident_id)
    raise HTTPException(status.HTTP_403_FORBIDDEN, why)


def _conflict(ctx: ApiContext, who: Principal, action: str, incident: Incident, why: str) -> None:
    ctx.audit.record(who, action, Outcome.DENIED, f"409: {why}", incident.id)
    state = incident.workflow_state.value
    raise HTTPException(
        status.HTTP_409_CONFLICT, {"reason": why, "from_state": state, "to_state": state}
    )


@router.post(
    "/{incident_id}/notes",
    response_model=IncidentDetailOut,
    responses=WRITE,
    summary="Add a note to the incident's timeline",
)
def add_note(
    ctx: Ctx, who: CurrentPrincipal, incident_id: IncidentId, body: NoteIn
) -> IncidentDetailOut:
    """Anyone who may act on the incident (operator, supervisor, its crew) may add a
    note; the workflow does not move. The timeline shows it as kind `note`."""
    action = "note"
    visible_detail(ctx, who, incident_id, action)
    if not who.can_write:
        _deny(ctx, who, action, f"role {who.role} may not", incident_id)
    note = body.note.strip()
    if not note:
        raise unprocessable(("body", "note"), "the note is empty")
    ctx.store.annotate(incident_id, EventKind.NOTE, ctx.clock.now(), who.actor, note)
    ctx.audit.record(who, action, Outcome.ALLOWED, note, incident_id)
    return get(ctx, who, incident_id)


@router.post(
    "/{incident_id}/assign",
    response_model=IncidentDetailOut,
    responses=WRITE,
    summary="Assign or reassign a crew (the workflow does not move)",
)
def assign(
    ctx: Ctx, who: CurrentPrincipal, incident_id: IncidentId, body: AssignBody
) -> IncidentDetailOut:
    """An operator or supervisor puts a crew of the incident's agency on it, or another
    crew in place of the one on it, in any active state (`dispatch` also sends it).
    The timeline shows kind `assignment`, from the previous crew to the new one."""
    action = "assign"
    detail = visible_detail(ctx, who, incident_id, action)
    if who.role not in STAFF:
        _deny(ctx, who, action, f"a {who.role} may not assign crews", incident_id)
    crew = next((c for c in ctx.roster.crews if c.id == body.crew_id), None)
    if crew is None:
        raise unprocessable(("body", "crew_id"), f"unknown crew {body.crew_id!r}")
    incident = detail.incident
    if crew.agency != incident.agency:
        raise unprocessable(
            ("body", "crew_id"), f"crew {crew.id} is not of agency {incident.agency}"
        )
    if incident.workflow_state not in ACTIVE:
        _conflict(ctx, who, action, incident, "only an active incident takes a crew")
    if incident.assignee_crew_id == crew.id:
        _conflict(ctx, who, action, incident, f"{crew.id} is already assigned")
    before = incident.assignee_crew_id or "-"
    reason = body.note.strip() or (
        f"assigned {crew.id}" if before == "-" else f"reassigned {before} -> {crew.id}"
    )
    ctx.store.annotate(
        incident_id, EventKind.ASSIGNMENT, ctx.clock.now(), who.actor, reason, assign=crew.id
    )
    ctx.audit.record(who, action, Outcome.ALLOWED, f"{before} -> {crew.id}: {reason}", incident_id)
    return get(ctx, who, incident_id)


@router.post(
    "/{incident_id}/escalate",
    response_model=IncidentDetailOut,
    responses=WRITE,
    summary="Escalate to the agency's supervisor, then to the operations centre",
)
def escalate(
    ctx: Ctx, who: CurrentPrincipal, incident_id: IncidentId, body: NoteBody | None = None
) -> IncidentDetailOut:
    """Raises the escalation level by one, as the rules service does when nobody
    acknowledges in time, but in any active state: level 1 alerts the agency's
    supervisor, level 2 the operations centre (alert topics as in docs/api.md). The
    timeline shows an `sla` event by the caller."""
    action = "escalate"
    incident = visible_detail(ctx, who, incident_id, action).incident
    if who.role not in STAFF:
        _deny(ctx, who, action, f"a {who.role} may not escalate", incident_id)
    level = incident.escalation_level + 1
    if level > OPS:
        _conflict(ctx, who, action, incident, "already escalated to the operations centre")
    note = (body.note if body else "").strip() or "escalated by hand"
    supervisor = ctx.roster.supervisors.get(incident.agency or "")
    to, topic = escalation_target(ctx.settings.mqtt.root, level, supervisor)
    now = ctx.clock.now()

    def compose(current: Incident) -> Dispatch:
        return escalation_dispatch(
            current, level=level, to=to, topic=topic, reason=note, at=now, by=who.actor
        )

    update = ctx.store.escalate(
        incident_id,
        level,
        at=now,
        to_state=LEVEL_STATE[level],
        reason=note,
        compose=compose,
        actor=who.actor,
        while_in=ACTIVE,
    )
    if update is None:
        _conflict(ctx, who, action, incident, "no longer active, or escalated meanwhile")
    ctx.audit.record(who, action, Outcome.ALLOWED, f"level {level} to {to}: {note}", incident_id)
    return get(ctx, who, incident_id)
