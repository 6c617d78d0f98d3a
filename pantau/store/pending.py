"""One transaction's changes to one incident: the timeline events it appends, each
hash-chained to the one before (pantau.store.chain), and what the store answers."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from . import chain
from .mapping import event_from_row, incident_from_row
from .models import IncidentEventRow, IncidentRow
from .types import EventKind, IncidentUpdate, UpdateKind


@dataclass
class Pending:
    """Events collected while one transaction changes one incident."""

    row: IncidentRow
    at_now: datetime
    events: list[IncidentEventRow] = field(default_factory=list)

    def add(
        self,
        kind: EventKind,
        from_state: str | None,
        to_state: str,
        *,
        at: datetime,
        actor: str,
        reason: str,
    ) -> None:
        self.row.last_seq += 1
        seq = self.row.last_seq
        # Chained to the newest event (pantau.store.chain); the row is locked, so no
        # other writer appends to this timeline meanwhile.
        timeline = self.row.events
        prev = timeline[-1].row_hash if timeline else self._genesis()
        fields = chain.event_fields(
            seq=seq,
            at=at,
            recorded_at=self.at_now,
            kind=kind,
            from_state=from_state,
            to_state=to_state,
            actor=actor,
            reason=reason,
        )
        self.events.append(
            IncidentEventRow(
                seq=seq,
                at=at,
                recorded_at=self.at_now,
                kind=kind,
                from_state=from_state,
                to_state=to_state,
                actor=actor,
                reason=reason,
                prev_hash=prev,
                row_hash=chain.link(prev, fields),
            )
        )
        timeline.append(self.events[-1])

    def _genesis(self) -> str:
        r = self.row
        return chain.timeline_genesis(r.rule_id, r.zone_id, r.hazard, r.opened_at)


def update_result(kind: UpdateKind, p: Pending) -> IncidentUpdate:
    return IncidentUpdate(
        kind=kind,
        incident=incident_from_row(p.row),
        events=tuple(event_from_row(e) for e in p.events),
    )
