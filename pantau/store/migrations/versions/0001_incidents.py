"""incidents and their timeline

Revision ID: 0001
Revises:
Create Date: 2026-11-27

Values are spelled out here, not imported from the enums: a migration describes the
schema as it was at this revision.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

HAZARDS = (
    "flood",
    "heavy_rain",
    "pump_failure",
    "traffic_jam",
    "road_damage",
    "sensor_offline",
    "sensor_stuck",
    "battery_low",
    "data_quality",
    "camera_fault",
)
ZONE_LEVELS = ("kota", "kecamatan", "kelurahan", "catchment", "corridor")
CONDITION_STATES = ("pending", "active", "recovering", "cleared", "no_data")
WORKFLOW_STATES = (
    "open",
    "acknowledged",
    "dispatched",
    "on_site",
    "resolved",
    "closed",
    "suppressed",
)
EVENT_KINDS = ("condition", "workflow", "severity", "sla")
# An incident is active for its dedup key until it is resolved or closed (suppressed
# still counts: suppression silences a key, it must not spawn a new incident).
ACTIVE_WHERE = "workflow_state NOT IN ('closed', 'resolved')"


def _one_of(column: str, values: tuple[str, ...]) -> sa.CheckConstraint:
    listed = ", ".join(f"'{v}'" for v in values)
    return sa.CheckConstraint(f"{column} IN ({listed})", name=column)


def _ts(name: str, nullable: bool = False) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "incidents",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("rule_id", sa.String(128), nullable=False),
        sa.Column("zone_id", sa.String(128), nullable=False),
        sa.Column("hazard", sa.String(32), nullable=False),
        sa.Column("zone_level", sa.String(32), nullable=False),
        sa.Column("agency", sa.String(64), nullable=True),
        sa.Column("condition_state", sa.String(32), nullable=False),
        _ts("condition_at"),
        sa.Column("workflow_state", sa.String(32), nullable=False),
        sa.Column("severity_current", sa.Integer, nullable=False),
        sa.Column("severity_max", sa.Integer, nullable=False),
        sa.Column("evidence_device_ids", sa.Text, nullable=False),
        sa.Column("evidence_metric", sa.String(64), nullable=False),
        sa.Column("evidence_peak_value", sa.Float, nullable=False),
        _ts("evidence_first_at"),
        _ts("evidence_last_at"),
        _ts("opened_at"),
        _ts("sla_ack_due"),
        _ts("sla_resolve_due"),
        _ts("acknowledged_at", nullable=True),
        _ts("resolved_at", nullable=True),
        _ts("closed_at", nullable=True),
        sa.Column("reopen_count", sa.Integer, nullable=False),
        sa.Column("assignee_crew_id", sa.String(64), nullable=True),
        sa.Column("last_seq", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_incidents"),
        _one_of("hazard", HAZARDS),
        _one_of("zone_level", ZONE_LEVELS),
        _one_of("condition_state", CONDITION_STATES),
        _one_of("workflow_state", WORKFLOW_STATES),
        sa.CheckConstraint("severity_current BETWEEN 1 AND 4", name="severity_current"),
        sa.CheckConstraint("severity_max BETWEEN 1 AND 4", name="severity_max"),
        sa.CheckConstraint("severity_max >= severity_current", name="severity_max_ge_current"),
        sa.CheckConstraint("reopen_count >= 0", name="reopen_count"),
    )
    op.create_index(
        "uq_incidents_active_key",
        "incidents",
        ["rule_id", "zone_id", "hazard"],
        unique=True,
        postgresql_where=sa.text(ACTIVE_WHERE),
        sqlite_where=sa.text(ACTIVE_WHERE),
    )
    op.create_index(
        "ix_incidents_zone_id_workflow_state", "incidents", ["zone_id", "workflow_state"]
    )
    op.create_table(
        "incident_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("incident_id", sa.Integer, nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        _ts("at"),
        _ts("recorded_at"),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("from_state", sa.String(32), nullable=True),
        sa.Column("to_state", sa.String(32), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_incident_events"),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name="fk_incident_events_incident_id_incidents",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint("incident_id", "seq", name="uq_incident_events_incident_id_seq"),
        _one_of("kind", EVENT_KINDS),
    )


def downgrade() -> None:
    op.drop_table("incident_events")
    op.drop_index("ix_incidents_zone_id_workflow_state", table_name="incidents")
    op.drop_index("uq_incidents_active_key", table_name="incidents")
    op.drop_table("incidents")
