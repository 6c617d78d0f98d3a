"""Appending to the audit log: one writer at a time extends its hash chain
(pantau.store.chain). The API's audit log and `pantau store prune` both write here."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, insert, select, text

from . import chain
from .api_tables import AuditPruneRow, AuditRow

# pg_advisory_xact_lock key of the audit chain ("PANTAUDT" as a 64-bit integer).
CHAIN_LOCK = int.from_bytes(b"PANTAUDT", "big") >> 1


def append_audit(
    conn: Connection,
    *,
    at: datetime,
    actor: str,
    role: str,
    action: str,
    incident_id: int | None,
    outcome: str,
    detail: str,
) -> None:
    """Append one row in the caller's transaction, chained to the newest row (or, when
    a prune left none, to where the prune says the chain goes on)."""
    # SQLite's BEGIN IMMEDIATE already serialises writers; PostgreSQL takes a
    # transaction-scoped advisory lock.
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": CHAIN_LOCK})
    prev = conn.scalar(select(AuditRow.row_hash).order_by(AuditRow.id.desc()).limit(1))
    if prev is None:
        prev = conn.scalar(
            select(AuditPruneRow.chain_from).order_by(AuditPruneRow.id.desc()).limit(1)
        )
    prev = prev or chain.GENESIS
    fields = chain.audit_fields(
        at=at,
        actor=actor,
        role=role,
        action=action,
        incident_id=incident_id,
        outcome=outcome,
        detail=detail,
    )
    conn.execute(
        insert(AuditRow).values(
            at=at,
            actor=actor,
            role=role,
            action=action,
            incident_id=incident_id,
            outcome=outcome,
            detail=detail,
            prev_hash=prev,
            row_hash=chain.link(prev, fields),
        )
    )
