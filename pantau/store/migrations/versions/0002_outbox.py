"""outbox for incident events and alerts; routed crew and escalation level on incidents

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27

Messages the rules service owes the broker (and the chat webhooks) are written in the
same transaction as the incident change they report, so a crash between the commit and
the broker's PUBACK loses nothing: unsent rows are published at the next start.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

OUTBOX_KINDS = ("event", "alert", "escalation")
NOTIFY_STATES = ("pending", "sent", "failed", "skipped")


def _ts(name: str, nullable: bool = False) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _one_of(column: str, values: tuple[str, ...]) -> sa.CheckConstraint:
    listed = ", ".join(f"'{v}'" for v in values)
    return sa.CheckConstraint(f"{column} IN ({listed})", name=column)


def upgrade() -> None:
    # Plain ADD COLUMN works on both engines (no SQLite table rebuild, which would have
    # to carry the partial unique index across).
    op.add_column("incidents", sa.Column("routed_crew_id", sa.String(64), nullable=True))
    op.add_column(
        "incidents",
        sa.Column("escalation_level", sa.Integer, nullable=False, server_default="0"),
    )
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("incident_id", sa.Integer, nullable=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("topic", sa.String(255), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("agency", sa.String(64), nullable=True),
        sa.Column("crew_id", sa.String(64), nullable=True),
        _ts("created_at"),
        _ts("published_at", nullable=True),
        sa.Column("notify_state", sa.String(32), nullable=True),
        sa.Column("notify_attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("notify_error", sa.Text, nullable=True),
        _ts("notified_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_outbox"),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name="fk_outbox_incident_id_incidents",
            ondelete="CASCADE",
        ),
        _one_of("kind", OUTBOX_KINDS),
        _one_of("notify_state", NOTIFY_STATES),
    )
    op.create_index("ix_outbox_published_at", "outbox", ["published_at"])
    op.create_index("ix_outbox_notify_state", "outbox", ["notify_state"])


def downgrade() -> None:
    op.drop_index("ix_outbox_notify_state", table_name="outbox")
    op.drop_index("ix_outbox_published_at", table_name="outbox")
    op.drop_table("outbox")
    with op.batch_alter_table("incidents") as batch:
        batch.drop_column("escalation_level")
        batch.drop_column("routed_crew_id")
