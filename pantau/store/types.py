"""What the incident store hands out: frozen records, update outcomes and its errors."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from pantau.incidents import (
    ConditionState,
    DedupKey,
    Evidence,
    Severity,
    WorkflowState,
)

# Zone levels an incident can sit at: pantau.zones.ZoneLevel plus the rule engine's extra
# zones (pantau.zoneindex.ExtraLevel). Both are StrEnums, so either passes as a str.
ZONE_LEVELS: tuple[str, ...] = ("kota", "kecamatan", "kelurahan", "catchment", "corridor")

# Workflow states in which an incident no longer counts as active for its dedup key: a
# new ACTIVE condition for the key opens a new incident. SUPPRESSED stays active on
# purpose: suppression silences a key, it must not spawn a fresh incident on the next
# reading. The partial unique index in the migration lists the same states.
INACTIVE_WORKFLOW: frozenset[WorkflowState] = frozenset(
    {WorkflowState.RESOLVED, WorkflowState.CLOSED}
)


class EventKind(StrEnum):
    CONDITION = "condition"  # what the data says (actor "rules")
    WORKFLOW = "workflow"  # what people did
    SEVERITY = "severity"
    SLA = "sla"  # due times set or tightened
    REPORT = "report"  # a citizen report attached to the incident (0005)
    NOTE = "note"  # an operator's or crew's note; the workflow does not move (0009)
    ASSIGNMENT = "assignment"  # crew assigned or reassigned: from/to are crew ids (0009)


class UpdateKind(StrEnum):
    OPENED = "opened"
    UPDATED = "updated"
    CLEARED = "cleared"
    IGNORED = "ignored"  # nothing changed: a duplicate, a stale change or no incident


class OutboxKind(StrEnum):
    EVENT = "event"  # {root}/incidents/{zone}
    ALERT = "alert"  # {root}/alerts/crews/{crew}: opened or severity rose
    ESCALATION = "escalation"  # to a supervisor or {root}/alerts/ops: ack SLA missed


class NotifyState(StrEnum):
    """Chat-webhook delivery of an alert row (events are not sent to webhooks: NULL)."""

    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"  # attempts used up or refused (4xx); the reason is on the row
    SKIPPED = "skipped"  # no webhook configured for the agency


RULES_ACTOR = "rules"


@dataclass(frozen=True, slots=True, kw_only=True)
class IncidentEvent:
    """One entry of an incident's timeline, which is also its audit log."""

    incident_id: int
    seq: int  # 1, 2, 3 ... per incident: the timeline order
    at: datetime  # event time for condition changes, the actor's time for workflow
    recorded_at: datetime  # when the store wrote it (the store's clock)
    kind: EventKind
    from_state: str | None
    to_state: str
    actor: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Incident:
    id: int
    key: DedupKey
    zone_level: str  # one of ZONE_LEVELS
    agency: str | None
    condition_state: ConditionState
    condition_at: datetime  # event time of the latest condition change applied
    workflow_state: WorkflowState
    severity_current: Severity
    severity_max: Severity
    evidence: Evidence
    opened_at: datetime  # event time of the ACTIVE that opened it
    sla_ack_due: datetime
    sla_resolve_due: datetime
    acknowledged_at: datetime | None
    resolved_at: datetime | None
    closed_at: datetime | None
    reopen_count: int
    assignee_crew_id: str | None
    routed_crew_id: str | None = None  # the crew the rules last alerted
    escalation_level: int = 0  # 1: supervisor alerted, 2: operations center alerted

    @property
    def is_active(self) -> bool:
        return self.workflow_state not in INACTIVE_WORKFLOW


@dataclass(frozen=True, slots=True, kw_only=True)
class IncidentDetail:
    incident: Incident
    timeline: tuple[IncidentEvent, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class IncidentUpdate:
    """The outcome of applying one ConditionChange."""

    kind: UpdateKind
    incident: Incident | None  # None only when ignored without an incident
    events: tuple[IncidentEvent, ...]  # appended by this change (empty when ignored)
    note: str = ""  # why it was ignored, for logs
    outbox: tuple[OutboxMessage, ...] = ()  # enqueued in the same transaction


@dataclass(frozen=True, slots=True, kw_only=True)
class Outgoing:
    """A message to enqueue with an incident change. `body` is a JSON object; the store
    adds `"message_id"` (the outbox row id, stable across redeliveries)."""

    kind: OutboxKind
    topic: str
    body: dict[str, Any]
    crew_id: str | None = None  # alert address, for the webhooks and the stats


@dataclass(frozen=True, slots=True, kw_only=True)
class Dispatch:
    """What goes out with one incident update: the crew routed to (kept on the incident
    when not None) and the messages."""

    routed_crew_id: str | None
    messages: tuple[Outgoing, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxMessage:
    id: int  # the message id receivers dedupe on
    incident_id: int | None
    kind: OutboxKind
    topic: str
    payload: bytes
    agency: str | None
    crew_id: str | None
    created_at: datetime
    published_at: datetime | None
    notify_state: NotifyState | None
    notify_attempts: int
    notify_error: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Placement:
    """Where an incident sits: its zone level and the agency that answers for it."""

    zone_level: str  # one of ZONE_LEVELS
    agency: str | None

    def __post_init__(self) -> None:
        if self.zone_level not in ZONE_LEVELS:
            raise ValueError(f"zone level {self.zone_level!r} is not one of {ZONE_LEVELS}")


class StoreError(Exception):
    pass


class IncidentNotFound(StoreError):
    def __init__(self, incident_id: int) -> None:
        super().__init__(f"incident {incident_id} does not exist")
        self.incident_id = incident_id


class InvalidTransition(StoreError):
    """A workflow move that WORKFLOW_TRANSITIONS (or the one-active-per-key rule) refuses."""

    def __init__(self, incident_id: int, from_state: WorkflowState, to: WorkflowState, why: str):
        super().__init__(f"incident {incident_id}: cannot go {from_state} -> {to}: {why}")
        self.incident_id = incident_id
        self.from_state = from_state
        self.to = to
        self.why = why


__all__ = [
    "INACTIVE_WORKFLOW",
    "RULES_ACTOR",
    "ZONE_LEVELS",
    "Dispatch",
    "EventKind",
    "Incident",
    "IncidentDetail",
    "IncidentEvent",
    "IncidentNotFound",
    "IncidentUpdate",
    "InvalidTransition",
    "NotifyState",
    "OutboxKind",
    "OutboxMessage",
    "Outgoing",
    "Placement",
    "StoreError",
    "UpdateKind",
]
