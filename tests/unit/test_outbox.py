"""The outbox: incident events and crew alerts are written in the transaction of the
incident change, so a crash between the commit and the broker's PUBACK loses no alert
(the redelivered change is a duplicate to the store, but its alert is still owed)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text

from pantau.city import City
from pantau.clock import ManualClock
from pantau.incidents import ConditionChange, ConditionState, Severity
from pantau.roster import load_roster
from pantau.store import (
    Dispatch,
    IncidentStore,
    IncidentUpdate,
    NotifyState,
    OutboxKind,
    UpdateKind,
    load_sla_policy,
    migrate,
)
from pantau.store.migrate import downgrade
from pantau.topics import Topics
from pantau.zoneindex import ZoneIndex
from rules.outbox import change_dispatch
from rules.routing import Router
from tests.unit.test_store import KEY, T0, change

TOPICS = Topics("t")


@pytest.fixture(scope="module")
def router(city: City) -> Router:
    return Router(load_roster(city), ZoneIndex.for_city(city))


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'pantau.db'}"
    migrate(url)
    return url


@pytest.fixture
def store(db_url: str) -> Iterator[IncidentStore]:
    s = IncidentStore(db_url, load_sla_policy(), ManualClock(T0 + timedelta(seconds=7)))
    yield s
    s.close()


def composer(router: Router, c: ConditionChange) -> Callable[[IncidentUpdate], Dispatch]:
    return lambda update: change_dispatch(update, c, router, "Sukasari", TOPICS)


def test_an_opened_incident_enqueues_its_event_and_alert_atomically(
    store: IncidentStore, router: Router
) -> None:
    c = change(severity=Severity.SIAGA)
    crew = router.route(KEY.zone_id, KEY.hazard, c.at)
    up = store.apply(c, composer(router, c))
    assert up.kind is UpdateKind.OPENED and up.incident is not None
    assert up.incident.routed_crew_id == crew  # kept for the API
    assert store.get(up.incident.id).incident.routed_crew_id == crew  # type: ignore[union-attr]
    event, alert = up.outbox
    assert (event.kind, event.topic) == (OutboxKind.EVENT, TOPICS.incidents(KEY.zone_id))
    assert (alert.kind, alert.topic) == (OutboxKind.ALERT, TOPICS.crew_alerts(crew))
    assert event.notify_state is None and alert.notify_state is NotifyState.PENDING
    for m in up.outbox:  # the message id receivers dedupe on is the row id
        assert json.loads(m.payload)["message_id"] == m.id
        assert m.incident_id == up.incident.id
    assert json.loads(alert.payload)["crew_id"] == crew
    assert [m.id for m in store.unpublished()] == [event.id, alert.id]
    store.mark_published([event.id, alert.id])
    assert store.unpublished() == []


def test_a_crash_before_the_puback_still_leaves_the_alert_to_send(
    db_url: str, router: Router
) -> None:
    """The known gap: commit, crash, redelivery. The store ignores the redelivered
    change as a duplicate, and the alert is still there to publish at the next start."""
    c = change(severity=Severity.AWAS)
    first = IncidentStore(db_url, load_sla_policy(), ManualClock(T0))
    opened = first.apply(c, composer(router, c))
    first.close()  # "crash": nothing was published or marked

    restarted = IncidentStore(db_url, load_sla_policy(), ManualClock(T0))
    again = restarted.apply(c, composer(router, c))  # the broker redelivers the input
    assert again.kind is UpdateKind.IGNORED and again.outbox == ()
    owed = restarted.unpublished()
    assert [m.id for m in owed] == [m.id for m in opened.outbox]
    assert owed[1].kind is OutboxKind.ALERT
    assert owed[1].payload == opened.outbox[1].payload  # same message, same id
    restarted.close()


def test_a_failing_compose_rolls_the_incident_change_back(
    store: IncidentStore, router: Router
) -> None:
    def broken(update: IncidentUpdate) -> Dispatch:
        raise RuntimeError("routing blew up")

    with pytest.raises(RuntimeError):
        store.apply(change(), broken)
    assert store.active() == [] and store.unpublished() == []
    c = change()  # the redelivery then opens it, with its alert
    assert store.apply(c, composer(router, c)).kind is UpdateKind.OPENED
    assert len(store.unpublished()) == 2


def test_only_a_rise_alerts_again_and_the_crew_is_routed_at_event_time(
    store: IncidentStore, router: Router
) -> None:
    c0 = change(severity=Severity.WASPADA)
    store.apply(c0, composer(router, c0))
    c1 = change(severity=Severity.WASPADA, minutes=3, peak=140.0)  # evidence only
    more = store.apply(c1, composer(router, c1))
    assert more.kind is UpdateKind.UPDATED
    assert [m.kind for m in more.outbox] == [OutboxKind.EVENT]
    c2 = change(severity=Severity.AWAS, minutes=70)  # after 15:00 -> 23:00 WIB: night shift
    rise = store.apply(c2, composer(router, c2))
    assert [m.kind for m in rise.outbox] == [OutboxKind.EVENT, OutboxKind.ALERT]
    night = router.route(KEY.zone_id, KEY.hazard, c2.at)
    assert night != router.route(KEY.zone_id, KEY.hazard, c0.at)
    assert rise.incident is not None and rise.incident.routed_crew_id == night
    c3 = change(ConditionState.CLEARED, None, minutes=90)
    cleared = store.apply(c3, composer(router, c3))
    assert cleared.kind is UpdateKind.CLEARED
    assert [m.kind for m in cleared.outbox] == [OutboxKind.EVENT]
    assert len(store.unpublished()) == 2 + 1 + 2 + 1


def test_apply_without_compose_enqueues_nothing(store: IncidentStore) -> None:
    assert store.apply(change()).outbox == ()
    assert store.unpublished() == []


def test_migration_0002_goes_down_and_up_keeping_incidents(db_url: str, router: Router) -> None:
    s = IncidentStore(db_url, load_sla_policy(), ManualClock(T0))
    c = change()
    inc = s.apply(c, composer(router, c)).incident
    s.close()
    assert inc is not None
    downgrade(db_url, "0001")
    engine = create_engine(db_url)
    assert "outbox" not in inspect(engine).get_table_names()
    migrate(db_url)
    with engine.connect() as conn:
        row = conn.execute(
            text("SELECT routed_crew_id, escalation_level FROM incidents WHERE id = :i"),
            {"i": inc.id},
        ).one()
        indexes = {i["name"] for i in inspect(conn).get_indexes("incidents")}
    engine.dispose()
    assert row == (None, 0)  # the column came back empty, the default applies
    assert "uq_incidents_active_key" in indexes  # the downgrade kept the partial index
    s = IncidentStore(db_url, load_sla_policy(), ManualClock(T0))
    again = s.by_key(KEY)
    assert again is not None and again.id == inc.id and again.routed_crew_id is None
    s.close()


def test_published_and_notified_rows_are_pruned_unsent_ones_never(
    db_url: str, router: Router
) -> None:
    clock = ManualClock(T0)
    s = IncidentStore(db_url, load_sla_policy(), clock)
    c = change()
    event, alert = s.apply(c, composer(router, c)).outbox
    c2 = change(severity=Severity.AWAS, minutes=1)
    later = s.apply(c2, composer(router, c2)).outbox  # never published
    s.mark_published([event.id, alert.id])
    clock.advance(timedelta(days=8))
    assert s.prune_outbox(clock.now()) == 1  # the alert still waits for its webhook
    s.record_notification(alert.id, NotifyState.SENT, 1)
    assert s.prune_outbox(clock.now()) == 1
    assert [m.id for m in s.unpublished()] == [m.id for m in later]
    s.mark_published([m.id for m in later])
    clock.advance(timedelta(days=8))
    # No webhooks configured: alerts pending for them would otherwise pile up forever.
    assert s.prune_outbox(clock.now(), keep_pending=False) == 2
    s.close()
