"""open government: hash-chained audit log and timelines; report tracking and ratings

Revision ID: 0008_open_government
Revises: 0007
Create Date: 2026-12-06

audit_log and incident_events gain `prev_hash` and `row_hash` (pantau.store.chain);
the rows already there are chained here, in id (audit) and seq (timeline) order, with
the audit log's append-only triggers lifted for that one UPDATE and put back.
citizen_reports gains the SHA-256 of the reporter's tracking token and the reporter's
one rating (1-5, optional comment) of the response.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from pantau.store.chain import GENESIS, audit_fields, event_fields, link, timeline_genesis

revision: str = "0008_open_government"
down_revision: str | None = "0007"
branch_labels: str | None = None
depends_on: str | None = None


def _hash_columns(table: str) -> None:
    with op.batch_alter_table(table) as batch:
        for name in ("prev_hash", "row_hash"):
            batch.add_column(sa.Column(name, sa.String(64), nullable=False, server_default=""))


def _utc(v: object) -> datetime:
    if isinstance(v, datetime):
        return v if v.tzinfo is not None else v.replace(tzinfo=UTC)
    return datetime.fromisoformat(str(v)).replace(tzinfo=UTC)


def _chain_audit(conn: sa.Connection) -> None:
    prev = GENESIS
    rows = conn.execute(
        sa.text(
            "SELECT id, at, actor, role, action, incident_id, outcome, detail "
            "FROM audit_log ORDER BY id"
        )
    ).all()
    for r in rows:
        fields = audit_fields(
            at=_utc(r[1]),
            actor=r[2],
            role=r[3],
            action=r[4],
            incident_id=r[5],
            outcome=r[6],
            detail=r[7],
        )
        h = link(prev, fields)
        conn.execute(
            sa.text("UPDATE audit_log SET prev_hash = :p, row_hash = :h WHERE id = :id"),
            {"p": prev, "h": h, "id": r[0]},
        )
        prev = h


def _chain_timelines(conn: sa.Connection) -> None:
    genesis = {
        r[0]: timeline_genesis(r[1], r[2], r[3], _utc(r[4]))
        for r in conn.execute(
            sa.text("SELECT id, rule_id, zone_id, hazard, opened_at FROM incidents")
        )
    }
    rows = conn.execute(
        sa.text(
            "SELECT id, incident_id, seq, at, recorded_at, kind, from_state, to_state, actor, "
            "reason FROM incident_events ORDER BY incident_id, seq"
        )
    ).all()
    current, prev = None, GENESIS
    for r in rows:
        if r[1] != current:
            current, prev = r[1], genesis[r[1]]
        fields = event_fields(
            seq=r[2],
            at=_utc(r[3]),
            recorded_at=_utc(r[4]),
            kind=r[5],
            from_state=r[6],
            to_state=r[7],
            actor=r[8],
            reason=r[9],
        )
        h = link(prev, fields)
        conn.execute(
            sa.text("UPDATE incident_events SET prev_hash = :p, row_hash = :h WHERE id = :id"),
            {"p": prev, "h": h, "id": r[0]},
        )
        prev = h


def _audit_triggers(enable: bool) -> None:
    if op.get_bind().dialect.name == "postgresql":
        verb = "ENABLE" if enable else "DISABLE"
        op.execute(f"ALTER TABLE audit_log {verb} TRIGGER audit_log_append_only")
    elif enable:
        op.execute(
            "CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log "
            "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END"
        )
    else:
        op.execute("DROP TRIGGER audit_log_no_update")


def upgrade() -> None:
    conn = op.get_bind()
    _audit_triggers(False)
    _hash_columns("audit_log")
    _chain_audit(conn)
    _audit_triggers(True)
    _hash_columns("incident_events")
    _chain_timelines(conn)
    with op.batch_alter_table("citizen_reports") as batch:
        batch.add_column(sa.Column("track_sha256", sa.String(64), nullable=True))
        batch.add_column(sa.Column("rating", sa.Integer, nullable=True))
        batch.add_column(sa.Column("rating_comment", sa.Text, nullable=True))
        batch.add_column(sa.Column("rated_at", sa.DateTime(timezone=True), nullable=True))
        batch.create_check_constraint(op.f("ck_citizen_reports_rating"), "rating BETWEEN 1 AND 5")
    op.create_index(
        "ix_citizen_reports_track_sha256", "citizen_reports", ["track_sha256"], unique=True
    )


def downgrade() -> None:
    op.drop_index("ix_citizen_reports_track_sha256", table_name="citizen_reports")
    with op.batch_alter_table("citizen_reports") as batch:
        batch.drop_constraint(op.f("ck_citizen_reports_rating"), type_="check")
        for name in ("rated_at", "rating_comment", "rating", "track_sha256"):
            batch.drop_column(name)
    with op.batch_alter_table("incident_events") as batch:
        batch.drop_column("row_hash")
        batch.drop_column("prev_hash")
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:  # batch mode copies the table, which would lose its triggers
        op.execute("DROP TRIGGER audit_log_no_delete")
    _audit_triggers(False)
    with op.batch_alter_table("audit_log") as batch:
        batch.drop_column("row_hash")
        batch.drop_column("prev_hash")
    _audit_triggers(True)
    if sqlite:
        op.execute(
            "CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log "
            "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END"
        )
