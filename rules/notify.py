"""Crew alerts to chat gateways (the city's WhatsApp / Telegram bridges) over webhooks.

Each alert or escalation row of the outbox is POSTed as its JSON body to the URLs
configured for its agency (`rules.webhook_urls`; key "ops" for operations-center
escalations, "*" for any). Headers:

    X-Pantau-Timestamp: <unix seconds when sent>
    X-Pantau-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>." + the exact body>
    X-Pantau-Message-Id: <outbox row id, also "message_id" in the body>

Network errors, 429 and 5xx are retried with exponential backoff up to
`webhook_max_attempts`; other answers (4xx, 3xx) are not retried. A row whose delivery
fails is marked failed with the reason and logged; one with no URL is marked skipped.
Delivery is at-least-once (a crash after the POST, before the row is marked, sends it
again): receivers dedupe on the message id. The timestamp is inside the signature, so a
captured request cannot be replayed later with a fresh timestamp: receivers check the
signature and refuse timestamps more than REPLAY_WINDOW_S from their clock (`verify`).
It runs on its own thread so a slow gateway never holds up the broker side.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import urllib3

from pantau.escalation import OPS_ADDRESS
from pantau.settings import RulesSettings
from pantau.store import IncidentStore, NotifyState, OutboxMessage

log = logging.getLogger(__name__)

MIN_SECRET_BYTES = 32
SIGNATURE_HEADER = "X-Pantau-Signature"
TIMESTAMP_HEADER = "X-Pantau-Timestamp"
MESSAGE_ID_HEADER = "X-Pantau-Message-Id"
ANY_AGENCY = "*"


REPLAY_WINDOW_S = 300.0


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """The X-Pantau-Signature value of `body` sent at `timestamp` (unix seconds)."""
    signed = timestamp.encode() + b"." + body
    return "sha256=" + hmac.new(secret, signed, hashlib.sha256).hexdigest()


def verify(
    secret: bytes,
    timestamp: str,
    body: bytes,
    signature: str,
    *,
    now: float,
    window_s: float = REPLAY_WINDOW_S,
) -> bool:
    """What a receiver does: a fresh timestamp and the signature (constant-time)."""
    try:
        sent = float(timestamp)
    except ValueError:
        return False
    fresh = abs(now - sent) <= window_s
    return hmac.compare_digest(sign(secret, timestamp, body), signature) and fresh


@dataclass(frozen=True, slots=True, kw_only=True)
class WebhookConfig:
    urls: Mapping[str, Sequence[str]]  # agency id / "ops" / "*" -> URLs
    secret: bytes
    max_attempts: int = 6
    backoff_s: float = 1.0
    max_backoff_s: float = 60.0
    timeout_s: float = 5.0

    def __post_init__(self) -> None:
        if len(self.secret) < MIN_SECRET_BYTES:
            raise ValueError(
                f"the webhook secret must be at least {MIN_SECRET_BYTES} bytes "
                "(e.g. `openssl rand -hex 32`)"
            )
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        for key, urls in self.urls.items():
            for url in urls:
                if not url.startswith(("http://", "https://")):
                    raise ValueError(f"webhook for {key!r}: {url!r} is not an http(s) URL")

    @classmethod
    def from_settings(cls, rules: RulesSettings) -> WebhookConfig | None:
        """None when no webhook is configured; a URL without a secret is refused."""
        if not any(rules.webhook_urls.values()):
            return None
        if rules.webhook_secret is None:
            raise ValueError(
                "rules.webhook_urls needs rules.webhook_secret (PANTAU_RULES__WEBHOOK_SECRET)"
            )
        return cls(
            urls={k: tuple(v) for k, v in rules.webhook_urls.items()},
            secret=rules.webhook_secret.get_secret_value().encode("utf-8"),
            max_attempts=rules.webhook_max_attempts,
            backoff_s=rules.webhook_backoff_s,
            max_backoff_s=rules.webhook_max_backoff_s,
            timeout_s=rules.webhook_timeout_s,
        )

    def urls_for(self, message: OutboxMessage) -> tuple[str, ...]:
        key = OPS_ADDRESS if message.crew_id == OPS_ADDRESS else (message.agency or "")
        return tuple(self.urls.get(key) or self.urls.get(ANY_AGENCY) or ())


class _Stopped(Exception):
    """Stopping during a backoff: the row stays pending for the next start."""


@dataclass(frozen=True, slots=True)
class _Outcome:
    ok: bool
    attempts: int
    error: str | None


class WebhookNotifier:
    def __init__(
        self,
        store: IncidentStore,
        config: WebhookConfig,
        *,
        stop: threading.Event | None = None,
        wall_time: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._config = config
        self._stop = stop or threading.Event()
        self._wall_time = wall_time
        self._http = urllib3.PoolManager(
            timeout=urllib3.Timeout(total=config.timeout_s), retries=False
        )

    def close(self) -> None:
        self._http.clear()

    def deliver_pending(self, limit: int = 100) -> int:
        """Deliver the pending alert rows, oldest first; the number handled."""
        handled = 0
        for message in self._store.pending_notifications(limit):
            try:
                self.deliver(message)
            except _Stopped:
                break
            handled += 1
        return handled

    def deliver(self, message: OutboxMessage) -> NotifyState:
        urls = self._config.urls_for(message)
        if not urls:
            self._store.record_notification(message.id, NotifyState.SKIPPED, 0)
            return NotifyState.SKIPPED
        attempts = 0
        errors: list[str] = []
        for url in urls:
            outcome = self._post(url, message)
            attempts += outcome.attempts
            if not outcome.ok:
                errors.append(f"{url}: {outcome.error}")
        if errors:
            reason = "; ".join(errors)
            log.error("alert %d not delivered to a webhook: %s", message.id, reason)
            self._store.record_notification(message.id, NotifyState.FAILED, attempts, reason)
            return NotifyState.FAILED
        self._store.record_notification(message.id, NotifyState.SENT, attempts)
        return NotifyState.SENT

    def _post(self, url: str, message: OutboxMessage) -> _Outcome:
        cfg = self._config
        body = message.payload
        headers = {"Content-Type": "application/json", MESSAGE_ID_HEADER: str(message.id)}
        error = ""
        for attempt in range(1, cfg.max_attempts + 1):
            stamp = str(int(self._wall_time()))  # each attempt is signed afresh
            headers[TIMESTAMP_HEADER] = stamp
            headers[SIGNATURE_HEADER] = sign(cfg.secret, stamp, body)
            try:
                response = self._http.request(
                    "POST", url, body=body, headers=headers, redirect=False
                )
            except urllib3.exceptions.HTTPError as err:
                error = f"network error: {err}"
            else:
                status = response.status
                if 200 <= status < 300:
                    return _Outcome(True, attempt, None)
                error = f"HTTP {status}"
                if status != 429 and status < 500:
                    return _Outcome(False, attempt, f"{error}, not retried")
            if attempt < cfg.max_attempts:
                delay = min(cfg.backoff_s * 2 ** (attempt - 1), cfg.max_backoff_s)
                log.info("webhook %s for alert %d: %s; retry in %gs", url, message.id, error, delay)
                if self._stop.wait(delay):
                    raise _Stopped
        return _Outcome(False, cfg.max_attempts, f"{error} after {cfg.max_attempts} attempts")


class NotifierThread:
    """Runs a WebhookNotifier until stopped, polling the outbox every `poll_s`."""

    def __init__(self, store: IncidentStore, config: WebhookConfig, poll_s: float = 0.5) -> None:
        self._stop = threading.Event()
        self._wake = threading.Event()
        self.notifier = WebhookNotifier(store, config, stop=self._stop)
        self._poll_s = poll_s
        self._thread = threading.Thread(target=self._run, name="rules-webhooks", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        """New alert rows are committed: look now."""
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)
        self.notifier.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                busy = self.notifier.deliver_pending() > 0
            except Exception:  # a database hiccup must not end webhook delivery
                log.exception("webhook delivery round failed; retrying")
                busy = False
            if not busy:
                self._wake.wait(self._poll_s)
                self._wake.clear()
