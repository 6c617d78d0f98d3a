"""Migration 0008_open_government on a database that already holds rows: it chains
them exactly as the application would have (the same hashes), keeps the audit log
append-only, and goes down and up again cleanly (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import sessionmaker

from api.audit import AuditLog, Outcome
from pantau.clock import ManualClock
from pantau.incidents import WorkflowState
from pantau.store import IncidentStore, load_sla_policy, make_engine, migrate
from pantau.store.chain import verify_chains
from pantau.store.migrate import downgrade
from tests.api.conftest import flood

T0 = datetime(2026, 12, 1, 8, 0, 0, 123456, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/pantau.db"
    return str(request.getfixturevalue("postgres_url"))


def _hashes(engine: Engine) -> list[tuple[str, int, str, str]]:
    with engine.connect() as conn:
        audit = conn.execute(text("SELECT id, prev_hash, row_hash FROM audit_log ORDER BY id"))
        events = conn.execute(
            text("SELECT id, prev_hash, row_hash FROM incident_events ORDER BY id")
        )
        return [("audit", *r) for r in audit] + [("event", *r) for r in events]


def test_existing_rows_are_chained_as_the_application_chains_them(url: str) -> None:
    engine = make_engine(url)
    migrate(engine)
    clock = ManualClock(T0)
    store = IncidentStore(engine, load_sla_policy(), clock)
    audit = AuditLog(sessionmaker(engine), clock)
    a = store.apply(flood("kel-cimone", T0)).incident
    b = store.apply(flood("kel-sukasari", T0 + timedelta(minutes=3))).incident
    assert a is not None and b is not None
    clock.set(T0 + timedelta(minutes=7, microseconds=5))
    store.transition(a.id, WorkflowState.ACKNOWLEDGED, "operator:ani", "on it")
    audit.record(None, "login", Outcome.DENIED, "bad password", subject="ani")
    audit.record(None, "login", Outcome.DENIED, "bad password, again", subject="ani")
    with engine.connect() as conn:
        assert verify_chains(conn).ok
    written = _hashes(engine)
    assert len(written) > 8 and all(len(h) == 64 for *_, h in written)

    downgrade(engine, "0007")
    with engine.connect() as conn:
        columns = {c[0] for c in conn.execute(text("SELECT * FROM audit_log")).cursor.description}
    assert "row_hash" not in columns
    migrate(engine)  # backfills
    assert _hashes(engine) == written
    with engine.connect() as conn:
        report = verify_chains(conn)
    assert report.ok and report.audit_rows == 2 and report.incidents == 2
    # Still append-only after the migration lifted and restored the triggers.
    for statement in ("UPDATE audit_log SET detail = 'x'", "DELETE FROM audit_log"):
        with pytest.raises(Exception, match="append-only"), engine.begin() as conn:
            conn.execute(text(statement))
    # And the application carries on the chain.
    audit.record(None, "login", Outcome.DENIED, "third", subject="ani")
    with engine.connect() as conn:
        assert verify_chains(conn).audit_rows == 3 and verify_chains(conn).ok
    store.close()
    engine.dispose()
