"""The incident store on SQLite (a temporary file). The same cases run on PostgreSQL in
tests/integration/test_store_postgres.py, which imports them with its own `store`."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from pantau.city import load_agencies
from pantau.clock import ManualClock
from pantau.devices import default_config_dir
from pantau.incidents import (
    ConditionChange,
    ConditionState,
    DedupKey,
    Evidence,
    Hazard,
    Severity,
    WorkflowState,
)
from pantau.store import (
    EventKind,
    IncidentNotFound,
    IncidentStore,
    InvalidTransition,
    UpdateKind,
    load_sla_policy,
    migrate,
    placement_by_zone,
    zone_level_by_prefix,
)
from pantau.store.migrate import VERSION_TABLE
from pantau.store.models import Base
from pantau.zones import ZoneLevel

T0 = datetime(2026, 1, 14, 15, 0, tzinfo=UTC)
KEY = DedupKey("flood-cisadane", "kel-sukasari", Hazard.FLOOD)
W = WorkflowState
# Placed as the services place them: agencies from the city's table (config/agencies.yaml).
_, HAZARD_AGENCY = load_agencies(default_config_dir() / "agencies.yaml")
PLACE = placement_by_zone(zone_level_by_prefix, HAZARD_AGENCY)


def change(
    state: ConditionState = ConditionState.ACTIVE,
    severity: Severity | None = Severity.WASPADA,
    minutes: float = 0,
    *,
    key: DedupKey = KEY,
    devices: tuple[str, ...] = ("wl-cisadane-01",),
    peak: float = 130.0,
    reason: str = "water_level >= alert",
) -> ConditionChange:
    at = T0 + timedelta(minutes=minutes)
    evidence = (
        None
        if state in (ConditionState.CLEARED, ConditionState.NO_DATA)
        else Evidence(
            device_ids=devices, metric="water_level_cm", peak_value=peak, first_at=T0, last_at=at
        )
    )
    return ConditionChange(
        key=key, state=state, severity=severity, at=at, evidence=evidence, reason=reason
    )


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0 + timedelta(seconds=7))


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'pantau.db'}"
    migrate(url)
    return url


@pytest.fixture
def store(db_url: str, clock: ManualClock) -> Iterator[IncidentStore]:
    s = IncidentStore(db_url, load_sla_policy(), clock, place=PLACE)
    yield s
    s.close()


def test_first_active_opens_an_incident_with_sla_due_times(store: IncidentStore) -> None:
    up = store.apply(change(severity=Severity.WASPADA))
    assert up.kind is UpdateKind.OPENED
    inc = up.incident
    assert inc is not None
    assert inc.key == KEY
    assert inc.zone_level == ZoneLevel.KELURAHAN
    assert inc.agency == "bpbd"
    assert inc.workflow_state is W.OPEN
    assert inc.condition_state is ConditionState.ACTIVE
    assert inc.severity_current is Severity.WASPADA
    assert inc.severity_max is Severity.WASPADA
    assert inc.opened_at == T0
    # config/sla.yaml: flood waspada = acknowledge in 15 min, resolve in 6 h
    assert inc.sla_ack_due == T0 + timedelta(minutes=15)
    assert inc.sla_resolve_due == T0 + timedelta(hours=6)
    assert inc.evidence.device_ids == ("wl-cisadane-01",)
    assert inc.evidence.peak_value == 130.0
    assert [e.kind for e in up.events] == [
        EventKind.CONDITION,
        EventKind.SEVERITY,
        EventKind.WORKFLOW,
        EventKind.SLA,
    ]
    assert all(e.actor == "rules" for e in up.events)
    assert store.by_key(KEY) == inc
    assert store.active() == [inc]


def test_extra_zones_are_placed_by_a_zone_lookup(db_url: str, clock: ManualClock) -> None:
    levels = {"corridor-jl-daan-mogot": "corridor"}
    store = IncidentStore(
        db_url,
        load_sla_policy(),
        clock,
        place=placement_by_zone(levels.__getitem__, HAZARD_AGENCY),
    )
    jam = DedupKey("jam-daan-mogot", "corridor-jl-daan-mogot", Hazard.TRAFFIC_JAM)
    inc = store.apply(change(key=jam, severity=Severity.SIAGA)).incident
    assert inc is not None
    assert (inc.zone_level, inc.agency) == ("corridor", "dishub")
    store.close()
    plain = IncidentStore(db_url, load_sla_policy(), clock)
    with pytest.raises(ValueError, match="no kel-/kec-/kota- prefix"):
        plain.apply(change(key=DedupKey("jam-2", "corridor-jl-sudirman", Hazard.TRAFFIC_JAM)))
    plain.close()


def test_awas_sla_from_policy(store: IncidentStore) -> None:
    inc = store.apply(change(severity=Severity.AWAS)).incident
    assert inc is not None
    assert inc.sla_ack_due == T0 + timedelta(minutes=5)
    assert inc.sla_resolve_due == T0 + timedelta(hours=2)
    offline = DedupKey("absence-wl", "kel-sukasari", Hazard.SENSOR_OFFLINE)
    inc2 = store.apply(change(key=offline, severity=Severity.WASPADA)).incident
    assert inc2 is not None
    assert inc2.agency == "diskominfo"
    assert inc2.sla_ack_due == T0 + timedelta(minutes=60)
    assert inc2.sla_resolve_due == T0 + timedelta(hours=24)


def test_same_change_twice_changes_nothing(store: IncidentStore) -> None:
    first = store.apply(change())
    assert first.incident is not None
    again = store.apply(change())
    assert again.kind is UpdateKind.IGNORED
    assert again.events == ()
    assert again.incident == first.incident
    detail = store.get(first.incident.id)
    assert detail is not None
    assert len(detail.timeline) == len(first.events)
    assert len(store.history(KEY)) == 1


def test_re_active_after_restart_updates_the_open_incident(db_url: str, clock: ManualClock) -> None:
    before = IncidentStore(db_url, load_sla_policy(), clock)
    opened = before.apply(change(minutes=0))
    before.close()
    # a restarted rule engine re-announces the condition, later and with more evidence
    after = IncidentStore(db_url, load_sla_policy(), clock)
    up = after.apply(change(minutes=3, devices=("wl-cisadane-02",), peak=141.0))
    assert up.kind is UpdateKind.UPDATED
    assert up.events == ()  # evidence is not a transition
    assert up.incident is not None and opened.incident is not None
    assert up.incident.id == opened.incident.id
    assert up.incident.evidence.device_ids == ("wl-cisadane-01", "wl-cisadane-02")
    assert up.incident.evidence.peak_value == 141.0
    assert up.incident.evidence.last_at == T0 + timedelta(minutes=3)
    assert len(after.active()) == 1
    after.close()


def test_severity_rises_and_falls_and_max_is_kept(store: IncidentStore) -> None:
    opened = store.apply(change(severity=Severity.WASPADA, minutes=0)).incident
    assert opened is not None
    up = store.apply(change(severity=Severity.AWAS, minutes=2, reason="water_level >= danger"))
    assert up.kind is UpdateKind.UPDATED
    assert up.incident is not None
    assert (up.incident.severity_current, up.incident.severity_max) == (Severity.AWAS,) * 2
    assert [(e.kind, e.from_state, e.to_state) for e in up.events] == [
        (EventKind.SEVERITY, "waspada", "awas"),
        (EventKind.SLA, "waspada", "awas"),
    ]
    # a rise tightens the due times to awas (5 min / 2 h from the opening)
    assert up.incident.sla_ack_due == T0 + timedelta(minutes=5)
    assert up.incident.sla_resolve_due == T0 + timedelta(hours=2)
    down = store.apply(change(severity=Severity.WASPADA, minutes=9))
    assert down.incident is not None
    assert down.incident.severity_current is Severity.WASPADA
    assert down.incident.severity_max is Severity.AWAS
    assert [e.kind for e in down.events] == [EventKind.SEVERITY]
    assert down.incident.sla_ack_due == T0 + timedelta(minutes=5)  # never loosened


def test_recovering_then_cleared(store: IncidentStore) -> None:
    inc = store.apply(change()).incident
    assert inc is not None
    rec = store.apply(change(ConditionState.RECOVERING, None, minutes=20, reason="below clear"))
    assert rec.kind is UpdateKind.UPDATED
    assert rec.incident is not None
    assert rec.incident.condition_state is ConditionState.RECOVERING
    assert rec.incident.severity_current is Severity.WASPADA
    cleared = store.apply(change(ConditionState.CLEARED, None, minutes=35, reason="clear held"))
    assert cleared.kind is UpdateKind.CLEARED
    assert cleared.incident is not None
    assert cleared.incident.condition_state is ConditionState.CLEARED
    # clearing is what the data says; the workflow stays with people
    assert cleared.incident.workflow_state is W.OPEN
    assert [(e.from_state, e.to_state) for e in cleared.events] == [("recovering", "cleared")]
    assert store.apply(change(ConditionState.CLEARED, None, minutes=35)).kind is (
        UpdateKind.IGNORED
    )


def test_no_data_and_unknown_keys(store: IncidentStore) -> None:
    other = DedupKey("flood-cisadane", "kel-babakan", Hazard.FLOOD)
    ignored = store.apply(change(ConditionState.CLEARED, None, key=other))
    assert ignored.kind is UpdateKind.IGNORED and ignored.incident is None
    assert store.apply(change(ConditionState.PENDING, Severity.WASPADA, key=other)).kind is (
        UpdateKind.IGNORED
    )
    store.apply(change())
    nd = store.apply(change(ConditionState.NO_DATA, None, minutes=5, reason="inputs silent"))
    assert nd.incident is not None
    assert nd.incident.condition_state is ConditionState.NO_DATA
    assert store.active(zone_id="kel-babakan") == []
    assert len(store.active(zone_id="kel-sukasari")) == 1


def test_stale_change_is_ignored(store: IncidentStore) -> None:
    store.apply(change(minutes=10))
    late = store.apply(change(ConditionState.CLEARED, None, minutes=5))
    assert late.kind is UpdateKind.IGNORED
    assert late.incident is not None
    assert late.incident.condition_state is ConditionState.ACTIVE


def test_workflow_valid_path_sets_timestamps(store: IncidentStore, clock: ManualClock) -> None:
    inc = store.apply(change()).incident
    assert inc is not None
    t = T0 + timedelta(minutes=4)
    ack = store.transition(inc.id, W.ACKNOWLEDGED, "op:ani", "seen on the wall", t)
    assert ack.incident is not None
    assert ack.incident.acknowledged_at == t
    dis = store.transition(inc.id, W.DISPATCHED, "op:ani", "crew 3", t, crew_id="crew-3")
    assert dis.incident is not None and dis.incident.assignee_crew_id == "crew-3"
    store.transition(inc.id, W.ON_SITE, "crew-3", "arrived", t + timedelta(minutes=20))
    clock.advance(timedelta(hours=1))
    res = store.transition(inc.id, W.RESOLVED, "crew-3", "pump restarted")  # at = clock
    assert res.incident is not None
    assert res.incident.resolved_at == clock.now()
    assert store.by_key(KEY) is None
    assert store.active() == []
    closed = store.transition(inc.id, W.CLOSED, "op:ani", "verified", clock.now())
    assert closed.incident is not None and closed.incident.closed_at == clock.now()
    [e] = closed.events
    assert (e.kind, e.from_state, e.to_state, e.actor, e.reason) == (
        EventKind.WORKFLOW,
        "resolved",
        "closed",
        "op:ani",
        "verified",
    )


def test_invalid_transition_is_refused_with_a_reason(store: IncidentStore) -> None:
    inc = store.apply(change()).incident
    assert inc is not None
    with pytest.raises(InvalidTransition, match=r"open -> on_site.*only acknowledged") as err:
        store.transition(inc.id, W.ON_SITE, "crew-3", "arrived", T0)
    assert err.value.from_state is W.OPEN and err.value.to is W.ON_SITE
    with pytest.raises(InvalidTransition, match="already there"):
        store.transition(inc.id, W.OPEN, "op:ani", "again", T0)
    with pytest.raises(IncidentNotFound):
        store.transition(inc.id + 100, W.ACKNOWLEDGED, "op:ani", "x", T0)
    with pytest.raises(ValueError, match="actor and a reason"):
        store.transition(inc.id, W.ACKNOWLEDGED, "op:ani", "", T0)
    detail = store.get(inc.id)
    assert detail is not None
    assert detail.incident.workflow_state is W.OPEN
    assert EventKind.WORKFLOW not in {e.kind for e in detail.timeline[3:]}


def test_reopen_counts_and_blocks_while_a_newer_incident_is_active(
    store: IncidentStore,
) -> None:
    first = store.apply(change()).incident
    assert first is not None
    store.transition(first.id, W.RESOLVED, "op:ani", "false alarm", T0 + timedelta(minutes=1))
    reopened = store.transition(first.id, W.OPEN, "op:ani", "not false", T0 + timedelta(minutes=2))
    assert reopened.incident is not None
    assert reopened.incident.reopen_count == 1
    assert reopened.incident.resolved_at is None
    assert store.by_key(KEY) == reopened.incident

    # once resolved, a new ACTIVE for the key opens a new incident ...
    store.transition(first.id, W.RESOLVED, "op:ani", "done", T0 + timedelta(minutes=3))
    second = store.apply(change(minutes=10, reason="rose again"))
    assert second.kind is UpdateKind.OPENED
    assert second.incident is not None and second.incident.id != first.id
    assert [i.id for i in store.history(KEY)] == [first.id, second.incident.id]
    # ... and the old one cannot be reopened beside it
    with pytest.raises(InvalidTransition, match=f"incident {second.incident.id} is already active"):
        store.transition(first.id, W.OPEN, "op:ani", "reopen", T0 + timedelta(minutes=11))
    old = store.get(first.id)
    assert old is not None and old.incident.reopen_count == 1


def test_suppressed_incident_still_dedupes(store: IncidentStore) -> None:
    inc = store.apply(change()).incident
    assert inc is not None
    store.transition(inc.id, W.SUPPRESSED, "op:ani", "sensor maintenance", T0)
    up = store.apply(change(severity=Severity.SIAGA, minutes=5))
    assert up.kind is UpdateKind.UPDATED
    assert up.incident is not None and up.incident.id == inc.id
    assert up.incident.workflow_state is W.SUPPRESSED


def test_timeline_is_in_order_with_times_actors_and_reasons(store: IncidentStore) -> None:
    inc = store.apply(change(reason="water_level 131 cm >= alert 120 cm for 5 min")).incident
    assert inc is not None
    store.apply(change(severity=Severity.AWAS, minutes=1, reason="water_level >= danger"))
    store.transition(inc.id, W.ACKNOWLEDGED, "op:ani", "on it", T0 + timedelta(minutes=2))
    store.apply(change(ConditionState.RECOVERING, None, minutes=30, reason="below clear"))
    store.transition(inc.id, W.RESOLVED, "op:ani", "water receded", T0 + timedelta(minutes=40))
    detail = store.get(inc.id)
    assert detail is not None
    got = [(e.seq, e.kind.value, e.to_state, e.actor) for e in detail.timeline]
    assert got == [
        (1, "condition", "active", "rules"),
        (2, "severity", "waspada", "rules"),
        (3, "workflow", "open", "rules"),
        (4, "sla", "waspada", "rules"),
        (5, "severity", "awas", "rules"),
        (6, "sla", "awas", "rules"),
        (7, "workflow", "acknowledged", "op:ani"),
        (8, "condition", "recovering", "rules"),
        (9, "workflow", "resolved", "op:ani"),
    ]
    assert detail.timeline[0].reason == "water_level 131 cm >= alert 120 cm for 5 min"
    assert detail.timeline[0].at == T0
    assert detail.timeline[-1].at == T0 + timedelta(minutes=40)
    assert all(
        e.at.tzinfo is not None and e.recorded_at.tzinfo is not None for e in detail.timeline
    )
    assert store.get(inc.id + 100) is None


def test_active_change_without_severity_is_rejected(store: IncidentStore) -> None:
    with pytest.raises(ValueError, match="needs a severity"):
        store.apply(change(severity=None))


def test_migration_matches_models(db_url: str) -> None:
    """The Alembic migration builds the schema the models describe (Alembic's own diff)."""
    engine = create_engine(db_url)
    with engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}), Base.metadata
        )
        tables = set(inspect(conn).get_table_names())
    engine.dispose()
    assert diff == []
    assert {"incidents", "incident_events"} <= tables


def test_migrate_is_idempotent(db_url: str) -> None:
    migrate(db_url)  # already at head: nothing to do, no error


def test_two_writers_on_sqlite_give_one_incident(db_url: str, clock: ManualClock) -> None:
    """Two stores with their own engines (as two processes would have) on one file."""
    stores = [IncidentStore(db_url, load_sla_policy(), clock) for _ in range(4)]
    start = threading.Barrier(len(stores), timeout=20)
    kinds: list[UpdateKind] = []
    errors: list[BaseException] = []

    def run(s: IncidentStore) -> None:
        try:
            start.wait()
            kinds.append(s.apply(change()).kind)
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=run, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert sorted(kinds) == ["ignored"] * 3 + ["opened"]
    assert len(stores[0].history(KEY)) == 1
    for s in stores:
        s.close()
