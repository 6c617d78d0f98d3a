"""login failures and rate-limit hits shared by API replicas

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06

Several API replicas behind a load balancer must count failed logins and citizen
reports together, or each replica multiplies the allowance (issue 19). Keys are keyed
hashes: no username or client address is stored in clear.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "api_login_failures",
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("last", sa.Float, nullable=False),
        sa.Column("audited", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_api_login_failures"),
    )
    op.create_index("ix_api_login_failures_last", "api_login_failures", ["last"])
    op.create_table(
        "api_rate_hits",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("bucket", sa.String(64), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_api_rate_hits"),
    )
    op.create_index("ix_api_rate_hits_bucket_at", "api_rate_hits", ["bucket", "at"])


def downgrade() -> None:
    op.drop_index("ix_api_rate_hits_bucket_at", "api_rate_hits")
    op.drop_table("api_rate_hits")
    op.drop_index("ix_api_login_failures_last", "api_login_failures")
    op.drop_table("api_login_failures")
