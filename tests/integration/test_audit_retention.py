"""The audit trail is evidence: incidents, timelines and the audit log are never pruned
before their retention (5 years), and pruning past it is an explicit act recorded in
the audit log, on SQLite and PostgreSQL. The audit log refuses any other DELETE."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from pantau.city import load_agencies
from pantau.clock import ManualClock
from pantau.devices import default_config_dir
from pantau.errors import UserError
from pantau.incidents import ConditionChange, ConditionState, DedupKey, Evidence, Hazard, Severity
from pantau.incidents import WorkflowState as W
from pantau.store import IncidentStore, load_sla_policy, migrate
from pantau.store.api_tables import AuditPruneRow, AuditRow
from pantau.store.auditlog import append_audit
from pantau.store.chain import verify_chains
from pantau.store.migrate import make_engine
from pantau.store.models import IncidentEventRow, IncidentRow
from pantau.store.placement import placement_by_zone, zone_level_by_prefix
from pantau.store.prune import prune

pytestmark = pytest.mark.integration

NOW = datetime(2026, 12, 6, 3, 0, tzinfo=UTC)
_, HAZARD_AGENCY = load_agencies(default_config_dir() / "agencies.yaml")


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    u = (
        f"sqlite:///{tmp_path}/p.db"
        if request.param == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    migrate(u)
    yield u


def _incident(store: IncidentStore, clock: ManualClock, zone: str, at: datetime, end: bool) -> int:
    clock.set(at)
    key = DedupKey("flood-x", zone, Hazard.FLOOD)
    ev = Evidence(
        device_ids=("wl-1",), metric="water_level", peak_value=130.0, first_at=at, last_at=at
    )
    up = store.apply(
        ConditionChange(
            key=key,
            state=ConditionState.ACTIVE,
            severity=Severity.WASPADA,
            at=at,
            evidence=ev,
            reason="high",
        )
    )
    assert up.incident is not None
    if end:
        clock.set(at + timedelta(hours=2))
        store.transition(up.incident.id, W.RESOLVED, "crew:x", "fixed: ok", at + timedelta(hours=2))
    return up.incident.id


def _audit(engine: object, at: datetime, action: str) -> None:
    with engine.begin() as conn:  # type: ignore[attr-defined]
        append_audit(
            conn,
            at=at,
            actor="operator:ani",
            role="operator",
            action=action,
            incident_id=None,
            outcome="allowed",
            detail="{}",
        )


def test_prune_only_past_retention_and_recorded(url: str) -> None:
    clock = ManualClock(NOW)
    store = IncidentStore(
        url, load_sla_policy(), clock, place=placement_by_zone(zone_level_by_prefix, HAZARD_AGENCY)
    )
    old_ended = _incident(store, clock, "kel-sukasari", datetime(2019, 3, 1, tzinfo=UTC), end=True)
    old_open = _incident(store, clock, "kel-babakan", datetime(2019, 4, 1, tzinfo=UTC), end=False)
    recent = _incident(store, clock, "kel-cikokol", datetime(2025, 6, 1, tzinfo=UTC), end=True)
    store.close()
    engine = make_engine(url)
    try:
        _audit(engine, datetime(2019, 3, 2, tzinfo=UTC), "incident.acknowledge")
        _audit(engine, datetime(2024, 3, 2, tzinfo=UTC), "incident.resolve")
        # The audit log refuses a plain DELETE, even of a seven-year-old row.
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
            conn.execute(text("DELETE FROM audit_log"))
        # Younger than five years: refused, nothing deleted.
        with pytest.raises(UserError, match="kept 5 years: --before may be at most 2021-12-06"):
            prune(
                engine,
                before=datetime(2022, 1, 1, tzinfo=UTC),
                now=NOW,
                keep_years=5,
                actor="cli:x",
                reason="tidy",
            )
        done = prune(
            engine,
            before=datetime(2020, 1, 1, tzinfo=UTC),
            now=NOW,
            keep_years=5,
            actor="cli:root",
            reason="5-year retention",
        )
        assert (done.incidents, done.audit_rows) == (1, 1)
        with engine.connect() as conn:
            ids = set(conn.scalars(select(IncidentRow.id)))
            assert ids == {old_open, recent}  # an incident still open is never pruned
            assert (
                conn.scalar(
                    select(func.count())
                    .select_from(IncidentEventRow)
                    .where(IncidentEventRow.incident_id == old_ended)
                )
                == 0
            )
            assert (
                conn.scalar(
                    select(func.count())
                    .select_from(IncidentEventRow)
                    .where(IncidentEventRow.incident_id == recent)
                )
                or 0
            ) > 0
            actions = list(conn.scalars(select(AuditRow.action).order_by(AuditRow.at)))
            assert actions == ["incident.resolve", "store.prune"]
            (record,) = conn.execute(select(AuditPruneRow)).all()
            assert (record.actor, record.incidents, record.audit_rows) == ("cli:root", 1, 1)
            # The hash chains of what is left still verify: the audit log's goes on from
            # the newest row the prune deleted, and the prune's own row is chained.
            report = verify_chains(conn)
            assert report.ok, report.breaks
            assert report.audit_rows == 2
        # After the prune, younger audit rows are as undeletable as before; the record too.
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
            conn.execute(text("DELETE FROM audit_log"))
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
            conn.execute(text("DELETE FROM audit_prunes"))
    finally:
        engine.dispose()
