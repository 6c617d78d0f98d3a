"""Escalation: an open incident not acknowledged by its acknowledge-by time goes to the
agency supervisor, one more acknowledge window later to the operations center; each
level once, on the timeline, with its alert in the outbox. Time is a ManualClock."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from pantau.city import City
from pantau.clock import ManualClock
from pantau.escalation import OPS, SUPERVISOR
from pantau.incidents import Severity, WorkflowState
from pantau.roster import load_roster
from pantau.store import EventKind, IncidentStore, OutboxKind, load_sla_policy, migrate
from pantau.zoneindex import ZoneIndex
from rules.escalation import escalate_due
from rules.routing import Router
from tests.unit.test_store import PLACE, T0, change

ACK = timedelta(minutes=10)  # config/sla.yaml: flood siaga, acknowledge in 10 min


@pytest.fixture(scope="module")
def router(city: City) -> Router:
    return Router(load_roster(city), ZoneIndex.for_city(city))


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def store(tmp_path: Path, clock: ManualClock) -> Iterator[IncidentStore]:
    url = f"sqlite:///{tmp_path / 'pantau.db'}"
    migrate(url)
    s = IncidentStore(url, load_sla_policy(), clock, place=PLACE)
    yield s
    s.close()


def open_flood(store: IncidentStore) -> int:
    inc = store.apply(change(severity=Severity.SIAGA)).incident
    assert inc is not None and inc.sla_ack_due == T0 + ACK
    return inc.id


def sla_events(store: IncidentStore, incident_id: int) -> list[tuple[str, str, str]]:
    detail = store.get(incident_id)
    assert detail is not None
    return [
        (e.to_state, e.actor, e.reason)
        for e in detail.timeline
        if e.kind is EventKind.SLA and e.to_state.startswith("escalated")
    ]


def test_supervisor_then_ops_each_exactly_once(
    store: IncidentStore, router: Router, clock: ManualClock
) -> None:
    iid = open_flood(store)
    clock.advance(ACK - timedelta(seconds=1))
    assert escalate_due(store, router, clock.now(), root="t") == []  # not due yet

    clock.set(T0 + ACK)  # the acknowledge-by time itself
    (sup,) = escalate_due(store, router, clock.now(), root="t")
    assert (sup.incident_id, sup.level, sup.to) == (iid, SUPERVISOR, "bpbd-supervisor")
    assert sup.topic == "t/alerts/crews/bpbd-supervisor"
    clock.advance(timedelta(minutes=3))
    assert escalate_due(store, router, clock.now(), root="t") == []  # once per level

    clock.set(T0 + 2 * ACK)
    (ops,) = escalate_due(store, router, clock.now(), root="t")
    assert (ops.level, ops.to, ops.topic) == (OPS, "ops", "t/alerts/ops")
    clock.advance(timedelta(hours=5))
    assert escalate_due(store, router, clock.now(), root="t") == []  # no level 3

    assert sla_events(store, iid) == [
        ("escalated_supervisor", "rules", "not acknowledged within 10 min"),
        ("escalated_ops", "rules", "not acknowledged within 20 min"),
    ]
    owed = {m.id: m for m in store.unpublished()}
    for alert in (sup, ops):
        message = owed[alert.message_id]
        assert message.kind is OutboxKind.ESCALATION and message.topic == alert.topic
        body = json.loads(message.payload)
        assert body["message_id"] == alert.message_id
        assert (body["alert"], body["level"], body["incident_id"]) == (
            "escalation",
            alert.level,
            iid,
        )
    detail = store.get(iid)
    assert detail is not None and detail.incident.escalation_level == OPS


def test_acknowledging_stops_escalation(
    store: IncidentStore, router: Router, clock: ManualClock
) -> None:
    iid = open_flood(store)
    clock.set(T0 + ACK)
    assert len(escalate_due(store, router, clock.now())) == 1
    store.transition(iid, WorkflowState.ACKNOWLEDGED, "crew:bpbd-utara-siang", "on the way")
    clock.set(T0 + 3 * ACK)
    assert escalate_due(store, router, clock.now()) == []
    assert [s for s, _, _ in sla_events(store, iid)] == ["escalated_supervisor"]


def test_acknowledged_in_time_is_never_escalated(
    store: IncidentStore, router: Router, clock: ManualClock
) -> None:
    iid = open_flood(store)
    clock.advance(ACK / 2)
    store.transition(iid, WorkflowState.ACKNOWLEDGED, "crew:x", "seen")
    clock.set(T0 + 5 * ACK)
    assert escalate_due(store, router, clock.now()) == []
    assert sla_events(store, iid) == []


def test_a_service_down_past_both_deadlines_sends_both_levels_in_order(
    store: IncidentStore, router: Router, clock: ManualClock
) -> None:
    iid = open_flood(store)
    clock.set(T0 + 2 * ACK + timedelta(minutes=1))
    alerts = escalate_due(store, router, clock.now())
    assert [(a.incident_id, a.level) for a in alerts] == [(iid, SUPERVISOR), (iid, OPS)]
    assert escalate_due(store, router, clock.now()) == []


def test_a_severity_rise_tightens_the_escalation_deadline(
    store: IncidentStore, router: Router, clock: ManualClock
) -> None:
    iid = open_flood(store)
    store.apply(change(severity=Severity.AWAS, minutes=1))  # flood awas: acknowledge in 5 min
    clock.set(T0 + timedelta(minutes=5))
    (alert,) = escalate_due(store, router, clock.now())
    assert alert.incident_id == iid and alert.reason == "not acknowledged within 5 min"


def test_a_naive_time_is_refused(store: IncidentStore, router: Router) -> None:
    with pytest.raises(ValueError, match="tz-aware"):
        escalate_due(store, router, T0.replace(tzinfo=None))


def test_the_store_refuses_a_level_already_reached(
    store: IncidentStore, router: Router, clock: ManualClock
) -> None:
    """Two services that both read the incident as due: only one escalation is written."""
    iid = open_flood(store)
    clock.set(T0 + ACK)
    (due,) = store.overdue_unacknowledged(clock.now(), below_level=OPS)
    assert len(escalate_due(store, router, clock.now())) == 1
    late = store.escalate(
        due.id,
        SUPERVISOR,
        at=clock.now(),
        to_state="escalated_supervisor",
        reason="racing",
        compose=lambda inc: pytest.fail("a refused level composes nothing"),
    )
    assert late is None
    assert len(sla_events(store, iid)) == 1
