"""Pruning the audit trail past its retention: an explicit, audited act, never a
side effect.

Incidents, their timelines and the audit log are evidence: nothing in Pantau deletes
them on its own. `pantau store prune --before DATE` deletes ended incidents (resolved
or closed before DATE, with their timeline, outbox rows and citizen reports) and audit
rows older than DATE, and refuses a DATE younger than the retention
(`PANTAU_RETENTION__INCIDENTS_YEARS`, default 5). It records who pruned what in
`audit_prunes` (append-only) and in the audit log itself, in the same transaction as
the deletes; the audit log's trigger lets a DELETE through only below that record.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, insert, or_, select, update
from sqlalchemy.engine import Engine

from pantau.errors import UserError
from pantau.incidents import WorkflowState
from pantau.store.api_tables import AuditPruneRow, AuditRow, CitizenReportRow
from pantau.store.models import IncidentRow

from .auditlog import append_audit

ENDED = (WorkflowState.RESOLVED, WorkflowState.CLOSED)


@dataclass(frozen=True, slots=True)
class Pruned:
    before: datetime
    incidents: int
    audit_rows: int


def oldest_allowed(now: datetime, years: int) -> datetime:
    """The youngest bound a prune may take: `years` before `now` (29 Feb -> 28 Feb)."""
    try:
        return now.replace(year=now.year - years)
    except ValueError:
        return now.replace(year=now.year - years, day=28)


def prune(
    engine: Engine, *, before: datetime, now: datetime, keep_years: int, actor: str, reason: str
) -> Pruned:
    limit = oldest_allowed(now, keep_years)
    if before > limit:
        raise UserError(
            f"the audit trail is kept {keep_years} years: --before may be at most "
            f"{limit:%Y-%m-%d} (PANTAU_RETENTION__INCIDENTS_YEARS), not {before:%Y-%m-%d}"
        )
    if not reason.strip():
        raise UserError("say why (--reason): the prune is recorded in the audit log")
    ended_before = IncidentRow.workflow_state.in_(ENDED) & or_(
        IncidentRow.closed_at < before,
        (IncidentRow.closed_at.is_(None)) & (IncidentRow.resolved_at < before),
    )
    with engine.begin() as conn:
        incidents = (
            conn.scalar(select(func.count()).select_from(IncidentRow).where(ended_before)) or 0
        )
        audit_rows = (
            conn.scalar(select(func.count()).select_from(AuditRow).where(AuditRow.at < before)) or 0
        )
        # The remaining hash chain starts at the newest row deleted (pantau.store.chain).
        chain_from = conn.scalar(
            select(AuditRow.row_hash)
            .where(AuditRow.at < before)
            .order_by(AuditRow.id.desc())
            .limit(1)
        )
        # First the record: the audit log's trigger reads it to let the DELETE through.
        conn.execute(
            insert(AuditPruneRow).values(
                chain_from=chain_from,
                at=now,
                actor=actor,
                before=before,
                incidents=incidents,
                audit_rows=audit_rows,
                reason=reason,
            )
        )
        conn.execute(delete(IncidentRow).where(ended_before))  # timeline etc.: ON DELETE CASCADE
        conn.execute(delete(AuditRow).where(AuditRow.at < before))
        append_audit(
            conn,
            at=now,
            actor=actor,
            role="service",
            action="store.prune",
            incident_id=None,
            outcome="allowed",
            detail=json.dumps(
                {
                    "before": before.isoformat(),
                    "incidents": incidents,
                    "audit_rows": audit_rows,
                    "reason": reason,
                }
            ),
        )
    return Pruned(before, incidents, audit_rows)


def drop_report_photos(engine: Engine, before: datetime) -> int:
    """Drop the photos of citizen reports received before `before` (the report, its
    place, category and incident stay); the number of photos dropped. The rules
    service does it on its tick, with `retention.report_photo_days`."""
    with engine.begin() as conn:
        result = conn.execute(
            update(CitizenReportRow)
            .where(CitizenReportRow.received_at < before, CitizenReportRow.photo.is_not(None))
            .values(photo=None, photo_type=None)
        )
        return int(getattr(result, "rowcount", 0) or 0)
