"""`pantau rules` as one of N replicas (rules.partitioned): leases, partitions, sending.

Every `period_s` (pantau.settings.LeaseSettings) the replica balances its leases on the
kecamatan partitions (rules.partitions) in the SQL store: it renews what it holds,
takes free or expired partitions up to its fair share, gives back the excess. For each
partition it gains it starts a PartitionService (its own MQTT session, named for the
partition; its state rebuilt from InfluxDB); each one it loses is stopped with its
messages unacknowledged. A SIGKILLed replica's partitions expire after `ttl_s` and move
to the survivors at their next balance: within ttl_s + period_s (12 s by default).

Besides its partitions, each replica, once per tick: escalates overdue incidents
(exactly once per level whoever races: the store locks the incident), prunes old
outbox rows, and publishes outbox rows nobody holds, such as those a dead replica
wrote and never sent (claims with expiry, pantau.store.claims). Its webhook notifier
claims alert rows the same way. So each row is sent by one replica at a time, a dead
one's by a survivor, and a copy only ever carries the same message id.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from pantau.cameras import Camera
from pantau.city import City
from pantau.clock import Clock, SystemClock
from pantau.influx.query import InfluxQL
from pantau.mqtt import make_client
from pantau.settings import Settings
from pantau.store import IncidentStore, OutboxMessage
from pantau.store.leases import Lease, Leases
from pantau.zoneindex import ZoneIndex
from rules.cameras import rules_city
from rules.escalation import escalate_due
from rules.notify import NotifierThread, WebhookConfig
from rules.partitions import PartitionService, Role, plan
from rules.publishing import Ack, await_ack, publish_row
from rules.routing import Router
from rules.rulespec import load_rules

log = logging.getLogger(__name__)

LEASE_KIND = "rules"
PUBLISH_WAIT_S = 10.0


@dataclass(frozen=True, slots=True)
class Takeover:
    at: datetime  # wall clock of this replica
    replica: str
    partition: str
    epoch: int  # 1: first owner; more: taken over


class ReplicatedRules:
    """One rules replica; `start`/`stop` like RulesService."""

    def __init__(
        self,
        settings: Settings,
        city: City,
        store: IncidentStore,
        router: Router,
        zones: ZoneIndex,
        *,
        influx: InfluxQL | None = None,
        cameras: Mapping[str, Camera] | None = None,
        clock: Clock | None = None,
        on_takeover: Callable[[Takeover], None] | None = None,
    ) -> None:
        self._settings = settings
        self._city, self._store, self._router, self._zones = city, store, router, zones
        self._influx = influx
        self._cameras = dict(cameras or {})
        self._clock = clock or SystemClock()
        self.name = settings.replica
        lease = settings.leases
        self._leases = Leases(store.engine, LEASE_KIND, self.name, lease.ttl_s)
        hooks = WebhookConfig.from_settings(settings.rules)
        store.use_claims(self.name, lease.ttl_s, _delivery_s(hooks) + lease.ttl_s)
        rules_path = settings.rules.rules_file or settings.config_dir / "rules.yaml"
        rules = load_rules(rules_path, rules_city(city, self._cameras))
        self._plan = plan(city, rules, self._cameras)
        self._runners: dict[str, PartitionService] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rules-replica", daemon=True)
        self._notifier = None if hooks is None else NotifierThread(store, hooks)
        self._out = make_client(
            settings.mqtt, f"{settings.rules.client_id}-{self.name}", manual_ack=False
        )
        self._on_takeover = on_takeover
        self.takeovers: list[Takeover] = []
        self.escalations = 0
        self.swept = 0  # rows published that this replica did not write

    @property
    def partitions(self) -> list[str]:
        return sorted(self._plan)

    def held(self) -> list[str]:
        return sorted(k for k, r in self._runners.items() if not r.lost)

    def runner(self, key: str) -> PartitionService | None:
        return self._runners.get(key)

    # --- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        mq = self._settings.mqtt
        self._out.connect_async(mq.host, mq.port, keepalive=mq.keepalive_s, clean_start=True)
        self._out.loop_start()
        if self._notifier is not None:
            self._notifier.start()
        log.info("rules replica %s: %d partitions to share", self.name, len(self._plan))
        self._thread.start()

    def stop(self) -> None:
        """Stop every partition (messages in hand unacknowledged), then give the leases
        back so the others take them at once instead of after the ttl."""
        self._stop.set()
        self._thread.join(timeout=60)
        _stop_all(list(self._runners.values()))
        self._runners.clear()
        try:
            self._leases.release_all()
        except Exception:  # the store is down: the leases simply expire
            log.exception("leases not released")
        if self._notifier is not None:
            self._notifier.stop()
        self._out.disconnect()
        self._out.loop_stop()

    # --- the balance loop ---------------------------------------------------------------
    def _loop(self) -> None:
        period = self._settings.leases.period_s
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self._balance()
                self._tick()
                self._sweep()
            except Exception:  # the store or broker hiccupped: leases expire, we retry
                log.exception("rules replica %s: balance round failed", self.name)
            self._stop.wait(max(0.0, period - (time.monotonic() - started)))

    def _balance(self) -> None:
        held, lost = self._leases.balance(self.partitions)
        for key in lost:
            runner = self._runners.pop(key, None)
            if runner is not None:
                log.warning("rules replica %s: partition %s lost, stopping it", self.name, key)
                threading.Thread(target=runner.stop, daemon=True).start()
        for lease in held:
            runner = self._runners.get(lease.key)
            if runner is not None and not runner.lost:
                continue
            if runner is not None:  # fenced off although the lease looks held: restart
                threading.Thread(target=runner.stop, daemon=True).start()
            self._runners[lease.key] = self._start_partition(lease)

    def _start_partition(self, lease: Lease) -> PartitionService:
        leases, engine = self._leases, self._store.engine

        def fence(session: Session) -> None:
            leases.fence(session, lease)

        def check() -> None:
            with engine.begin() as conn:
                leases.fence(conn, lease)

        runner = PartitionService(
            self._settings,
            self._city,
            self._store,
            self._router,
            self._zones,
            clock=self._clock,
            influx=self._influx,
            cameras=self._cameras,
            role=Role(self._plan[lease.key], fence, check, self._send),
        )
        runner.start()
        event = Takeover(self._clock.now(), self.name, lease.key, lease.epoch)
        self.takeovers.append(event)
        log.info("rules replica %s took partition %s (epoch %d)", self.name, lease.key, lease.epoch)
        if self._on_takeover is not None:
            self._on_takeover(event)
        return runner

    def _tick(self) -> None:
        """Every period, not on the engine's tick (partitions may replay past event time
        with ticks off; escalation runs on the clock all the same)."""
        retention = self._settings.rules.outbox_retention_s
        if retention > 0:
            self._store.prune_outbox(
                self._clock.now() - timedelta(seconds=retention),
                keep_pending=self._notifier is not None,
            )
        if not self._settings.rules.escalation:
            return
        raised = escalate_due(
            self._store, self._router, self._clock.now(), root=self._settings.mqtt.root
        )
        if raised:
            self.escalations += len(raised)
            rows = self._store.outbox_messages([a.message_id for a in raised])
            self._send(rows)

    def _sweep(self) -> None:
        """Rows nobody holds: a dead replica's unsent ones, or escalations whose
        publishing was cut short."""
        while not self._stop.is_set():
            rows = self._store.unpublished(self._settings.rules.outbox_batch)
            if not rows:
                return
            self.swept += len(rows)
            log.info("rules replica %s publishes %d unsent outbox rows", self.name, len(rows))
            self._send(rows)

    def _send(self, rows: Sequence[OutboxMessage]) -> bool:
        """Publish (QoS 1), wait for the PUBACKs, mark sent; False if the broker did not
        confirm in time: the rows stay claimed until the claim runs out, then a sweep
        (this replica's or another's) sends them again under the same ids."""
        deadline = time.monotonic() + PUBLISH_WAIT_S
        while not self._out.is_connected():
            if time.monotonic() > deadline or self._stop.is_set():
                return False
            time.sleep(0.05)
        infos = [publish_row(self._out, m) for m in rows]
        if any(await_ack(i, self._stop, deadline=deadline) is not Ack.ACKED for i in infos):
            return False  # not in time, stopping, or the connection went meanwhile
        self._store.mark_published([m.id for m in rows])
        if self._notifier is not None:
            self._notifier.wake()
        return True


def _delivery_s(hooks: WebhookConfig | None) -> float:
    """The longest one alert's webhook delivery can take (all URLs, every retry)."""
    if hooks is None:
        return 0.0
    backoff = sum(
        min(hooks.backoff_s * 2**i, hooks.max_backoff_s) for i in range(hooks.max_attempts - 1)
    )
    urls = max((len(u) for u in hooks.urls.values()), default=1)
    return float(urls * (hooks.max_attempts * hooks.timeout_s + backoff))


def _stop_all(runners: Sequence[PartitionService]) -> None:
    threads = [threading.Thread(target=r.stop, daemon=True) for r in runners]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
