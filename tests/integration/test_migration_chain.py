"""Upgrades migrate: from every earlier Alembic revision, with rows in every table that
revision has, up to head, on SQLite and PostgreSQL; every row and value survives, and
the head's models read the rows (columns added later get their defaults)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import (
    Boolean,
    DateTime,
    Float,
    Integer,
    LargeBinary,
    MetaData,
    RowMapping,
    String,
    Table,
    Text,
    create_engine,
    insert,
    select,
)
from sqlalchemy.orm import Session

from pantau.store.api_tables import ApiKeyRow, AuditRow, CitizenReportRow, UserRow
from pantau.store.migrate import VERSION_TABLE, alembic_config, make_engine, migrate
from pantau.store.models import IncidentEventRow, IncidentRow, OutboxRow

pytestmark = pytest.mark.integration

WHEN = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
# Values the CHECK constraints and the models' types accept; anything else is filled
# from the column's type.
VALID: dict[tuple[str, str], object] = {
    ("incidents", "hazard"): "flood",
    ("incidents", "zone_level"): "kelurahan",
    ("incidents", "condition_state"): "active",
    ("incidents", "workflow_state"): "acknowledged",
    ("incidents", "severity_current"): 2,
    ("incidents", "severity_max"): 3,
    ("incidents", "reopen_count"): 0,
    ("incidents", "evidence_device_ids"): '["wl-1", "rg-2"]',
    ("incident_events", "kind"): "workflow",
    ("outbox", "kind"): "alert",
    ("outbox", "notify_state"): "sent",
    ("outbox", "payload"): '{"message_id": 1}',
    ("api_users", "role"): "crew",
    ("api_users", "zones"): '["kec-karawaci"]',
    ("api_keys", "role"): "service",
    ("api_keys", "zones"): "[]",
    ("audit_log", "role"): "operator",
    ("audit_log", "outcome"): "allowed",
    ("citizen_reports", "outcome"): "opened",
    ("citizen_reports", "category"): "banjir",
    ("citizen_reports", "rating"): 4,
}
ORDER = ("incidents", "incident_events", "outbox", "api_users", "api_keys", "audit_log")


def _revisions() -> list[str]:
    script = ScriptDirectory.from_config(alembic_config())
    head = script.get_current_head()
    return [r.revision for r in reversed(list(script.walk_revisions())) if r.revision != head]


def _value(table: str, column: str, type_: object, row: int) -> object:
    if (table, column) in VALID:
        return VALID[(table, column)]
    if column.endswith("incident_id"):
        return row
    if isinstance(type_, Boolean):
        return True
    if isinstance(type_, Integer):
        return 10 * row + 1
    if isinstance(type_, Float):
        return 1.25 * row
    if isinstance(type_, DateTime):
        return WHEN
    if isinstance(type_, LargeBinary):
        return b"\xff\xd8 photo " + bytes([row])
    if isinstance(type_, String | Text):
        return f"{column}-{row}"
    raise AssertionError(f"no test value for {table}.{column} ({type_!r})")


def _fill(url: str) -> dict[str, list[dict[str, object]]]:
    """Two rows in every table of the database as it is now; the rows written."""
    engine = create_engine(url)
    meta = MetaData()
    meta.reflect(engine)
    written: dict[str, list[dict[str, object]]] = {}
    names = sorted(meta.tables, key=lambda n: ORDER.index(n) if n in ORDER else len(ORDER))
    with engine.begin() as conn:
        for name in names:
            if name == VERSION_TABLE:
                continue
            table = meta.tables[name]
            rows = [
                {
                    c.name: row if c.name == "id" else _value(name, c.name, c.type, row)
                    for c in table.columns
                }
                for row in (1, 2)
            ]
            conn.execute(insert(table), rows)
            written[name] = rows
    engine.dispose()
    return written


def _key(table: Table, row: RowMapping) -> tuple[object, ...]:
    """A row's identity: its primary key (`id`, or (kind, key) for leases...)."""
    return tuple(row[c.name] for c in table.primary_key.columns)


def _primary_keys(url: str) -> dict[str, list[str]]:
    engine = create_engine(url)
    meta = MetaData()
    meta.reflect(engine)
    engine.dispose()
    return {name: [c.name for c in t.primary_key.columns] for name, t in meta.tables.items()}


def _read(url: str) -> dict[str, dict[tuple[object, ...], dict[str, object]]]:
    engine = create_engine(url)
    meta = MetaData()
    meta.reflect(engine)
    with engine.connect() as conn:
        out = {
            name: {_key(t, r._mapping): dict(r._mapping) for r in conn.execute(select(t))}
            for name, t in meta.tables.items()
            if name != VERSION_TABLE
        }
    engine.dispose()
    return out


def _same(a: object, b: object) -> bool:
    if isinstance(a, datetime) and isinstance(b, datetime):
        return (a if a.tzinfo else a.replace(tzinfo=UTC)) == (
            b if b.tzinfo else b.replace(tzinfo=UTC)
        )
    return a == b


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/old.db"
    else:
        yield request.getfixturevalue("postgres_url")


@pytest.mark.parametrize("revision", _revisions())
def test_upgrade_from_an_earlier_revision_keeps_every_row(url: str, revision: str) -> None:
    migrate(url, revision)
    written = _fill(url)
    keys = _primary_keys(url)
    assert "incidents" in written and "incident_events" in written
    migrate(url)  # to head
    after = _read(url)
    for table, rows in written.items():
        for row in rows:
            got = after[table][tuple(row[c] for c in keys[table])]
            for column, value in row.items():
                assert _same(got[column], value), (table, column, got[column], value)
    # The head's models read every row, new columns included.
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            for model in (
                IncidentRow,
                IncidentEventRow,
                OutboxRow,
                UserRow,
                ApiKeyRow,
                AuditRow,
                CitizenReportRow,
            ):
                if model.__tablename__ in written:
                    assert len(session.scalars(select(model)).all()) == 2, model
    finally:
        engine.dispose()
