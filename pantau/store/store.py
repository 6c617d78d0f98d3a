"""The incident store: turns the rule engine's ConditionChanges into incidents in SQL and
moves incidents through their workflow, appending every transition to the timeline.

One active incident per dedup key is enforced by the database (a partial unique index,
see migrations/versions/0001_incidents.py), not only by this code, so two rule processes
racing on the same first ACTIVE still give one incident: the loser's INSERT fails, it
re-reads and applies its change as an update.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from sqlalchemy import Engine, Select, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from pantau.clock import Clock
from pantau.incidents import (
    WORKFLOW_TRANSITIONS,
    ConditionChange,
    ConditionState,
    DedupKey,
    Evidence,
    Severity,
    WorkflowState,
)

from .claims import Claims
from .mapping import event_from_row, incident_from_row, outbox_from_row
from .migrate import make_engine, migrate
from .models import IncidentRow, OutboxRow
from .outbox import OutboxQueue
from .pending import Pending, update_result
from .placement import default_placement
from .sla import SlaPolicy
from .types import (
    INACTIVE_WORKFLOW,
    RULES_ACTOR,
    Dispatch,
    EventKind,
    Incident,
    IncidentDetail,
    IncidentNotFound,
    IncidentUpdate,
    InvalidTransition,
    NotifyState,
    OutboxKind,
    Placement,
    UpdateKind,
)

logger = logging.getLogger(__name__)


def _fmt(when: datetime) -> str:
    return when.isoformat(timespec="seconds")


def _minutes(delta: timedelta) -> str:
    return f"{delta.total_seconds() / 60:g} min"


class IncidentStore(OutboxQueue):
    def __init__(
        self,
        engine_or_url: Engine | str,
        sla_policy: SlaPolicy,
        clock: Clock,
        *,
        place: Callable[[ConditionChange], Placement] = default_placement,
        migrate_schema: bool = False,
    ) -> None:
        """`migrate_schema=True` applies the migrations first (embedded SQLite default);
        services sharing a PostgreSQL database should run `migrate(url)` once instead.
        Replicas set `claims` (`use_claims`) so each outbox row is sent by one of them."""
        self._owns_engine = isinstance(engine_or_url, str)
        self.engine = (
            make_engine(engine_or_url) if isinstance(engine_or_url, str) else engine_or_url
        )
        if migrate_schema:
            migrate(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._sla = sla_policy
        self._clock = clock
        self._place = place
        self.claims: Claims | None = None

    def use_claims(self, owner: str, ttl_s: float, notify_ttl_s: float) -> Claims:
        """From now on outbox rows are claimed by `owner` before they are sent, and rows
        this store writes are claimed for it in their own transaction."""
        self.claims = Claims(self.engine, owner, ttl_s, notify_ttl_s)
        return self.claims

    def close(self) -> None:
        if self._owns_engine:
            self.engine.dispose()

    # -- the rule engine's side ---------------------------------------------------------

    def apply(
        self,
        change: ConditionChange,
        compose: Callable[[IncidentUpdate], Dispatch] | None = None,
        *,
        fence: Callable[[Session], None] | None = None,
    ) -> IncidentUpdate:
        """Act on one condition change; idempotent (the same change twice is IGNORED).

        `compose` (the rules service's) turns an update that changed something into the
        messages it owes; they go into the outbox in the same transaction, so a crash
        before they are published cannot lose them (`unpublished()` at the next start).
        `fence` runs first in that transaction (a rules replica's partition lease,
        pantau.store.leases): it raises to refuse the write, so a replica that lost its
        partition cannot open, update or enqueue anything.
        """
        _check_change(change)
        for attempt in (1, 2):
            try:
                with self._sessions() as session, session.begin():
                    if fence is not None:
                        fence(session)  # first: lease row, then incident rows (lock order)
                    row = self._active_row(session, change.key, lock=True)
                    if row is None:
                        if change.state is not ConditionState.ACTIVE:
                            return IncidentUpdate(
                                kind=UpdateKind.IGNORED,
                                incident=None,
                                events=(),
                                note=f"{change.state} for {change.key} without an active incident",
                            )
                        pending = self._open(session, change)
                        session.flush()  # the partial unique index speaks here
                        row = pending.row
                        update = update_result(UpdateKind.OPENED, pending)
                    else:
                        update = self._update(row, change)
                    if compose is None or update.kind is UpdateKind.IGNORED:
                        return update
                    return self._enqueue(session, row, update, compose(update))
            except IntegrityError:
                if attempt == 2:
                    raise
                # Another process opened the incident for this key between our read and
                # our insert: read again and apply the change to that incident.
                logger.info("incident for %s opened concurrently; applying as update", change.key)
        raise AssertionError("unreachable")

    def _enqueue(
        self, session: Session, row: IncidentRow, update: IncidentUpdate, dispatch: Dispatch
    ) -> IncidentUpdate:
        if dispatch.routed_crew_id is not None:
            row.routed_crew_id = dispatch.routed_crew_id
        now = self._clock.now()
        rows = [
            OutboxRow(
                incident_id=row.id,
                kind=m.kind,
                topic=m.topic,
                payload="",
                agency=row.agency,
                crew_id=m.crew_id,
                created_at=now,
                notify_state=None if m.kind is OutboxKind.EVENT else NotifyState.PENDING,
                notify_attempts=0,
            )
            for m in dispatch.messages
        ]
        session.add_all(rows)
        session.flush()  # ids: each message carries its own as the message id
        for r, m in zip(rows, dispatch.messages, strict=True):
            r.payload = json.dumps({**m.body, "message_id": r.id}, separators=(",", ":"))
        session.flush()
        if self.claims is not None:
            self.claims.mark_mine(session, [r.id for r in rows])
        return replace(
            update, incident=incident_from_row(row), outbox=tuple(outbox_from_row(r) for r in rows)
        )

    def _open(self, session: Session, change: ConditionChange) -> Pending:
        assert change.severity is not None and change.evidence is not None
        placement = self._place(change)
        target = self._sla.target(change.key.hazard, change.severity)
        ev = change.evidence
        row = IncidentRow(
            rule_id=change.key.rule_id,
            zone_id=change.key.zone_id,
            hazard=change.key.hazard,
            zone_level=placement.zone_level,
            agency=placement.agency,
            condition_state=ConditionState.ACTIVE,
            condition_at=change.at,
            workflow_state=WorkflowState.OPEN,
            severity_current=change.severity,
            severity_max=change.severity,
            evidence_device_ids=",".join(sorted(set(ev.device_ids))),
            evidence_metric=ev.metric,
            evidence_peak_value=ev.peak_value,
            evidence_first_at=ev.first_at,
            evidence_last_at=ev.last_at,
            opened_at=change.at,
            sla_ack_due=change.at + target.ack,
            sla_resolve_due=change.at + target.resolve,
            reopen_count=0,
            last_seq=0,
        )
        session.add(row)
        p = Pending(row, self._clock.now())
        sev = change.severity.name.lower()
        p.add(
            EventKind.CONDITION,
            None,
            "active",
            at=change.at,
            actor=RULES_ACTOR,
            reason=change.reason,
        )
        p.add(EventKind.SEVERITY, None, sev, at=change.at, actor=RULES_ACTOR, reason=change.reason)
        p.add(EventKind.WORKFLOW, None, "open", at=change.at, actor=RULES_ACTOR, reason="opened")
        p.add(
            EventKind.SLA,
            None,
            sev,
            at=change.at,
            actor=RULES_ACTOR,
            reason=(
                f"{change.key.hazard} {sev}: acknowledge by {_fmt(row.sla_ack_due)}"
                f" ({_minutes(target.ack)}), resolve by {_fmt(row.sla_resolve_due)}"
                f" ({_minutes(target.resolve)})"
            ),
        )
        return p

    def _update(self, row: IncidentRow, change: ConditionChange) -> IncidentUpdate:
        if change.at < row.condition_at:
            return IncidentUpdate(
                kind=UpdateKind.IGNORED,
                incident=incident_from_row(row),
                events=(),
                note=f"stale: {_fmt(change.at)} is before {_fmt(row.condition_at)}",
            )
        p = Pending(row, self._clock.now())
        changed = False
        if change.state is not row.condition_state:
            p.add(
                EventKind.CONDITION,
                row.condition_state.value,
                change.state.value,
                at=change.at,
                actor=RULES_ACTOR,
                reason=change.reason,
            )
            row.condition_state = change.state
            changed = True
        if change.severity is not None and change.severity is not row.severity_current:
            self._change_severity(p, change, change.severity)
            changed = True
        if change.evidence is not None and self._merge_evidence(row, change.evidence):
            changed = True
        if change.at > row.condition_at:
            row.condition_at = change.at
            changed = True
        if not changed:
            return IncidentUpdate(
                kind=UpdateKind.IGNORED,
                incident=incident_from_row(row),
                events=(),
                note="duplicate",
            )
        cleared = change.state is ConditionState.CLEARED and any(
            e.kind is EventKind.CONDITION for e in p.events
        )
        return update_result(UpdateKind.CLEARED if cleared else UpdateKind.UPDATED, p)

    def _change_severity(self, p: Pending, change: ConditionChange, new: Severity) -> None:
        row = p.row
        old = row.severity_current
        p.add(
            EventKind.SEVERITY,
            old.name.lower(),
            new.name.lower(),
            at=change.at,
            actor=RULES_ACTOR,
            reason=change.reason,
        )
        row.severity_current = new
        row.severity_max = max(row.severity_max, new)
        # A rise tightens the due times still open; a fall never loosens them.
        target = self._sla.target(row.hazard, new)
        tightened: list[str] = []
        if row.acknowledged_at is None and row.opened_at + target.ack < row.sla_ack_due:
            row.sla_ack_due = row.opened_at + target.ack
            tightened.append(f"acknowledge by {_fmt(row.sla_ack_due)}")
        if row.resolved_at is None and row.opened_at + target.resolve < row.sla_resolve_due:
            row.sla_resolve_due = row.opened_at + target.resolve
            tightened.append(f"resolve by {_fmt(row.sla_resolve_due)}")
        if tightened:
            p.add(
                EventKind.SLA,
                old.name.lower(),
                new.name.lower(),
                at=change.at,
                actor=RULES_ACTOR,
                reason=f"severity rose to {new.name.lower()}: " + ", ".join(tightened),
            )

    @staticmethod
    def _merge_evidence(row: IncidentRow, ev: Evidence) -> bool:
        """Devices accumulate, the span widens, metric and peak follow the latest change
        (the rule knows whether its extreme is a maximum or a minimum)."""
        before = (
            row.evidence_device_ids,
            row.evidence_metric,
            row.evidence_peak_value,
            row.evidence_first_at,
            row.evidence_last_at,
        )
        devices = set(filter(None, row.evidence_device_ids.split(","))) | set(ev.device_ids)
        row.evidence_device_ids = ",".join(sorted(devices))
        row.evidence_metric = ev.metric
        row.evidence_peak_value = ev.peak_value
        row.evidence_first_at = min(row.evidence_first_at, ev.first_at)
        row.evidence_last_at = max(row.evidence_last_at, ev.last_at)
        after = (
            row.evidence_device_ids,
            row.evidence_metric,
            row.evidence_peak_value,
            row.evidence_first_at,
            row.evidence_last_at,
        )
        return before != after

    # -- the people's side --------------------------------------------------------------

    def transition(
        self,
        incident_id: int,
        to: WorkflowState,
        actor: str,
        reason: str,
        at: datetime | None = None,
        *,
        crew_id: str | None = None,
    ) -> IncidentUpdate:
        """Move an incident's workflow; refused moves raise InvalidTransition.

        `at` defaults to the store's clock. `crew_id` sets the assignee (on dispatch).
        Reopening (resolved/closed -> open) counts in reopen_count and clears
        resolved_at / closed_at; it is refused while another incident is active for
        the same key.
        """
        if not actor or not reason:
            raise ValueError("a workflow transition needs an actor and a reason (audit log)")
        when = at or self._clock.now()
        if when.tzinfo is None:
            raise ValueError("transition time must be tz-aware")
        frm = WorkflowState.RESOLVED
        try:
            with self._sessions() as session, session.begin():
                row = session.get(IncidentRow, incident_id, with_for_update=True)
                if row is None:
                    raise IncidentNotFound(incident_id)
                frm = row.workflow_state
                allowed = WORKFLOW_TRANSITIONS[frm]
                if to not in allowed:
                    why = (
                        "it is already there"
                        if to is frm
                        else f"from {frm} only {', '.join(sorted(allowed))} are allowed"
                    )
                    raise InvalidTransition(incident_id, frm, to, why)
                p = Pending(row, self._clock.now())
                p.add(EventKind.WORKFLOW, frm.value, to.value, at=when, actor=actor, reason=reason)
                row.workflow_state = to
                if to is WorkflowState.ACKNOWLEDGED and row.acknowledged_at is None:
                    row.acknowledged_at = when
                elif to is WorkflowState.RESOLVED:
                    row.resolved_at = when
                elif to is WorkflowState.CLOSED:
                    row.closed_at = when
                elif to is WorkflowState.OPEN and frm in INACTIVE_WORKFLOW:
                    row.reopen_count += 1
                    row.resolved_at = None
                    row.closed_at = None
                if crew_id is not None:
                    row.assignee_crew_id = crew_id
                session.flush()
                return update_result(UpdateKind.UPDATED, p)
        except IntegrityError as err:
            key = self._key_of(incident_id)
            other = self.by_key(key) if key is not None else None
            raise InvalidTransition(
                incident_id,
                frm,
                to,
                f"incident {other.id if other else '?'} is already active for {key}",
            ) from err

    def record_report(
        self, incident_id: int, at: datetime, actor: str, reason: str
    ) -> IncidentUpdate:
        """Put a citizen report that corroborates the incident on its timeline (kind
        `report`; the workflow does not move), so the operator is told."""
        return self.annotate(incident_id, EventKind.REPORT, at, actor, reason)

    def annotate(
        self,
        incident_id: int,
        kind: EventKind,
        at: datetime,
        actor: str,
        reason: str,
        *,
        assign: str | None = None,
    ) -> IncidentUpdate:
        """A timeline event that does not move the workflow: a report, a note, or (with
        `assign`) an assignment, which sets the assignee; its from/to are crew ids."""
        if not actor or not reason:
            raise ValueError("a timeline event needs an actor and a reason (audit log)")
        with self._sessions() as session, session.begin():
            row = session.get(IncidentRow, incident_id, with_for_update=True)
            if row is None:
                raise IncidentNotFound(incident_id)
            p = Pending(row, self._clock.now())
            frm: str | None = row.workflow_state.value
            to = row.workflow_state.value
            if assign is not None:
                frm, to, row.assignee_crew_id = row.assignee_crew_id, assign, assign
            p.add(kind, frm, to, at=at, actor=actor, reason=reason)
            session.flush()
            return update_result(UpdateKind.UPDATED, p)

    # -- escalation ---------------------------------------------------------------------

    def overdue_unacknowledged(self, now: datetime, below_level: int) -> list[Incident]:
        """Open (never acknowledged) incidents whose acknowledge-by time has passed and
        whose escalation level is below `below_level`, oldest due first."""
        query = (
            select(IncidentRow)
            .where(
                IncidentRow.workflow_state == WorkflowState.OPEN,
                IncidentRow.sla_ack_due <= now,
                IncidentRow.escalation_level < below_level,
            )
            .order_by(IncidentRow.sla_ack_due, IncidentRow.id)
        )
        with self._sessions() as session:
            return [incident_from_row(r) for r in session.scalars(query)]

    def escalate(
        self,
        incident_id: int,
        level: int,
        *,
        at: datetime,
        to_state: str,
        reason: str,
        compose: Callable[[Incident], Dispatch],
        actor: str = RULES_ACTOR,
        while_in: frozenset[WorkflowState] = frozenset({WorkflowState.OPEN}),
    ) -> IncidentUpdate | None:
        """Raise an incident's escalation level to `level`, with an `sla` event on its
        timeline and the messages from `compose`, in one transaction. None (nothing
        written) if it is already at that level, or no longer in `while_in` (rules:
        open; an operator escalates any active incident): exactly once per level, even
        with two services racing."""
        with self._sessions() as session, session.begin():
            row = session.get(IncidentRow, incident_id, with_for_update=True)
            if row is None:
                raise IncidentNotFound(incident_id)
            if row.escalation_level >= level or row.workflow_state not in while_in:
                return None
            p = Pending(row, self._clock.now())
            before = row.escalation_level
            p.add(
                EventKind.SLA,
                f"escalation_{before}" if before else None,
                to_state,
                at=at,
                actor=actor,
                reason=reason,
            )
            row.escalation_level = level
            update = update_result(UpdateKind.UPDATED, p)
            assert update.incident is not None
            return self._enqueue(session, row, update, compose(update.incident))

    # -- queries ------------------------------------------------------------------------

    def get(self, incident_id: int) -> IncidentDetail | None:
        with self._sessions() as session:
            row = session.get(IncidentRow, incident_id)
            if row is None:
                return None
            return IncidentDetail(
                incident=incident_from_row(row),
                timeline=tuple(event_from_row(e) for e in row.events),
            )

    def active(self, zone_id: str | None = None) -> list[Incident]:
        """Active incidents (not resolved or closed), most severe first, then oldest."""
        query = select(IncidentRow).where(IncidentRow.workflow_state.not_in(INACTIVE_WORKFLOW))
        if zone_id is not None:
            query = query.where(IncidentRow.zone_id == zone_id)
        query = query.order_by(
            IncidentRow.severity_current.desc(), IncidentRow.opened_at, IncidentRow.id
        )
        with self._sessions() as session:
            return [incident_from_row(r) for r in session.scalars(query)]

    def by_key(self, key: DedupKey) -> Incident | None:
        """The active incident for `key`, if any."""
        with self._sessions() as session:
            row = self._active_row(session, key, lock=False)
            return None if row is None else incident_from_row(row)

    def history(self, key: DedupKey) -> list[Incident]:
        """Every incident the key ever had, oldest first."""
        with self._sessions() as session:
            rows = session.scalars(_key_query(key).order_by(IncidentRow.id))
            return [incident_from_row(r) for r in rows]

    def _key_of(self, incident_id: int) -> DedupKey | None:
        with self._sessions() as session:
            row = session.get(IncidentRow, incident_id)
            return None if row is None else DedupKey(row.rule_id, row.zone_id, row.hazard)

    @staticmethod
    def _active_row(session: Session, key: DedupKey, *, lock: bool) -> IncidentRow | None:
        query = _key_query(key).where(IncidentRow.workflow_state.not_in(INACTIVE_WORKFLOW))
        if lock:
            query = query.with_for_update()
        return session.scalars(query).one_or_none()


def _key_query(key: DedupKey) -> Select[IncidentRow]:
    return select(IncidentRow).where(
        IncidentRow.rule_id == key.rule_id,
        IncidentRow.zone_id == key.zone_id,
        IncidentRow.hazard == key.hazard,
    )


def _check_change(change: ConditionChange) -> None:
    if change.at.tzinfo is None:
        raise ValueError(f"condition change for {change.key} has a naive time")
    if change.state is ConditionState.ACTIVE and (
        change.severity is None or change.evidence is None
    ):
        raise ValueError(f"an ACTIVE change for {change.key} needs a severity and evidence")


__all__: Sequence[str] = [
    "IncidentStore",
]
