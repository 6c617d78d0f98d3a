"""The incident store on a real PostgreSQL: the private cluster the test run starts.

One fresh database per module (a unique name, created through the `postgres`
maintenance database and dropped afterwards); the tables are emptied before each test.
The core cases are the SQLite unit tests, imported so they run here against PostgreSQL;
the race tests are PostgreSQL's own: concurrent first ACTIVEs give exactly one incident.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import psycopg
import pytest
from alembic.script import ScriptDirectory
from psycopg import sql
from sqlalchemy import Engine, create_engine, inspect, text

from pantau.clock import ManualClock
from pantau.incidents import ConditionChange, DedupKey, Hazard, Severity
from pantau.local.postgres import Postgres
from pantau.store import IncidentStore, UpdateKind, load_sla_policy, migrate
from pantau.store.migrate import alembic_config
from tests.unit.test_store import (
    PLACE,
    T0,
    change,
    test_active_change_without_severity_is_rejected,
    test_awas_sla_from_policy,
    test_extra_zones_are_placed_by_a_zone_lookup,
    test_first_active_opens_an_incident_with_sla_due_times,
    test_invalid_transition_is_refused_with_a_reason,
    test_migrate_is_idempotent,
    test_migration_matches_models,
    test_no_data_and_unknown_keys,
    test_re_active_after_restart_updates_the_open_incident,
    test_recovering_then_cleared,
    test_reopen_counts_and_blocks_while_a_newer_incident_is_active,
    test_same_change_twice_changes_nothing,
    test_severity_rises_and_falls_and_max_is_kept,
    test_stale_change_is_ignored,
    test_suppressed_incident_still_dedupes,
    test_timeline_is_in_order_with_times_actors_and_reasons,
    test_workflow_valid_path_sets_timestamps,
)

pytestmark = pytest.mark.integration

# Re-exported so pytest collects and runs them here, with this module's fixtures.
CORE_CASES = (
    test_active_change_without_severity_is_rejected,
    test_awas_sla_from_policy,
    test_extra_zones_are_placed_by_a_zone_lookup,
    test_first_active_opens_an_incident_with_sla_due_times,
    test_invalid_transition_is_refused_with_a_reason,
    test_migrate_is_idempotent,
    test_migration_matches_models,
    test_no_data_and_unknown_keys,
    test_re_active_after_restart_updates_the_open_incident,
    test_recovering_then_cleared,
    test_reopen_counts_and_blocks_while_a_newer_incident_is_active,
    test_same_change_twice_changes_nothing,
    test_severity_rises_and_falls_and_max_is_kept,
    test_stale_change_is_ignored,
    test_suppressed_incident_still_dedupes,
    test_timeline_is_in_order_with_times_actors_and_reasons,
    test_workflow_valid_path_sets_timestamps,
)


@pytest.fixture(scope="module")
def pg_url(postgres: Postgres) -> Iterator[str]:
    """A fresh database for this module, migrated to head, dropped at the end."""
    name = f"pantau_test_{uuid.uuid4().hex[:12]}"
    admin_dsn = f"host={postgres.host} port={postgres.port} user=postgres dbname=postgres"
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = postgres.url_of(name)
    try:
        migrate(url)
        yield url
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture
def db_url(pg_url: str) -> str:
    engine = create_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE incident_events, incidents RESTART IDENTITY CASCADE"))
    engine.dispose()
    return pg_url


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def store(db_url: str, clock: ManualClock) -> Iterator[IncidentStore]:
    s = IncidentStore(db_url, load_sla_policy(), clock, place=PLACE)
    yield s
    s.close()


def test_migration_created_the_partial_unique_index(db_url: str) -> None:
    engine: Engine = create_engine(db_url)
    with engine.connect() as conn:
        indexdef = conn.execute(
            text("SELECT indexdef FROM pg_indexes WHERE indexname = 'uq_incidents_active_key'")
        ).scalar_one()
        version = conn.execute(text("SELECT version_num FROM alembic_version_incidents")).scalar()
        columns = {c["name"]: c for c in inspect(conn).get_columns("incidents")}
    engine.dispose()
    assert "UNIQUE" in indexdef
    assert "rule_id, zone_id, hazard" in indexdef
    assert "resolved" in indexdef and "closed" in indexdef
    assert version == ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert "time zone" in str(columns["opened_at"]["type"]).lower() or getattr(
        columns["opened_at"]["type"], "timezone", False
    )


def _run_together(jobs: list[Callable[[], Any]]) -> list[Any]:
    results: list[Any] = [None] * len(jobs)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            results[i] = jobs[i]()
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a racing apply() hung"
    assert errors == []
    return results


def test_forced_race_on_first_active_gives_one_incident(
    db_url: str,
    clock: ManualClock,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Both 'rule processes' (own engines) see no incident before either inserts: the
    unique index refuses the second INSERT and the loser re-reads and updates."""
    stores = [IncidentStore(db_url, load_sla_policy(), clock) for _ in range(2)]
    both_looked = threading.Barrier(2, timeout=20)
    for s in stores:
        original = s._active_row
        calls = {"n": 0}

        def looked_then_wait(
            session: Any, key: DedupKey, *, lock: bool, _orig: Any = original, _calls: Any = calls
        ) -> Any:
            row = _orig(session, key, lock=lock)
            _calls["n"] += 1
            if _calls["n"] == 1:
                assert row is None
                both_looked.wait()
            return row

        monkeypatch.setattr(s, "_active_row", looked_then_wait)

    first = change(severity=Severity.SIAGA)
    caplog.set_level(logging.INFO, logger="pantau.store.store")
    updates = _run_together([partial(s.apply, first) for s in stores])
    kinds = sorted(u.kind.value for u in updates)
    assert kinds == ["ignored", "opened"]  # the loser's change was the same: a duplicate
    assert "opened concurrently" in caplog.text  # the loser did hit the unique index
    ids = {u.incident.id for u in updates}
    assert len(ids) == 1
    assert len(stores[0].history(first.key)) == 1
    detail = stores[0].get(ids.pop())
    assert detail is not None
    assert len(detail.timeline) == 4  # one opening, no second set of events
    for s in stores:
        s.close()


def test_many_processes_racing_on_many_keys(db_url: str, clock: ManualClock) -> None:
    workers = 6
    keys = [DedupKey("flood-race", f"kel-zone-{i}", Hazard.FLOOD) for i in range(10)]
    stores = [IncidentStore(db_url, load_sla_policy(), clock) for _ in range(workers)]
    start = threading.Barrier(workers, timeout=20)

    def worker(s: IncidentStore) -> list[UpdateKind]:
        start.wait()
        out = []
        for key in keys:
            c: ConditionChange = change(key=key, severity=Severity.WASPADA)
            out.append(s.apply(c).kind)
        return out

    results = _run_together([partial(worker, s) for s in stores])
    opened = sum(kind is UpdateKind.OPENED for kinds in results for kind in kinds)
    assert opened == len(keys)
    for key in keys:
        assert len(stores[0].history(key)) == 1
    assert len(stores[0].active()) == len(keys)
    for s in stores:
        s.close()
