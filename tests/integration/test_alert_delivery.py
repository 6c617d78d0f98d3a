"""Alert delivery end to end on PostgreSQL and the real broker: a run that committed an
incident but crashed before the broker confirmed its alert leaves the alert in the
outbox; the next start publishes it (with its message id), the chat webhook gets it
signed, and an unacknowledged incident escalates to the supervisor and then to the
operations center on the service's tick."""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import ThreadingHTTPServer

import pytest
from sqlalchemy import inspect

from pantau.city import load_city
from pantau.clock import ManualClock
from pantau.incidents import (
    ConditionChange,
    ConditionState,
    DedupKey,
    Evidence,
    Hazard,
    Severity,
)
from pantau.roster import load_roster
from pantau.settings import RulesSettings, Settings
from pantau.store import NotifyState, OutboxKind, migrate
from pantau.store.migrate import downgrade
from pantau.topics import Topics
from pantau.zoneindex import ZoneIndex
from rules.notify import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from rules.outbox import change_dispatch
from rules.routing import Router
from rules.service import RulesService, make_store
from testkit.mqtt import Collector, wait_for
from tests.unit.test_notify import Gateway, gateway_handler

pytestmark = pytest.mark.integration

T0 = datetime(2026, 1, 14, 8, 0, tzinfo=UTC)  # 15:00 WIB
KEY = DedupKey("flood-cisadane", "kel-sukasari", Hazard.FLOOD)
SECRET = secrets.token_hex(32)  # per run, never committed


@pytest.fixture
def gateway() -> Iterator[tuple[Gateway, str]]:
    gw = Gateway(SECRET.encode())
    gw.fail_first = 1  # the bridge is briefly down: one 503 first
    server = ThreadingHTTPServer(("127.0.0.1", 0), gateway_handler(gw))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield gw, f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()
    server.server_close()


def flood(at: datetime) -> ConditionChange:
    return ConditionChange(
        key=KEY,
        state=ConditionState.ACTIVE,
        severity=Severity.SIAGA,  # config/sla.yaml: acknowledge within 10 min
        at=at,
        evidence=Evidence(
            device_ids=("wl-cisadane-01",),
            metric="water_level_cm",
            peak_value=180.0,
            first_at=at,
            last_at=at,
        ),
        reason="water_level >= siaga",
    )


def test_an_alert_committed_before_a_crash_is_published_at_the_next_start(
    settings: Settings, postgres_url: str, topic_root: str, gateway: tuple[Gateway, str]
) -> None:
    gw, hook = gateway
    # Migration 0002 goes down and up on PostgreSQL too.
    migrate(postgres_url)
    downgrade(postgres_url, "0001")
    settings = settings.model_copy(
        update={
            "database_url": postgres_url,
            "rules": RulesSettings(
                client_id=f"rules-{topic_root}",
                tick_interval_s=0.2,
                rebuild_window_s=0,
                webhook_urls={"bpbd": [hook], "ops": [hook]},
                webhook_secret=SECRET,
                webhook_backoff_s=0.05,
            ),
        }
    )
    city = load_city()
    zones = ZoneIndex.for_city(city)
    router = Router(load_roster(city), zones)
    clock = ManualClock(T0 + timedelta(seconds=5))
    store = make_store(settings, zones, clock)  # migrates back to head
    assert {"outbox", "incidents"} <= set(inspect(store.engine).get_table_names())

    # The run that crashed: the change is committed with its messages, none published.
    c = flood(T0)
    crashed = store.apply(
        c, lambda u: change_dispatch(u, c, router, "Sukasari", Topics(settings.mqtt.root))
    )
    inc = crashed.incident
    assert inc is not None
    crew = router.route(KEY.zone_id, KEY.hazard, T0)
    owed = {m.kind: m for m in crashed.outbox}
    assert set(owed) == {OutboxKind.EVENT, OutboxKind.ALERT}

    root = settings.mqtt.root
    crew_alerts = Collector(settings.mqtt, f"{root}/alerts/#")
    events = Collector(settings.mqtt, f"{root}/incidents/+")
    service = RulesService(settings, city, store, router, zones, clock=clock)
    service.start()
    try:
        assert service.wait_subscribed(10)
        wait_for(lambda: len(crew_alerts.snapshot()) >= 1, 20, "the owed alert")
        wait_for(lambda: len(events.snapshot()) >= 1, 20, "the owed event")
        assert store.unpublished() == []
        # The broker redelivers the input: a duplicate to the store, nothing more sent.
        assert store.apply(c).outbox == ()
        # Nobody acknowledges: past the 10 min the supervisor hears, 10 min later ops.
        clock.set(T0 + timedelta(minutes=10))
        wait_for(lambda: len(crew_alerts.snapshot()) >= 2, 20, "the supervisor escalation")
        clock.set(T0 + timedelta(minutes=20))
        wait_for(lambda: len(crew_alerts.snapshot()) >= 3, 20, "the ops escalation")
        wait_for(lambda: len(gw.deliveries) >= 3, 20, "three webhook deliveries")
    finally:
        service.stop()
        crew_alerts.close()
        events.close()

    got = crew_alerts.snapshot()
    assert [m.topic for m in got] == [
        f"{root}/alerts/crews/{crew}",
        f"{root}/alerts/crews/bpbd-supervisor",
        f"{root}/alerts/ops",
    ]
    first = json.loads(got[0].payload)
    assert first["message_id"] == owed[OutboxKind.ALERT].id  # the same message as committed
    assert first["incident_id"] == inc.id and first["crew_id"] == crew
    assert [json.loads(m.payload)["level"] for m in got[1:]] == [1, 2]
    assert json.loads(events.snapshot()[0].payload)["message_id"] == owed[OutboxKind.EVENT].id

    # The webhook: the first request failed (503), then every alert arrived signed.
    assert gw.statuses[0] == 503
    delivered = [json.loads(body) for _, body in gw.deliveries]
    assert sorted(d["message_id"] for d in delivered) == sorted(
        json.loads(m.payload)["message_id"] for m in got
    )
    assert all(
        verify(SECRET.encode(), h[TIMESTAMP_HEADER], body, h[SIGNATURE_HEADER], now=time.time())
        for h, body in gw.deliveries
    )
    for d in delivered:
        row = store.outbox_message(d["message_id"])
        assert row is not None and row.notify_state is NotifyState.SENT

    detail = store.get(inc.id)
    assert detail is not None
    assert detail.incident.routed_crew_id == crew and detail.incident.escalation_level == 2
    assert [e.to_state for e in detail.timeline if e.to_state.startswith("escalated")] == [
        "escalated_supervisor",
        "escalated_ops",
    ]
    assert service.stats.escalations == 2 and service.stats.alerts_published == 1
    store.close()
