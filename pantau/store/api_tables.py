"""The API's tables (migration 0003): users, API keys, the audit log and citizen reports.

They live in the incident store's migration chain and metadata so one `migrate(url)`
builds the whole schema and the model-vs-migration check covers them too. The audit
log is append-only: the migration installs triggers that refuse UPDATE and DELETE.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Float, ForeignKey, Index, Integer, LargeBinary, String, Text
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

    __table_args__ = (
        _one_of("outcome", AUDIT_OUTCOMES),
        Index("ix_audit_log_incident_id", "incident_id"),
    )


class CitizenReportRow(Base):
    """A pengaduan: where, what, an optional photo. No name, phone or address is taken,
    and the client address is used only in memory for rate limiting."""

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

    __table_args__ = (
        _one_of("outcome", REPORT_OUTCOMES),
        Index("ix_citizen_reports_incident_id", "incident_id"),
    )


class AuditPruneRow(Base):
    """One explicit prune of the audit trail (migration 0007): who, when, up to when.
    Append-only; the audit log lets a DELETE through only below the newest `before`."""

    __tablename__ = "audit_prunes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime())
    actor: Mapped[str] = mapped_column(String(128))
    before: Mapped[datetime] = mapped_column(UtcDateTime())
    incidents: Mapped[int] = mapped_column(Integer)
    audit_rows: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text)
