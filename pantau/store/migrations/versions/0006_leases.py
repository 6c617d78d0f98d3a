"""leases and replica heartbeats (several replicas of a stage); outbox claims

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06

Replicas of a stage share work through rows here (pantau/store/leases.py): one lease
per unit of work (a rule partition, a camera, ...), its epoch raised at every change of
owner so a replica that lost a lease is fenced off. Outbox rows gain a claim (owner and
expiry, one for the broker and one for the webhooks) so one replica at a time sends
each, and a dead replica's claims run out for a survivor.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None


def _ts(name: str, nullable: bool = False) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "leases",
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("owner", sa.String(255), nullable=False),
        sa.Column("epoch", sa.BigInteger, nullable=False),
        _ts("expires_at"),
        sa.PrimaryKeyConstraint("kind", "key", name="pk_leases"),
    )
    op.create_table(
        "replicas",
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        _ts("seen_at"),
        sa.PrimaryKeyConstraint("kind", "name", name="pk_replicas"),
    )
    # Plain ADD COLUMN on both engines (no SQLite table rebuild).
    op.add_column("outbox", sa.Column("publish_owner", sa.String(255), nullable=True))
    op.add_column("outbox", _ts("publish_until", nullable=True))
    op.add_column("outbox", sa.Column("notify_owner", sa.String(255), nullable=True))
    op.add_column("outbox", _ts("notify_until", nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("notify_until")
        batch.drop_column("notify_owner")
        batch.drop_column("publish_until")
        batch.drop_column("publish_owner")
    op.drop_table("replicas")
    op.drop_table("leases")
