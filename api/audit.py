"""The audit log: every workflow transition and every denial, appended, never changed
(the migration's triggers refuse UPDATE and DELETE), each row hash-chained to the one
before (pantau.store.chain) so that a change made around the triggers shows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from pantau.clock import Clock
from pantau.store.api_tables import AuditRow
from pantau.store.auditlog import append_audit

from .principal import Principal


class Outcome(StrEnum):
    ALLOWED = "allowed"
    DENIED = "denied"


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    role: str
    action: str
    incident_id: int | None
    outcome: Outcome
    detail: str


class AuditLog:
    def __init__(self, sessions: sessionmaker[Session], clock: Clock) -> None:
        self._sessions = sessions
        self._clock = clock

    def record(
        self,
        who: Principal | None,
        action: str,
        outcome: Outcome,
        detail: str,
        incident_id: int | None = None,
        *,
        subject: str | None = None,
    ) -> None:
        """Append one entry; `subject` names an unauthenticated caller (a failed login)."""
        at = self._clock.now()
        actor = who.actor if who is not None else f"anonymous:{subject or '-'}"
        role = who.role.value if who is not None else "anonymous"
        with self._sessions() as session, session.begin():
            append_audit(
                session.connection(),
                at=at,
                actor=actor,
                role=role,
                action=action,
                incident_id=incident_id,
                outcome=outcome.value,
                detail=detail[:2000],
            )

    def entries(
        self, *, incident_id: int | None = None, limit: int = 100, offset: int = 0
    ) -> tuple[Sequence[AuditEntry], int]:
        query = select(AuditRow)
        count = select(func.count()).select_from(AuditRow)
        if incident_id is not None:
            query = query.where(AuditRow.incident_id == incident_id)
            count = count.where(AuditRow.incident_id == incident_id)
        query = query.order_by(AuditRow.id.desc()).limit(limit).offset(offset)
        with self._sessions() as session:
            rows = [_entry(r) for r in session.scalars(query)]
            return rows, int(session.scalar(count) or 0)


def _entry(row: AuditRow) -> AuditEntry:
    return AuditEntry(
        id=row.id,
        at=row.at,
        actor=row.actor,
        role=row.role,
        action=row.action,
        incident_id=row.incident_id,
        outcome=Outcome(row.outcome),
        detail=row.detail,
    )
