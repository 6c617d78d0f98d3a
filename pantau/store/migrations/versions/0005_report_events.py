"""timeline events of kind `report`: a citizen report attached to an incident

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06

A report that corroborates an incident goes on its timeline (and so on the live
stream), so the operator is told; the CHECK on incident_events.kind gains 'report'.
"""

from __future__ import annotations

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None

BEFORE = ("condition", "workflow", "severity", "sla")
AFTER = (*BEFORE, "report")
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


def downgrade() -> None:
    op.execute("DELETE FROM incident_events WHERE kind = 'report'")
    _replace_check(BEFORE)
