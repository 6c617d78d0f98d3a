"""Webhook delivery of crew alerts to chat gateways, against a real HTTP server on a
free local port that checks the HMAC signature, can fail the first requests with 503
and records what it accepted."""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from pydantic import ValidationError

from pantau.city import City
from pantau.clock import ManualClock
from pantau.incidents import ConditionChange, Severity
from pantau.local.ports import free_port
from pantau.roster import load_roster
from pantau.settings import RulesSettings
from pantau.store import IncidentStore, NotifyState, OutboxKind, load_sla_policy, migrate
from pantau.topics import Topics
from pantau.zoneindex import ZoneIndex
from rules.escalation import escalate_due
from rules.notify import (
    MESSAGE_ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    NotifierThread,
    WebhookConfig,
    WebhookNotifier,
    verify,
)
from rules.outbox import change_dispatch
from rules.routing import Router
from tests.unit.test_store import PLACE, T0, change

SECRET = secrets.token_hex(32).encode()  # made per run: no secret in the repository


@dataclass
class Gateway:
    """What the chat bridge saw: accepted deliveries and every request's status."""

    secret: bytes
    fail_first: int = 0
    status_when_failing: int = 503
    now: float | None = None  # the receiver's clock (None: the real one)
    statuses: list[int] = field(default_factory=list)
    deliveries: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def gateway_handler(gw: Gateway) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            with gw.lock:
                stamp = self.headers.get(TIMESTAMP_HEADER, "")
                signature = self.headers.get(SIGNATURE_HEADER, "")
                # The notifier's clock is injected: judge freshness against its stamp.
                if not verify(gw.secret, stamp, body, signature, now=gw.now or time.time()):
                    status = 401
                elif len(gw.statuses) < gw.fail_first:
                    status = gw.status_when_failing
                else:
                    status = 204
                    gw.deliveries.append((dict(self.headers.items()), body))
                gw.statuses.append(status)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


@pytest.fixture
def gateway() -> Iterator[tuple[Gateway, str]]:
    gw = Gateway(SECRET)
    server = ThreadingHTTPServer(("127.0.0.1", 0), gateway_handler(gw))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield gw, f"http://127.0.0.1:{server.server_address[1]}/pantau"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def router(city: City) -> Router:
    return Router(load_roster(city), ZoneIndex.for_city(city))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[IncidentStore]:
    url = f"sqlite:///{tmp_path / 'pantau.db'}"
    migrate(url)
    s = IncidentStore(url, load_sla_policy(), ManualClock(T0), place=PLACE)
    yield s
    s.close()


def config(url: str, **kw: float) -> WebhookConfig:
    return WebhookConfig(
        urls={"bpbd": (url,)},
        secret=SECRET,
        max_attempts=int(kw.get("max_attempts", 4)),
        backoff_s=0.01,
        max_backoff_s=0.05,
        timeout_s=2.0,
    )


def open_alert(store: IncidentStore, router: Router) -> int:
    c: ConditionChange = change(severity=Severity.SIAGA)
    up = store.apply(c, lambda u: change_dispatch(u, c, router, "Sukasari", Topics("t")))
    (alert,) = [m for m in up.outbox if m.kind is OutboxKind.ALERT]
    return alert.id


def test_an_alert_is_posted_signed_after_two_503s(
    gateway: tuple[Gateway, str], store: IncidentStore, router: Router
) -> None:
    gw, url = gateway
    gw.fail_first = 2
    alert_id = open_alert(store, router)
    gw.now = 1_700_000_000.0  # the receiver's clock agrees with the notifier's
    notifier = WebhookNotifier(store, config(url), wall_time=lambda: 1_700_000_000.0)
    assert notifier.deliver_pending() == 1
    assert gw.statuses == [503, 503, 204]
    ((headers, body),) = gw.deliveries
    assert headers[TIMESTAMP_HEADER] == "1700000000"
    stamp, signature = headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER]
    assert verify(SECRET, stamp, body, signature, now=1_700_000_100.0)
    # A replay: the same body and signature with a fresh timestamp, or much later.
    assert not verify(SECRET, "1700009999", body, signature, now=1_700_009_999.0)
    assert not verify(SECRET, stamp, body, signature, now=1_700_000_000.0 + 3600)
    assert not verify(SECRET, stamp, body + b" ", signature, now=1_700_000_100.0)
    assert headers[MESSAGE_ID_HEADER] == str(alert_id)
    alert = json.loads(body)
    assert alert["message_id"] == alert_id and alert["alert"] == "opened"
    row = store.outbox_message(alert_id)
    assert row is not None
    assert (row.notify_state, row.notify_attempts, row.notify_error) == (NotifyState.SENT, 3, None)
    assert store.pending_notifications() == []  # events are never sent to webhooks
    assert notifier.deliver_pending() == 0 and len(gw.statuses) == 3
    notifier.close()


def test_bounded_attempts_then_failed_with_the_reason(
    gateway: tuple[Gateway, str], store: IncidentStore, router: Router
) -> None:
    gw, url = gateway
    gw.fail_first = 100
    alert_id = open_alert(store, router)
    assert WebhookNotifier(store, config(url, max_attempts=3)).deliver_pending() == 1
    assert gw.statuses == [503, 503, 503]
    row = store.outbox_message(alert_id)
    assert row is not None and row.notify_state is NotifyState.FAILED
    assert row.notify_error is not None and "HTTP 503 after 3 attempts" in row.notify_error


def test_a_4xx_is_not_retried(
    gateway: tuple[Gateway, str], store: IncidentStore, router: Router
) -> None:
    gw, url = gateway
    gw.fail_first, gw.status_when_failing = 100, 422
    alert_id = open_alert(store, router)
    WebhookNotifier(store, config(url)).deliver_pending()
    assert gw.statuses == [422]
    row = store.outbox_message(alert_id)
    assert row is not None and row.notify_state is NotifyState.FAILED
    assert row.notify_error is not None and "HTTP 422, not retried" in row.notify_error


def test_a_wrong_secret_is_refused_by_the_gateway(
    gateway: tuple[Gateway, str], store: IncidentStore, router: Router
) -> None:
    _, url = gateway
    alert_id = open_alert(store, router)
    other = WebhookConfig(urls={"bpbd": (url,)}, secret=secrets.token_bytes(32))
    WebhookNotifier(store, other).deliver_pending()
    row = store.outbox_message(alert_id)
    assert row is not None and row.notify_state is NotifyState.FAILED
    assert "HTTP 401" in (row.notify_error or "")


def test_network_errors_are_retried_then_fail(store: IncidentStore, router: Router) -> None:
    alert_id = open_alert(store, router)
    dead = f"http://127.0.0.1:{free_port()}/nobody"
    WebhookNotifier(store, config(dead, max_attempts=2)).deliver_pending()
    row = store.outbox_message(alert_id)
    assert row is not None and row.notify_state is NotifyState.FAILED
    assert row.notify_attempts == 2 and "network error" in (row.notify_error or "")


def test_no_webhook_for_the_agency_is_skipped_and_ops_has_its_own(
    gateway: tuple[Gateway, str], store: IncidentStore, router: Router
) -> None:
    gw, url = gateway
    alert_id = open_alert(store, router)
    escalations = escalate_due(store, router, T0 + timedelta(hours=1))
    assert [e.to for e in escalations] == ["bpbd-supervisor", "ops"]
    cfg = WebhookConfig(urls={"ops": (url,)}, secret=SECRET)
    WebhookNotifier(store, cfg).deliver_pending()
    states = {
        m: store.outbox_message(m).notify_state  # type: ignore[union-attr]
        for m in (alert_id, *(e.message_id for e in escalations))
    }
    assert list(states.values()) == [NotifyState.SKIPPED, NotifyState.SKIPPED, NotifyState.SENT]
    ((_, body),) = gw.deliveries
    assert json.loads(body)["to"] == "ops"


def test_the_thread_delivers_what_is_committed(
    gateway: tuple[Gateway, str], store: IncidentStore, router: Router
) -> None:
    gw, url = gateway
    thread = NotifierThread(store, config(url), poll_s=0.05)
    thread.start()
    try:
        open_alert(store, router)
        thread.wake()
        for _ in range(200):
            if gw.deliveries:
                break
            threading.Event().wait(0.02)
    finally:
        thread.stop()
    assert len(gw.deliveries) == 1


def test_short_or_missing_secrets_are_refused(gateway: tuple[Gateway, str]) -> None:
    _, url = gateway
    with pytest.raises(ValueError, match="at least 32 bytes"):
        WebhookConfig(urls={"bpbd": (url,)}, secret=b"hunter2")
    with pytest.raises(ValidationError):
        RulesSettings(webhook_secret="too-short")
    with pytest.raises(ValueError, match=r"needs rules\.webhook_secret"):
        WebhookConfig.from_settings(RulesSettings(webhook_urls={"bpbd": [url]}))
    assert WebhookConfig.from_settings(RulesSettings()) is None
    ok = WebhookConfig.from_settings(
        RulesSettings(webhook_urls={"bpbd": [url]}, webhook_secret=SECRET.decode())
    )
    assert ok is not None and ok.secret == SECRET
