"""The API's tables (migration 0003): users, API keys, the audit log and citizen reports;
(0007) login failures and rate-limit hits shared by API replicas.

They live in the incident store's migration chain and metadata so one `migrate(url)`
builds the whole schema and the model-vs-migration check covers them too. The audit
log is append-only: the migration installs triggers that refuse UPDATE and DELETE.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from .models import Base, UtcDateTime, _one_of

ROLES = ("operator", "supervisor", "crew", "auditor", "service")
AUDIT_OUTCOMES = ("allowed", "denied")
REPORT_OUTCOMES = ("corroborated", "opened")


class UserRow(Base):
    __tablename__ = "api_users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(32))
    agency: Mapped[str | None] = mapped_column(String(64))
    crew_id: Mapped[str | None] = mapped_column(String(64))
    # Kecamatan ids a crew covers, comma-joined; empty for roles that see the whole city.
    zones: Mapped[str] = mapped_column(Text, default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    # Raised to revoke every token issued before (migration 0004).
    session_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    __table_args__ = (_one_of("role", ROLES),)


class ApiKeyRow(Base):
    """A service's key: only its SHA-256 is stored (keys are 256 random bits, so a fast
    hash is enough); `prefix` lets an operator tell keys apart."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    key_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(32))
    agency: Mapped[str | None] = mapped_column(String(64))
    zones: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime())

    __table_args__ = (_one_of("role", ROLES),)


class AuditRow(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime())
    actor: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(64))
    incident_id: Mapped[int | None] = mapped_column(Integer)
    outcome: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str] = mapped_column(Text)
    # The hash chain (migration 0008, pantau.store.chain): the previous row's hash and
    # this row's.
    prev_hash: Mapped[str] = mapped_column(String(64), server_default="")
    row_hash: Mapped[str] = mapped_column(String(64), server_default="")

    __table_args__ = (
        _one_of("outcome", AUDIT_OUTCOMES),
        Index("ix_audit_log_incident_id", "incident_id"),
    )


class CitizenReportRow(Base):
    """A pengaduan: where, what, an optional photo. No name, phone or address is taken;
    the client address is used only for rate limiting (in memory, or as an HMAC in
    `api_rate_hits` for an hour when API replicas share PostgreSQL)."""

    __tablename__ = "citizen_reports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime())
    lon: Mapped[float] = mapped_column(Float)
    lat: Mapped[float] = mapped_column(Float)
    zone_id: Mapped[str] = mapped_column(String(128))
    category: Mapped[str] = mapped_column(String(32))
    description: Mapped[str] = mapped_column(Text, default="")
    photo: Mapped[bytes | None] = mapped_column(LargeBinary)
    photo_type: Mapped[str | None] = mapped_column(String(64))
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"))
    outcome: Mapped[str] = mapped_column(String(16))
    # Migration 0008: the SHA-256 of the reporter's tracking token (the token itself is
    # only ever in the reporter's link), and the reporter's one rating of the response.
    track_sha256: Mapped[str | None] = mapped_column(String(64))
    rating: Mapped[int | None] = mapped_column(Integer)
    rating_comment: Mapped[str | None] = mapped_column(Text)
    rated_at: Mapped[datetime | None] = mapped_column(UtcDateTime())

    __table_args__ = (
        _one_of("outcome", REPORT_OUTCOMES),
        CheckConstraint("rating BETWEEN 1 AND 5", name="rating"),
        Index("ix_citizen_reports_track_sha256", "track_sha256", unique=True),
        Index("ix_citizen_reports_incident_id", "incident_id"),
    )


class LoginFailureRow(Base):
    """Failed logins per (username, address) and per address, shared by every API replica
    on PostgreSQL (migration 0007; api.shared_limits). The key is a keyed hash, so the
    table holds no username or address in clear; rows older than 15 minutes are deleted."""

    __tablename__ = "api_login_failures"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    count: Mapped[int] = mapped_column(Integer)
    last: Mapped[float] = mapped_column(Float)  # epoch seconds of the latest failure
    audited: Mapped[float] = mapped_column(Float)  # `last` already written to the audit log

    __table_args__ = (Index("ix_api_login_failures_last", "last"),)


class RateHitRow(Base):
    """One counted request of a sliding-window limit (citizen reports per address),
    shared by every API replica on PostgreSQL. `bucket` is a keyed hash of the limit's
    name and the client; hits older than the window are deleted."""

    __tablename__ = "api_rate_hits"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    bucket: Mapped[str] = mapped_column(String(64))
    at: Mapped[float] = mapped_column(Float)

    __table_args__ = (Index("ix_api_rate_hits_bucket_at", "bucket", "at"),)


class RequestKeyRow(Base):
    """A write the API already answered, by the caller's Idempotency-Key (migration
    0009): a crew phone that sends an action again after losing the signal gets the
    first answer back, and the action happens once."""

    __tablename__ = "api_request_keys"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    actor: Mapped[str] = mapped_column(String(128))
    request: Mapped[str] = mapped_column(String(255))  # "POST /incidents/7/acknowledge"
    status: Mapped[int] = mapped_column(Integer)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)


class AuditPruneRow(Base):
    """One explicit prune of the audit trail (migration 0010): who, when, up to when.
    Append-only; the audit log lets a DELETE through only below the newest `before`."""

    __tablename__ = "audit_prunes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime())
    actor: Mapped[str] = mapped_column(String(128))
    before: Mapped[datetime] = mapped_column(UtcDateTime())
    incidents: Mapped[int] = mapped_column(Integer)
    audit_rows: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text)
    # row_hash of the newest deleted audit row: where the remaining chain starts.
    chain_from: Mapped[str | None] = mapped_column(String(64), nullable=True)
