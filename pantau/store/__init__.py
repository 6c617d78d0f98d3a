"""Incidents in SQL: SQLAlchemy 2 models, Alembic migrations, the store and SLA policy.

migrate("sqlite:///run/pantau.db")              # or: python -m pantau.store migrate URL
store = IncidentStore(url, load_sla_policy(), SystemClock())
update = store.apply(change)                     # from the rule engine
store.transition(update.incident.id, WorkflowState.ACKNOWLEDGED, "op:ani", "on it")
"""

# Registers the API's tables (migration 0003) on the shared metadata.
from pantau.store import api_tables as _api_tables  # noqa: F401
from pantau.store.mapping import event_from_row, incident_from_row, outbox_from_row
from pantau.store.migrate import DEFAULT_URL, make_engine, migrate
from pantau.store.placement import DEFAULT_AGENCY, default_placement, placement_by_zone
from pantau.store.sla import SlaPolicy, SlaTarget, load_sla_policy
from pantau.store.store import IncidentStore
from pantau.store.types import (
    INACTIVE_WORKFLOW,
    RULES_ACTOR,
    ZONE_LEVELS,
    Dispatch,
    EventKind,
    Incident,
    IncidentDetail,
    IncidentEvent,
    IncidentNotFound,
    IncidentUpdate,
    InvalidTransition,
    NotifyState,
    OutboxKind,
    OutboxMessage,
    Outgoing,
    Placement,
    StoreError,
    UpdateKind,
)

__all__ = [
    "DEFAULT_AGENCY",
    "DEFAULT_URL",
    "INACTIVE_WORKFLOW",
    "RULES_ACTOR",
    "ZONE_LEVELS",
    "Dispatch",
    "EventKind",
    "Incident",
    "IncidentDetail",
    "IncidentEvent",
    "IncidentNotFound",
    "IncidentStore",
    "IncidentUpdate",
    "InvalidTransition",
    "NotifyState",
    "OutboxKind",
    "OutboxMessage",
    "Outgoing",
    "Placement",
    "SlaPolicy",
    "SlaTarget",
    "StoreError",
    "UpdateKind",
    "default_placement",
    "event_from_row",
    "incident_from_row",
    "load_sla_policy",
    "make_engine",
    "migrate",
    "outbox_from_row",
    "placement_by_zone",
]
