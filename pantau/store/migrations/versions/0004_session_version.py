"""session version on API users: bumping it revokes every token issued before

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01

Tokens carry the version they were issued at; the API refuses a token whose version is
no longer the user's (deactivation, role or scope change, "log out everywhere").
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("api_users") as batch:
        batch.add_column(
            sa.Column("session_version", sa.Integer, nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("api_users") as batch:
        batch.drop_column("session_version")
