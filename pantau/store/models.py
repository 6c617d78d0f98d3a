"""SQLAlchemy 2 models of the incident tables. The schema itself is owned by the Alembic
migrations in `migrations/versions`; these models must stay in step with them (a unit
test compares the two)."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Generic, TypeVar

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from pantau.incidents import ConditionState, Hazard, Severity, WorkflowState

from .types import INACTIVE_WORKFLOW, ZONE_LEVELS, EventKind, NotifyState, OutboxKind

E = TypeVar("E", bound=StrEnum)

# One SQL predicate for "this incident is still active for its key"; the migration
# builds the same partial unique index from it.
ACTIVE_WHERE = "workflow_state NOT IN ({})".format(
    ", ".join(f"'{s.value}'" for s in sorted(INACTIVE_WORKFLOW))
)


class UtcDateTime(TypeDecorator[datetime]):
    """Tz-aware UTC in and out. PostgreSQL stores timestamptz; SQLite, which has no time
    zones, stores naive UTC text that comes back tagged as UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the incident store needs tz-aware times")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class EnumText(TypeDecorator[E], Generic[E]):
    """A StrEnum stored as its value in a plain string column (CHECKs live in the migration)."""

    impl = String(32)
    cache_ok = True

    def __init__(self, enum: type[E]) -> None:
        super().__init__()
        self.enum = enum

    def process_bind_param(self, value: E | None, dialect: Dialect) -> str | None:
        return None if value is None else self.enum(value).value

    def process_result_value(self, value: Any, dialect: Dialect) -> E | None:
        return None if value is None else self.enum(value)


class SeverityInt(TypeDecorator[Severity]):
    impl = Integer
    cache_ok = True

    def process_bind_param(self, value: Severity | None, dialect: Dialect) -> int | None:
        return None if value is None else int(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> Severity | None:
        return None if value is None else Severity(value)


NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def _one_of(column: str, allowed: type[StrEnum] | tuple[str, ...]) -> CheckConstraint:
    values = ", ".join(f"'{v}'" for v in allowed)
    return CheckConstraint(f"{column} IN ({values})", name=column)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class IncidentRow(Base):
    __tablename__ = "incidents"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    rule_id: Mapped[str] = mapped_column(String(128))
    zone_id: Mapped[str] = mapped_column(String(128))
    hazard: Mapped[Hazard] = mapped_column(EnumText(Hazard))
    zone_level: Mapped[str] = mapped_column(String(32))
    agency: Mapped[str | None] = mapped_column(String(64))
    condition_state: Mapped[ConditionState] = mapped_column(EnumText(ConditionState))
    condition_at: Mapped[datetime] = mapped_column(UtcDateTime())
    workflow_state: Mapped[WorkflowState] = mapped_column(EnumText(WorkflowState))
    severity_current: Mapped[Severity] = mapped_column(SeverityInt())
    severity_max: Mapped[Severity] = mapped_column(SeverityInt())
    # Evidence: device ids as a sorted, comma-joined list (device ids never hold commas:
    # pantau.topics.DEVICE_ID_PATTERN), so both engines store it the same way.
    evidence_device_ids: Mapped[str] = mapped_column(Text)
    evidence_metric: Mapped[str] = mapped_column(String(64))
    evidence_peak_value: Mapped[float] = mapped_column(Float)
    evidence_first_at: Mapped[datetime] = mapped_column(UtcDateTime())
    evidence_last_at: Mapped[datetime] = mapped_column(UtcDateTime())
    opened_at: Mapped[datetime] = mapped_column(UtcDateTime())
    sla_ack_due: Mapped[datetime] = mapped_column(UtcDateTime())
    sla_resolve_due: Mapped[datetime] = mapped_column(UtcDateTime())
    acknowledged_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    resolved_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    reopen_count: Mapped[int] = mapped_column(Integer, default=0)
    assignee_crew_id: Mapped[str | None] = mapped_column(String(64))
    # The crew the rules last alerted (routing at event time); assignee is who people
    # dispatched. 0002.
    routed_crew_id: Mapped[str | None] = mapped_column(String(64))
    # 0 none, 1 the agency supervisor, 2 the operations center (rules.escalation). 0002.
    escalation_level: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_seq: Mapped[int] = mapped_column(Integer, default=0)  # seq of the newest event

    events: Mapped[list[IncidentEventRow]] = relationship(
        back_populates="incident", order_by="IncidentEventRow.seq"
    )

    __table_args__ = (
        Index(
            "uq_incidents_active_key",
            "rule_id",
            "zone_id",
            "hazard",
            unique=True,
            postgresql_where=text(ACTIVE_WHERE),
            sqlite_where=text(ACTIVE_WHERE),
        ),
        Index("ix_incidents_zone_id_workflow_state", "zone_id", "workflow_state"),
        _one_of("hazard", Hazard),
        _one_of("zone_level", ZONE_LEVELS),
        _one_of("condition_state", ConditionState),
        _one_of("workflow_state", WorkflowState),
        CheckConstraint("severity_current BETWEEN 1 AND 4", name="severity_current"),
        CheckConstraint("severity_max BETWEEN 1 AND 4", name="severity_max"),
        CheckConstraint("severity_max >= severity_current", name="severity_max_ge_current"),
        CheckConstraint("reopen_count >= 0", name="reopen_count"),
    )


class IncidentEventRow(Base):
    __tablename__ = "incident_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(UtcDateTime())
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime())
    kind: Mapped[EventKind] = mapped_column(EnumText(EventKind))
    from_state: Mapped[str | None] = mapped_column(String(32))
    to_state: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str] = mapped_column(Text)
    # The timeline's hash chain (migration 0008, pantau.store.chain).
    prev_hash: Mapped[str] = mapped_column(String(64), server_default="")
    row_hash: Mapped[str] = mapped_column(String(64), server_default="")

    incident: Mapped[IncidentRow] = relationship(back_populates="events")

    __table_args__ = (UniqueConstraint("incident_id", "seq"), _one_of("kind", EventKind))


class OutboxRow(Base):
    """A message owed to the broker (and, for alerts, to the chat webhooks), written in
    the transaction of the incident change it reports. Its id is the message id."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    incident_id: Mapped[int | None] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"))
    kind: Mapped[OutboxKind] = mapped_column(EnumText(OutboxKind))
    topic: Mapped[str] = mapped_column(String(255))
    payload: Mapped[str] = mapped_column(Text)  # JSON, with "message_id" = id
    agency: Mapped[str | None] = mapped_column(String(64))
    crew_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    published_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), index=True)
    notify_state: Mapped[NotifyState | None] = mapped_column(EnumText(NotifyState), index=True)
    notify_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    notify_error: Mapped[str | None] = mapped_column(Text)
    notified_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # Claims (0006): the replica publishing / notifying this row and until when; an
    # expired claim is anyone's (its replica died). Written by SQL in pantau.store.claims.
    publish_owner: Mapped[str | None] = mapped_column(String(255))
    publish_until: Mapped[datetime | None] = mapped_column(UtcDateTime())
    notify_owner: Mapped[str | None] = mapped_column(String(255))
    notify_until: Mapped[datetime | None] = mapped_column(UtcDateTime())

    __table_args__ = (_one_of("kind", OutboxKind), _one_of("notify_state", NotifyState))


class LeaseRow(Base):
    """One unit of shared work (kind, key) held by one replica until expires_at; epoch
    rises at every change of owner (0006, pantau.store.leases)."""

    __tablename__ = "leases"

    kind: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    owner: Mapped[str] = mapped_column(String(255))
    epoch: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())


class ReplicaRow(Base):
    """A replica's heartbeat: live while seen_at is younger than the lease ttl (0006)."""

    __tablename__ = "replicas"

    kind: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    seen_at: Mapped[datetime] = mapped_column(UtcDateTime())
