"""timeline events of kind `note` and `assignment`: the operations page's notes and
crew (re)assignments

Revision ID: 0009
Revises: 0008_open_government
Create Date: 2026-12-06

An operator's note and a crew assigned or reassigned without a workflow move go on the
incident's timeline (and so on the live stream and in the audit trail); the CHECK on
incident_events.kind gains 'note' and 'assignment'. api_request_keys keeps the answers
to writes sent with an Idempotency-Key (a crew phone's actions queued offline are sent
again when the signal returns; each happens once).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008_open_government"
branch_labels: str | None = None
depends_on: str | None = None

BEFORE = ("condition", "workflow", "severity", "sla", "report")
AFTER = (*BEFORE, "note", "assignment")
NAME = "ck_incident_events_kind"  # 0001's `kind` under the naming convention


def _check(kinds: tuple[str, ...]) -> str:
    return "kind IN ({})".format(", ".join(f"'{k}'" for k in kinds))


def _replace_check(kinds: tuple[str, ...]) -> None:
    if op.get_bind().dialect.name == "sqlite":
        # SQLite cannot alter a CHECK: batch mode copies the table with the new one.
        with op.batch_alter_table("incident_events", recreate="always") as batch:
            batch.drop_constraint(op.f(NAME), type_="check")
            batch.create_check_constraint(op.f(NAME), _check(kinds))
    else:
        op.drop_constraint(op.f(NAME), "incident_events", type_="check")
        op.create_check_constraint(op.f(NAME), "incident_events", _check(kinds))


def upgrade() -> None:
    _replace_check(AFTER)
    op.create_table(
        "api_request_keys",
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("request", sa.String(255), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_api_request_keys")),
    )
    op.create_index(
        op.f("ix_api_request_keys_created_at"), "api_request_keys", ["created_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_api_request_keys_created_at"), table_name="api_request_keys")
    op.drop_table("api_request_keys")
    op.execute("DELETE FROM incident_events WHERE kind IN ('note', 'assignment')")
    _replace_check(BEFORE)
