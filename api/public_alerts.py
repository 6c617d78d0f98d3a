"""Which active incidents the public feeds carry, and since when.

An incident the rules opened (sensor or camera data) is public at once. One opened only
by citizen reports is *unverified*: staff see it, the public does not, until a person
verifies it (an operator, supervisor or crew acknowledges it: they checked) or a rule
corroborates it (an active incident of the same hazard that the rules opened in its
kelurahan or kecamatan). A rejected report (resolved as false alarm) is inactive and
never public; reopened, it waits for a verification again.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pantau.incidents import WorkflowState
from pantau.store import RULES_ACTOR, EventKind, Incident, IncidentEvent

from . import cap
from .context import ApiContext
from .incident_queries import CITIZEN_RULE

# Workflow states reached only through a person's acknowledgement.
VERIFIED_STATES = frozenset(
    {WorkflowState.ACKNOWLEDGED, WorkflowState.DISPATCHED, WorkflowState.ON_SITE}
)
ROLE_WORDS = {"operator": "operator Pusat Komando", "supervisor": "supervisor", "crew": "petugas"}


def _verifier(ctx: ApiContext, incident: Incident, event: IncidentEvent) -> str:
    """Who verified, as the public may read it: a role and agency, never a name."""
    role = event.actor.partition(":")[0]
    agency = ctx.city.agencies.get(incident.agency or "")
    words = ROLE_WORDS.get(role, role)
    return words if role == "operator" or agency is None else f"{words} {agency.short}"


def _person_verification(
    ctx: ApiContext, incident: Incident, timeline: tuple[IncidentEvent, ...]
) -> tuple[datetime, str] | None:
    if incident.workflow_state not in VERIFIED_STATES:
        return None
    ack = next(
        (
            e
            for e in reversed(timeline)
            if e.kind is EventKind.WORKFLOW
            and e.to_state == WorkflowState.ACKNOWLEDGED.value
            and e.actor != RULES_ACTOR
        ),
        None,
    )
    return None if ack is None else (ack.recorded_at, _verifier(ctx, incident, ack))


def public_alerts(ctx: ApiContext, now: datetime) -> list[cap.PublicAlert]:
    """The public active incidents, most severe first, each with its CAP messages."""
    active = [i for i in ctx.store.active() if cap.is_public(i)]
    by_rules = {(i.key.hazard, i.key.zone_id): i for i in active if i.key.rule_id != CITIZEN_RULE}
    out = []
    for incident in active:
        detail = ctx.store.get(incident.id)
        if detail is None:  # resolved and pruned since the listing: not public
            continue
        timeline = detail.timeline
        since = cap.cycle_started_at(timeline)
        verified_by: str | None = None
        if incident.key.rule_id == CITIZEN_RULE:
            candidates = []
            person = _person_verification(ctx, incident, timeline)
            if person is not None:
                candidates.append(person)
            kecamatan = ctx.geo.kecamatan_of(incident.key.zone_id)
            for zone in (incident.key.zone_id, kecamatan):
                rule = by_rules.get((incident.key.hazard, zone or ""))
                rule_detail = ctx.store.get(rule.id) if rule is not None else None
                if rule is not None and rule_detail is not None:
                    at = max(since, cap.cycle_started_at(rule_detail.timeline))
                    candidates.append((at, f"data pemantauan Pantau (aturan {rule.key.rule_id})"))
            if not candidates:
                continue  # unverified: staff only
            since, verified_by = min(candidates)
        expires = timedelta(hours=ctx.cap.hazards[incident.key.hazard].expires_hours)
        issued = cap.issues(incident, timeline, since, now, expires, city=ctx.city.facts)
        out.append(cap.PublicAlert(incident, issued, verified_by))
    return out
