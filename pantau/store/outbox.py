"""The transactional outbox's read side: rows the store enqueued in the same transaction
as an incident change, read and marked by the MQTT publisher and the webhook notifier."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete as sql_delete
from sqlalchemy import or_, select
from sqlalchemy import update as sql_update
from sqlalchemy.orm import Session, sessionmaker

from pantau.clock import Clock

from .claims import Claims
from .mapping import outbox_from_row
from .models import OutboxRow
from .types import NotifyState, OutboxMessage


class OutboxQueue:
    """Outbox operations of `IncidentStore` (its base: same sessions and clock)."""

    _sessions: sessionmaker[Session]
    _clock: Clock
    claims: Claims | None  # several replicas: rows are claimed before they are sent

    def unpublished(self, limit: int = 1000) -> list[OutboxMessage]:
        """Outbox rows the broker has not confirmed yet, oldest first. With claims, only
        rows nobody holds (or whose holder died), now claimed by this replica."""
        if self.claims is not None:
            return self.outbox_messages(self.claims.claim_unpublished(limit))
        query = (
            select(OutboxRow)
            .where(OutboxRow.published_at.is_(None))
            .order_by(OutboxRow.id)
            .limit(limit)
        )
        with self._sessions() as session:
            return [outbox_from_row(r) for r in session.scalars(query)]

    def mark_published(self, ids: Sequence[int]) -> None:
        if not ids:
            return
        with self._sessions() as session, session.begin():
            session.execute(
                sql_update(OutboxRow)
                .where(OutboxRow.id.in_(list(ids)), OutboxRow.published_at.is_(None))
                .values(published_at=self._clock.now())
            )

    def pending_notifications(self, limit: int = 100) -> list[OutboxMessage]:
        """Alert rows not yet handed to the chat webhooks, oldest first. With claims,
        a few at a time (the claim must outlast their delivery), claimed."""
        if self.claims is not None:
            return self.outbox_messages(self.claims.claim_notifications(min(limit, 10)))
        query = (
            select(OutboxRow)
            .where(OutboxRow.notify_state == NotifyState.PENDING)
            .order_by(OutboxRow.id)
            .limit(limit)
        )
        with self._sessions() as session:
            return [outbox_from_row(r) for r in session.scalars(query)]

    def record_notification(
        self, message_id: int, state: NotifyState, attempts: int, error: str | None = None
    ) -> None:
        with self._sessions() as session, session.begin():
            row = session.get(OutboxRow, message_id, with_for_update=True)
            if row is None:
                raise KeyError(f"no outbox row {message_id}")
            row.notify_state = state
            row.notify_attempts += attempts
            row.notify_error = error
            row.notified_at = self._clock.now()

    def prune_outbox(self, published_before: datetime, *, keep_pending: bool = True) -> int:
        """Delete rows published before `published_before`; the number deleted. Unsent
        rows are never pruned; rows still pending for the webhooks only with
        `keep_pending=False` (no webhook notifier runs)."""
        query = sql_delete(OutboxRow).where(OutboxRow.published_at < published_before)
        if keep_pending:
            query = query.where(
                or_(
                    OutboxRow.notify_state.is_(None),
                    OutboxRow.notify_state != NotifyState.PENDING,
                )
            )
        with self._sessions() as session, session.begin():
            result = session.execute(query)
            return int(getattr(result, "rowcount", 0) or 0)

    def outbox_messages(self, ids: Sequence[int]) -> list[OutboxMessage]:
        """These rows, by id."""
        if not ids:
            return []
        query = select(OutboxRow).where(OutboxRow.id.in_(list(ids))).order_by(OutboxRow.id)
        with self._sessions() as session:
            return [outbox_from_row(r) for r in session.scalars(query)]

    def outbox_message(self, message_id: int) -> OutboxMessage | None:
        with self._sessions() as session:
            row = session.get(OutboxRow, message_id)
            return None if row is None else outbox_from_row(row)
