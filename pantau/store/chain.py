"""Hash chains over the audit log and the incident timelines (migration 0008).

Every audit row carries `prev_hash` (the stored hash of the row before it, by id) and
`row_hash` = SHA-256 of the previous hash and the row's own fields; every timeline event
does the same within its incident (by seq), the first event chaining from a genesis
hash of the incident's identity (rule, zone, hazard, opened_at). Editing a row breaks
its own hash; deleting one breaks the next row's link (or, at a timeline's end, the
incident's `last_seq`). `verify_chains` walks both and names every break.

A chain anyone can recompute proves nothing against someone who rewrites every later
row too, so the head it reports (and the signed KPI report carries) is an anchor: an
auditor who kept one checks later that the row it names still has that hash.

The canonical form below is frozen (v1): changing it breaks every stored chain.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import Connection, text

GENESIS = "0" * 64
VERSION = "pantau-chain-v1"


def _value(v: object) -> object:
    if isinstance(v, datetime):
        if v.tzinfo is None:  # SQLite hands back naive UTC
            v = v.replace(tzinfo=UTC)
        return v.astimezone(UTC).isoformat(timespec="microseconds")
    return v


def link(prev_hash: str, fields: Sequence[object]) -> str:
    """The hash of one row: its predecessor's hash and its fields, canonically."""
    body = json.dumps([VERSION, prev_hash, *(_value(f) for f in fields)], ensure_ascii=False)
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def audit_fields(
    *,
    at: datetime,
    actor: str,
    role: str,
    action: str,
    incident_id: int | None,
    outcome: str,
    detail: str,
) -> tuple[object, ...]:
    return (at, actor, role, action, incident_id, outcome, detail)


def event_fields(
    *,
    seq: int,
    at: datetime,
    recorded_at: datetime,
    kind: str,
    from_state: str | None,
    to_state: str,
    actor: str,
    reason: str,
) -> tuple[object, ...]:
    return (seq, at, recorded_at, str(kind), from_state, to_state, actor, reason)


def timeline_genesis(rule_id: str, zone_id: str, hazard: str, opened_at: datetime) -> str:
    """Where an incident's timeline starts: its identity, so a timeline moved to another
    incident (or an edited identity) breaks the first link."""
    return link(GENESIS, ("timeline", rule_id, zone_id, str(hazard), opened_at))


@dataclass(frozen=True, slots=True)
class Break:
    """One place where a chain does not hold."""

    table: str  # "audit_log" or "incident_events"
    kind: str  # "altered": the row's fields do not give its hash; "missing": rows gone
    row_id: int | None  # the altered row; for "missing", the first row after the gap
    incident_id: int | None
    detail: str

    def __str__(self) -> str:
        return f"{self.table}: {self.kind}: {self.detail}"


@dataclass
class ChainReport:
    audit_rows: int = 0
    events: int = 0
    incidents: int = 0
    audit_head: tuple[int, str] | None = None  # (id, hash) of the newest audit row
    # Incident id -> (seq, hash) of its newest event: with audit_head, the anchor.
    timeline_heads: dict[int, tuple[int, str]] = field(default_factory=dict)
    breaks: list[Break] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.breaks

    def timelines_digest(self) -> str:
        """One hash over every timeline head, to quote in a report."""
        heads = [[i, s, h] for i, (s, h) in sorted(self.timeline_heads.items())]
        return hashlib.sha256(json.dumps(heads).encode()).hexdigest()

    def anchor(self) -> dict[str, object]:
        return {
            "audit_head": None
            if self.audit_head is None
            else {"id": self.audit_head[0], "hash": self.audit_head[1]},
            "timelines_digest": self.timelines_digest(),
            "incidents": self.incidents,
        }


def verify_audit(
    rows: Iterable[Sequence[object]], report: ChainReport, start: str = GENESIS
) -> None:
    """rows: (id, prev_hash, row_hash, at, actor, role, action, incident_id, outcome,
    detail) ordered by id. start: the genesis, or after an explicit prune the hash of the
    newest row it deleted."""
    prev_id: int | None = None
    prev_hash = start
    for row in rows:
        rid, stored_prev, stored = int(row[0]), str(row[1]), str(row[2])  # type: ignore[call-overload]
        report.audit_rows += 1
        if stored_prev != prev_hash:
            after = "the start" if prev_id is None else f"id {prev_id}"
            report.breaks.append(
                Break(
                    "audit_log",
                    "missing",
                    rid,
                    None,
                    f"row(s) missing between {after} and id {rid}: id {rid} "
                    "does not link to the row before it",
                )
            )
        if link(stored_prev, row[3:]) != stored:
            report.breaks.append(
                Break("audit_log", "altered", rid, None, f"row id {rid} was altered")
            )
        prev_id, prev_hash = rid, stored
    if prev_id is not None:
        report.audit_head = (prev_id, prev_hash)


@dataclass(frozen=True, slots=True)
class _Incident:
    id: int
    genesis: str
    last_seq: int


def verify_timeline(
    incident: _Incident, events: Sequence[Sequence[object]], report: ChainReport
) -> None:
    """events: (id, prev_hash, row_hash, seq, at, recorded_at, kind, from_state,
    to_state, actor, reason) ordered by seq."""
    report.incidents += 1
    prev_hash, prev_seq = incident.genesis, 0
    iid = incident.id
    for ev in events:
        eid, stored_prev, stored = int(ev[0]), str(ev[1]), str(ev[2])  # type: ignore[call-overload]
        seq = int(ev[3])  # type: ignore[call-overload]
        report.events += 1
        if stored_prev != prev_hash or seq != prev_seq + 1:
            gap = f"seq {prev_seq + 1}..{seq - 1}" if seq > prev_seq + 1 else "an event"
            report.breaks.append(
                Break(
                    "incident_events",
                    "missing",
                    eid,
                    iid,
                    f"incident {iid}: {gap} missing before seq {seq} (event id {eid})"
                    if seq > prev_seq + 1 or prev_seq > 0
                    else f"incident {iid}: event id {eid} (seq {seq}) does not link to "
                    "the incident's identity",
                )
            )
        if link(stored_prev, ev[3:]) != stored:
            report.breaks.append(
                Break(
                    "incident_events",
                    "altered",
                    eid,
                    iid,
                    f"incident {iid}: event id {eid} (seq {seq}) was altered",
                )
            )
        prev_hash, prev_seq = stored, seq
    if prev_seq < incident.last_seq:
        report.breaks.append(
            Break(
                "incident_events",
                "missing",
                None,
                iid,
                f"incident {iid}: events seq {prev_seq + 1}..{incident.last_seq} missing "
                "at the end of the timeline",
            )
        )
    if prev_seq:
        report.timeline_heads[iid] = (prev_seq, prev_hash)


AUDIT_SQL = (
    "SELECT id, prev_hash, row_hash, at, actor, role, action, incident_id, outcome, detail "
    "FROM audit_log ORDER BY id"
)
INCIDENTS_SQL = (
    "SELECT id, rule_id, zone_id, hazard, opened_at, last_seq FROM incidents ORDER BY id"
)
EVENTS_SQL = (
    "SELECT incident_id, id, prev_hash, row_hash, seq, at, recorded_at, kind, from_state, "
    "to_state, actor, reason FROM incident_events ORDER BY incident_id, seq"
)


def _utc(v: object) -> datetime:
    """A timestamp as the driver returns it in a raw query (SQLite: text)."""
    if isinstance(v, datetime):
        return v if v.tzinfo is not None else v.replace(tzinfo=UTC)
    return datetime.fromisoformat(str(v)).replace(tzinfo=UTC)


def _row_times(row: Sequence[object], at: Sequence[int]) -> list[object]:
    out = list(row)
    for i in at:
        out[i] = _utc(out[i])
    return out


def verify_chains(connection: Connection) -> ChainReport:
    """Walk the audit log and every incident timeline (read-only, one pass each)."""
    report = ChainReport()
    # An explicit, audited prune (`pantau store prune`) deleted the oldest rows: what is
    # left chains from the newest row it deleted, which the prune record keeps.
    start = connection.execute(
        text("SELECT chain_from FROM audit_prunes ORDER BY id DESC LIMIT 1")
    ).scalar()
    audit = connection.execute(text(AUDIT_SQL))
    verify_audit((_row_times(r, (3,)) for r in audit), report, start or GENESIS)
    incidents = {
        int(r[0]): _Incident(int(r[0]), timeline_genesis(r[1], r[2], r[3], _utc(r[4])), int(r[5]))
        for r in connection.execute(text(INCIDENTS_SQL))
    }
    current: int | None = None
    batch: list[Sequence[object]] = []
    seen: set[int] = set()

    def flush() -> None:
        if current is not None:
            seen.add(current)
            verify_timeline(incidents[current], batch, report)

    for r in connection.execute(text(EVENTS_SQL)):
        iid = int(r[0])
        if iid != current:
            flush()
            current, batch = iid, []
        batch.append(_row_times(r[1:], (4, 5)))
    flush()
    for iid in sorted(incidents.keys() - seen):
        verify_timeline(incidents[iid], [], report)
    return report


def check_anchor(
    report: ChainReport, anchor_audit: tuple[int, str], connection: Connection
) -> None:
    """An auditor's kept audit head must still be in the chain with the same hash."""
    aid, ahash = anchor_audit
    row = connection.execute(
        text("SELECT row_hash FROM audit_log WHERE id = :id"), {"id": aid}
    ).first()
    if row is None or str(row[0]) != ahash:
        report.breaks.append(
            Break(
                "audit_log",
                "anchor",
                aid,
                None,
                f"the anchored row id {aid} "
                + ("is gone" if row is None else "has another hash than the anchor"),
            )
        )
