"""Incident domain types shared by the rule engine, the incident store and the API.

Two orthogonal states (DESIGN.md, Incidents): the *condition* is what the data says
(pending, active, recovering, cleared, no-data) and is driven by rules on event time;
the *workflow* is what people did (open -> acknowledged -> dispatched -> on-site ->
resolved -> closed, plus suppressed) and is driven by the API. One active incident
exists per dedup key (rule, zone, hazard).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum, StrEnum


class Hazard(StrEnum):
    FLOOD = "flood"  # water level against Siaga levels, flood depth on a road
    HEAVY_RAIN = "heavy_rain"  # BMKG rainfall intensity categories
    PUMP_FAILURE = "pump_failure"  # pump stopped while it is needed
    TRAFFIC_JAM = "traffic_jam"
    ROAD_DAMAGE = "road_damage"
    SENSOR_OFFLINE = "sensor_offline"  # absence of data
    SENSOR_STUCK = "sensor_stuck"  # flatline
    BATTERY_LOW = "battery_low"
    DATA_QUALITY = "data_quality"  # e.g. sensor and camera disagree
    CAMERA_FAULT = "camera_fault"


class Severity(IntEnum):
    """Ordered so severities compare; names follow Indonesian warning practice."""

    INFO = 1
    WASPADA = 2  # alert / advisory (Siaga II)
    SIAGA = 3  # warning
    AWAS = 4  # danger (Siaga I): act now


class ConditionState(StrEnum):
    PENDING = "pending"  # breaching, but not yet for the rule's hold time
    ACTIVE = "active"
    RECOVERING = "recovering"  # back under the clear level, not yet for the clear hold
    CLEARED = "cleared"
    NO_DATA = "no_data"  # the rule cannot be judged: its inputs went silent


class WorkflowState(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    DISPATCHED = "dispatched"
    ON_SITE = "on_site"
    RESOLVED = "resolved"
    CLOSED = "closed"
    SUPPRESSED = "suppressed"


# Allowed workflow moves; anything else is refused with a reason (API: 409).
WORKFLOW_TRANSITIONS: dict[WorkflowState, frozenset[WorkflowState]] = {
    WorkflowState.OPEN: frozenset(
        {WorkflowState.ACKNOWLEDGED, WorkflowState.SUPPRESSED, WorkflowState.RESOLVED}
    ),
    WorkflowState.ACKNOWLEDGED: frozenset(
        {WorkflowState.DISPATCHED, WorkflowState.RESOLVED, WorkflowState.SUPPRESSED}
    ),
    WorkflowState.DISPATCHED: frozenset({WorkflowState.ON_SITE, WorkflowState.RESOLVED}),
    WorkflowState.ON_SITE: frozenset({WorkflowState.RESOLVED}),
    WorkflowState.RESOLVED: frozenset({WorkflowState.CLOSED, WorkflowState.OPEN}),  # reopen
    WorkflowState.CLOSED: frozenset({WorkflowState.OPEN}),  # reopen
    WorkflowState.SUPPRESSED: frozenset({WorkflowState.OPEN}),
}


@dataclass(frozen=True, slots=True)
class DedupKey:
    """At most one active incident per key."""

    rule_id: str
    zone_id: str
    hazard: Hazard

    def __str__(self) -> str:
        return f"{self.rule_id}|{self.zone_id}|{self.hazard.value}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Evidence:
    """What the condition rests on: the device series behind it and its extreme value."""

    device_ids: tuple[str, ...]
    metric: str
    peak_value: float
    first_at: datetime  # event time of the first breaching reading
    last_at: datetime  # event time of the latest reading considered


@dataclass(frozen=True, slots=True, kw_only=True)
class ConditionChange:
    """A rule's verdict changed for one key: what the incident store acts on.

    `at` is event time (device time), never the time the rule engine ran.
    """

    key: DedupKey
    state: ConditionState
    severity: Severity | None  # None when cleared / no data
    at: datetime
    evidence: Evidence | None
    reason: str  # for the timeline, e.g. "water_level 182 cm >= danger 160 cm for 5 min"
