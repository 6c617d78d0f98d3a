"""Incident reads with the caller's scope applied in SQL, and their public shapes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, false, func, select
from sqlalchemy.orm import Session

from pantau.incidents import ConditionState, Hazard, Severity, WorkflowState
from pantau.store import INACTIVE_WORKFLOW, Incident, incident_from_row
from pantau.store.models import IncidentRow

from .geography import Geography
from .principal import Principal
from .schemas import IncidentPublic, Origin, SeverityName

CITIZEN_RULE = "citizen-report"


def origin_of(rule_id: str) -> Origin:
    return "citizen_report" if rule_id == CITIZEN_RULE else "rules"


def awaiting_verification(incident: Incident) -> bool:
    """Opened by citizen reports and nobody has acknowledged (verified) it yet: staff
    see it marked so, the public feeds do not carry it (api.public_alerts)."""
    return incident.key.rule_id == CITIZEN_RULE and incident.workflow_state in {
        WorkflowState.OPEN,
        WorkflowState.SUPPRESSED,
    }


def severity_name(severity: Severity) -> SeverityName:
    name: SeverityName = severity.name.lower()  # type: ignore[assignment]
    return name


def scope_filter(principal: Principal, geo: Geography) -> list[ColumnElement[bool]]:
    """SQL conditions that keep only what the principal may see."""
    conditions: list[ColumnElement[bool]] = []
    if principal.agency is not None:
        conditions.append(IncidentRow.agency == principal.agency)
    if principal.kecamatan is not None:
        zone_ids = geo.zone_ids_in(principal.kecamatan)
        conditions.append(IncidentRow.zone_id.in_(zone_ids) if zone_ids else false())
    return conditions


def visible(principal: Principal, geo: Geography, incident: Incident) -> bool:
    return principal.sees(incident.agency, geo.kecamatan_of(incident.key.zone_id))


@dataclass(frozen=True, slots=True, kw_only=True)
class IncidentFilter:
    """Each sequence means "any of"; empty: no condition."""

    kelurahan: Sequence[str] = ()
    kecamatan: Sequence[str] = ()
    zone: Sequence[str] = ()
    agency: Sequence[str] = ()
    hazard: Sequence[Hazard] = ()
    severity: Sequence[Severity] = ()
    workflow_state: Sequence[WorkflowState] = ()
    condition_state: Sequence[ConditionState] = ()
    active: bool | None = None
    opened_from: datetime | None = None
    opened_to: datetime | None = None
    crew: Sequence[str] = ()

    def conditions(self, geo: Geography) -> list[ColumnElement[bool]]:
        c: list[ColumnElement[bool]] = []
        if self.zone:
            c.append(IncidentRow.zone_id.in_(list(self.zone)))
        if self.kelurahan:
            c.append(IncidentRow.zone_id.in_(list(self.kelurahan)))
        if self.kecamatan:
            c.append(IncidentRow.zone_id.in_(geo.zone_ids_in(list(self.kecamatan)) or [""]))
        if self.agency:
            c.append(IncidentRow.agency.in_(list(self.agency)))
        if self.hazard:
            c.append(IncidentRow.hazard.in_(list(self.hazard)))
        if self.severity:
            c.append(IncidentRow.severity_current.in_(list(self.severity)))
        if self.workflow_state:
            c.append(IncidentRow.workflow_state.in_(list(self.workflow_state)))
        if self.condition_state:
            c.append(IncidentRow.condition_state.in_(list(self.condition_state)))
        if self.active is True:
            c.append(IncidentRow.workflow_state.not_in(INACTIVE_WORKFLOW))
        elif self.active is False:
            c.append(IncidentRow.workflow_state.in_(INACTIVE_WORKFLOW))
        if self.opened_from is not None:
            c.append(IncidentRow.opened_at >= self.opened_from)
        if self.opened_to is not None:
            c.append(IncidentRow.opened_at < self.opened_to)
        if self.crew:
            crews = list(self.crew)
            c.append(
                IncidentRow.assignee_crew_id.in_(crews) | IncidentRow.routed_crew_id.in_(crews)
            )
        return c


def list_incidents(
    session: Session,
    principal: Principal,
    geo: Geography,
    filters: IncidentFilter,
    *,
    limit: int,
    offset: int,
) -> tuple[list[Incident], int]:
    where = [*scope_filter(principal, geo), *filters.conditions(geo)]
    total = session.scalar(select(func.count()).select_from(IncidentRow).where(*where)) or 0
    # Plain rows, not ORM objects: a page is read-only, and the identity map and
    # attribute instrumentation cost more than the query. A row has the same attribute
    # names as an IncidentRow, which is all `incident_from_row` reads.
    rows = session.execute(
        select(IncidentRow.__table__)
        .where(*where)
        .order_by(IncidentRow.opened_at.desc(), IncidentRow.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return [incident_from_row(cast(IncidentRow, r)) for r in rows], int(total)


def public(incident: Incident, geo: Geography) -> IncidentPublic:
    return IncidentPublic(**public_fields(incident, geo))


def public_fields(incident: Incident, geo: Geography) -> dict[str, Any]:
    zone_id = incident.key.zone_id
    return {
        "id": incident.id,
        "rule_id": incident.key.rule_id,
        "origin": origin_of(incident.key.rule_id),
        "awaiting_verification": awaiting_verification(incident),
        "zone_id": zone_id,
        "zone_name": geo.name(zone_id),
        "zone_level": incident.zone_level,
        "kecamatan_id": geo.kecamatan_of(zone_id),
        "hazard": incident.key.hazard,
        "agency": incident.agency,
        "condition_state": incident.condition_state,
        "workflow_state": incident.workflow_state,
        "severity": severity_name(incident.severity_current),
        "severity_max": severity_name(incident.severity_max),
        "opened_at": incident.opened_at,
        "condition_at": incident.condition_at,
        "sla_ack_due": incident.sla_ack_due,
        "sla_resolve_due": incident.sla_resolve_due,
        "acknowledged_at": incident.acknowledged_at,
        "resolved_at": incident.resolved_at,
        "closed_at": incident.closed_at,
        "reopen_count": incident.reopen_count,
        "assignee_crew_id": incident.assignee_crew_id,
        "routed_crew_id": incident.routed_crew_id,
        "escalation_level": incident.escalation_level,
    }
