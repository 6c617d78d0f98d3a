"""The one mapping from the store's rows to the kernel's domain types.

The store, the API and the demo read rows with their own queries; all of them turn a row
into an `Incident` (or event, outbox message) here, so the mapping exists once.
"""

from __future__ import annotations

from pantau.incidents import DedupKey, Evidence

from .models import IncidentEventRow, IncidentRow, OutboxRow
from .types import Incident, IncidentEvent, OutboxMessage


def incident_from_row(row: IncidentRow) -> Incident:
    return Incident(
        id=row.id,
        key=DedupKey(row.rule_id, row.zone_id, row.hazard),
        zone_level=row.zone_level,
        agency=row.agency,
        condition_state=row.condition_state,
        condition_at=row.condition_at,
        workflow_state=row.workflow_state,
        severity_current=row.severity_current,
        severity_max=row.severity_max,
        evidence=Evidence(
            device_ids=tuple(filter(None, row.evidence_device_ids.split(","))),
            metric=row.evidence_metric,
            peak_value=row.evidence_peak_value,
            first_at=row.evidence_first_at,
            last_at=row.evidence_last_at,
        ),
        opened_at=row.opened_at,
        sla_ack_due=row.sla_ack_due,
        sla_resolve_due=row.sla_resolve_due,
        acknowledged_at=row.acknowledged_at,
        resolved_at=row.resolved_at,
        closed_at=row.closed_at,
        reopen_count=row.reopen_count,
        assignee_crew_id=row.assignee_crew_id,
        routed_crew_id=row.routed_crew_id,
        escalation_level=row.escalation_level,
    )


def outbox_from_row(row: OutboxRow) -> OutboxMessage:
    return OutboxMessage(
        id=row.id,
        incident_id=row.incident_id,
        kind=row.kind,
        topic=row.topic,
        payload=row.payload.encode("utf-8"),
        agency=row.agency,
        crew_id=row.crew_id,
        created_at=row.created_at,
        published_at=row.published_at,
        notify_state=row.notify_state,
        notify_attempts=row.notify_attempts,
        notify_error=row.notify_error,
    )


def event_from_row(row: IncidentEventRow) -> IncidentEvent:
    return IncidentEvent(
        incident_id=row.incident_id,
        seq=row.seq,
        at=row.at,
        recorded_at=row.recorded_at,
        kind=row.kind,
        from_state=row.from_state,
        to_state=row.to_state,
        actor=row.actor,
        reason=row.reason,
    )
