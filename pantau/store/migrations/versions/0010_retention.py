"""audit trail retention: `audit_prunes`, and an audit log that only an explicit prune
past the retention can shorten

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06

The audit log stays append-only (no UPDATE, no TRUNCATE), except that a DELETE of a row
older than the newest `audit_prunes.before` is let through. `pantau store prune`
records that row (who, when, up to when, how much) in the same transaction as it
deletes, and refuses a bound younger than the configured retention. `audit_prunes`
itself is append-only.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | None = None
depends_on: str | None = None

PG_FUNCTION = """
CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' AND OLD.at < (SELECT max(before) FROM audit_prunes) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit_log is append-only';
END;
$$ LANGUAGE plpgsql
"""
PG_FUNCTION_BEFORE = """
CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END;
$$ LANGUAGE plpgsql
"""
SQLITE_GUARDED_DELETE = (
    "CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log "
    "WHEN (SELECT max(before) FROM audit_prunes) IS NULL "
    "OR OLD.at >= (SELECT max(before) FROM audit_prunes) "
    "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END"
)
SQLITE_DELETE_BEFORE = (
    "CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log "
    "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END"
)


def upgrade() -> None:
    op.create_table(
        "audit_prunes",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("before", sa.DateTime(timezone=True), nullable=False),
        sa.Column("incidents", sa.Integer, nullable=False),
        sa.Column("audit_rows", sa.Integer, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        # row_hash of the newest audit row the prune deleted: the hash chain of what is
        # left starts there (pantau.store.chain.verify_chains), not at the genesis.
        sa.Column("chain_from", sa.String(64), nullable=True),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_FUNCTION)
        op.execute(
            "CREATE FUNCTION audit_prunes_append_only() RETURNS trigger AS $$ BEGIN "
            "RAISE EXCEPTION 'audit_prunes is append-only'; END; $$ LANGUAGE plpgsql"
        )
        op.execute(
            "CREATE TRIGGER audit_prunes_append_only BEFORE UPDATE OR DELETE OR TRUNCATE "
            "ON audit_prunes FOR EACH STATEMENT EXECUTE FUNCTION audit_prunes_append_only()"
        )
    else:
        op.execute("DROP TRIGGER audit_log_no_delete")
        op.execute(SQLITE_GUARDED_DELETE)
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER audit_prunes_no_{verb.lower()} BEFORE {verb} ON audit_prunes "
                "BEGIN SELECT RAISE(ABORT, 'audit_prunes is append-only'); END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_FUNCTION_BEFORE)
        op.execute("DROP TRIGGER audit_prunes_append_only ON audit_prunes")
        op.execute("DROP FUNCTION audit_prunes_append_only()")
    else:
        op.execute("DROP TRIGGER audit_log_no_delete")
        op.execute(SQLITE_DELETE_BEFORE)
    op.drop_table("audit_prunes")
