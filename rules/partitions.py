"""Rule partitions: the unit of work rules replicas share (rules.replicas).

A partition is a kecamatan. Why: rule state never crosses a kecamatan. `zone_level` is
kelurahan or kecamatan (rules.rulespec refuses anything wider), so every zone aggregate
and composite is judged over devices of one kecamatan; flatline peers share a zone; a
cross-check pair lives in its camera's kecamatan (the station's readings are routed
there). The engine already keeps one instance of every rule and one event time per
kecamatan (rules.engine, issue 18), so a replica that holds some kecamatan runs the
same engine limited to them (`RuleEngine(kecamatan=...)`) and gets, partition by
partition, exactly the verdicts one process would: zone aggregates and composites are
exact because all their inputs are in their partition. A rule that spans kecamatan (a
city-wide composite) would need a `kota` partition fed by every device; none can be
written today, so there is none (adding a wider zone_level adds that partition here).

Each partition has its own persistent MQTT session, named for the partition
(`{client_id}-{kecamatan}`), subscribed to the topics of exactly the devices and
cameras its rules watch plus those located in it (for uplink gaps). Its owner connects
it; when the owner dies, the broker keeps queueing for the session, and the replica
that takes the partition connects under the same name and gets the backlog. On
takeover the new owner rebuilds the partition's state from InfluxDB, as a restart does.

Every incident write of a partition is fenced by its lease (pantau.store.leases) in the
same transaction, and processed messages are acknowledged (together, every
ACK_EVERY_S: rules.service) only after a fence check, so a
replica that lost the partition (paused past its lease, cut off) stops: its writes are
refused and what it holds stays unacknowledged for the new owner.

`{root}/control/rules/advance` ({"to": iso time}) is the replicated `advance_to`: a
replay's end, published by the replay tool, queued in every partition's session behind
the readings before it. Honoured only with ticks off (a replay); a live service counts
and ignores it.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import paho.mqtt.client as mqtt
from sqlalchemy.orm import Session

from pantau.cameras import Camera
from pantau.city import City
from pantau.clock import Clock, SystemClock
from pantau.incidents import ConditionChange, DedupKey
from pantau.influx.query import InfluxQL, InfluxQLError
from pantau.mqtt_session import Inbound
from pantau.readings import Reading
from pantau.settings import Settings
from pantau.store import IncidentStore, OutboxMessage
from pantau.store.leases import LeaseLost
from pantau.topics import Topics
from pantau.zoneindex import ZoneIndex
from rules.cameras import rules_city
from rules.engine import RuleEngine
from rules.history import read_history
from rules.routing import Router
from rules.rulespec import RuleSet
from rules.service import RulesService

log = logging.getLogger(__name__)

HISTORY_ATTEMPTS = 5
_HISTORY_LOCK = threading.Lock()

SESSION_TAKEN_OVER = 0x8E  # MQTT v5 DISCONNECT reason code


def advance_topic(root: str) -> str:
    return f"{root}/control/rules/advance"


def advance_payload(to: datetime) -> bytes:
    if to.tzinfo is None:
        raise ValueError("advance needs a tz-aware time")
    return json.dumps({"to": to.isoformat()}).encode()


@dataclass(frozen=True, slots=True)
class Partition:
    key: str  # the kecamatan id
    devices: frozenset[str]  # device and camera ids whose messages it takes

    def topics(self, topics: Topics, cameras: Collection[str]) -> list[str]:
        mine = sorted(
            topics.camera_analysis(d) if d in cameras else topics.sensor_up(d) for d in self.devices
        )
        return [*mine, advance_topic(topics.root)]


def plan(city: City, rules: RuleSet, cameras: Mapping[str, Camera]) -> dict[str, Partition]:
    """Every kecamatan of the city as a partition, with the devices it needs."""
    seen = rules_city(city, cameras)
    out: dict[str, Partition] = {}
    for z in city.zones.kecamatan:
        routed = RuleEngine(seen, rules, SystemClock(), kecamatan={z.id}).device_ids()
        home = {d.id for d in seen.devices.values() if d.kecamatan_id == z.id}
        out[z.id] = Partition(z.id, frozenset(routed | home))
    return out


@dataclass(frozen=True, slots=True)
class Role:
    """What a partition's service needs from its replica."""

    partition: Partition
    fence: Callable[[Session], None]  # in the incident transaction; raises LeaseLost
    check: Callable[[], None]  # the same in a transaction of its own (before acks)
    # Publish rows (QoS 1, awaited) and mark them sent; False: left to the claim's expiry
    # and the replica's sweep. On the replica's own connection: a partition's session
    # may be mid-takeover.
    send: Callable[[Sequence[OutboxMessage]], bool]


class PartitionService(RulesService):
    """The rules service limited to one partition, while its replica holds the lease.

    It differs from the whole-city service in what it takes (its session and topics),
    what it judges (its kecamatan), and what it leaves to its replica: escalation,
    pruning, webhooks, metrics and the rows nobody publishes (rules.replicas). It
    publishes the outbox rows it wrote itself, claimed for its replica in their
    transaction (pantau.store.claims).
    """

    # A takeover under load: the dead owner's session may take a while to come back, and
    # its first message is what InfluxDB must hold up to before the rebuild.
    redelivery_wait_s = 10.0

    def __init__(
        self,
        settings: Settings,
        city: City,
        store: IncidentStore,
        router: Router,
        zones: ZoneIndex,
        *,
        role: Role,
        clock: Clock | None = None,
        influx: InfluxQL | None = None,
        cameras: Mapping[str, Camera] | None = None,
    ) -> None:
        self._role = role
        super().__init__(
            settings,
            city,
            store,
            router,
            zones,
            clock=clock,
            influx=influx,
            cameras=cameras,
            webhooks=False,
        )
        self._advance: datetime | None = None
        self.ignored_controls = 0
        # Someone connected under this partition's session name: the replica that took
        # the lease. Stop at once instead of reconnecting and taking it back (a
        # ping-pong that would split the session's messages between two processes).
        client = self._session.client
        inner: Any = client.on_disconnect

        def on_disconnect(c: mqtt.Client, u: Any, f: Any, reason: Any, p: Any) -> None:
            inner(c, u, f, reason, p)
            if getattr(reason, "value", reason) == SESSION_TAKEN_OVER:
                log.warning("partition %s: session taken over; stopping", self.key)
                self.lost = True
                self._stop.set()
                self._arrived.set()
                c.disconnect()  # no reconnect (the socket is gone: it only sets the state)

        client.on_disconnect = on_disconnect

    @property
    def key(self) -> str:
        return self._role.partition.key

    def _client_id(self) -> str:
        return f"{self._config.client_id}-{self.key}"

    def _subscriptions(self) -> list[str]:
        return self._role.partition.topics(self._topics, self._cameras)

    def _scope(self) -> Collection[str]:
        return (self.key,)

    def _fence(self, session: Session) -> None:
        self._role.fence(session)

    def start(self) -> None:
        """Connect and return; the worker rebuilds from InfluxDB before it consumes (a
        replica balancing its leases must not wait for that)."""
        self._session.start()
        self._worker.start()

    def _run(self) -> None:
        try:
            self._rebuild()
            if self._session.wait_subscribed(30):
                log.info("partition %s consuming on %s", self.key, self._client_id())
            super()._run()
        except LeaseLost as err:
            log.warning("%s; stopping before it consumed", err)
            self.lost = True
        except Exception:
            log.exception("partition %s failed", self.key)
            self.lost = True  # the replica starts it afresh while it holds the lease
        if self.lost:
            # Stop reconnecting at once: the new owner's session has this name.
            self._session.stop()

    def _rebuild(self) -> None:
        """As a restart, and more: a takeover comes ttl seconds after the owner died,
        and an episode that began and ended in between is in InfluxDB but not open any
        more; the dead owner's watermark kinds may also have held acknowledged readings
        they had not judged (up to a slow source's upload interval). So every change the
        replay makes is applied, unless its key already has an incident at or after it
        (what the dead owner did, or a person resolved); the store takes a change it
        already holds as a duplicate."""
        self._await_history()
        history = sorted(self._history(), key=lambda r: (r.time, r.device_id, r.metric))
        engine = RuleEngine(self._rules_city, self._rules, self._clock, kecamatan=self._scope())
        replayed = engine.ingest(history)
        self._engine = engine
        self.stats.rebuilt_readings = len(history)
        latest: dict[DedupKey, datetime | None] = {}
        missed = [c for c in replayed if self._unseen(c, latest)]
        current = engine.current()
        self._apply(missed + current)
        log.info(
            "partition %s rebuilt from %d readings: %d changes no incident had seen "
            "replayed, %d open verdicts, watermark %s",
            self.key,
            len(history),
            len(missed),
            len(current),
            engine.watermark,
        )

    def _unseen(self, change: ConditionChange, latest: dict[DedupKey, datetime | None]) -> bool:
        if change.key not in latest:
            seen = self._store.history(change.key)
            latest[change.key] = max((max(i.condition_at, i.opened_at) for i in seen), default=None)
        last = latest[change.key]
        return last is None or change.at > last

    def _history(self) -> list[Reading]:
        """The partition's devices and cameras only, one partition at a time per
        replica (a takeover of many must not time InfluxDB out), retried: a partition
        never starts on a history it could not read."""
        window = self._config.rebuild_window_s
        if self._influx is None or window <= 0:
            return []
        since = self._clock.now() - timedelta(seconds=window)
        mine = self._role.partition.devices
        devices = [d for d in mine if d in self._city.devices]
        cameras = {c: cam for c, cam in self._cameras.items() if c in mine}
        for attempt in range(HISTORY_ATTEMPTS):
            try:
                with _HISTORY_LOCK:
                    return read_history(self._influx, self._city, cameras, since, devices)
            except InfluxQLError as err:
                log.warning("partition %s: history not read (%s); retrying", self.key, err)
                if self._stop.wait(2.0 * (attempt + 1)):
                    break
        raise RuntimeError(f"partition {self.key}: no history from InfluxDB; not starting")

    def stop(self) -> None:
        """Disconnect first: the next owner may be connecting under the session's name,
        and the worker may be in a rebuild that takes a while to notice the stop."""
        self._session.stop()
        super().stop()

    def _decode(self, batch: Sequence[Inbound], *, count: bool = True) -> list[Reading]:
        control = advance_topic(self._topics.root)
        rest = [m for m in batch if m.topic != control]
        if count and len(rest) < len(batch):
            for m in batch:
                if m.topic == control:
                    self._control(m.payload)
        return super()._decode(rest, count=count)

    def _control(self, payload: bytes) -> None:
        if self._config.tick_interval_s > 0:
            self.ignored_controls += 1
            log.warning("partition %s: advance ignored, ticks are on (not a replay)", self.key)
            return
        try:
            to = datetime.fromisoformat(json.loads(payload)["to"])
        except (ValueError, KeyError, TypeError) as err:
            self.ignored_controls += 1
            log.warning("partition %s: bad advance message: %s", self.key, err)
            return
        if to.tzinfo is not None and (self._advance is None or to > self._advance):
            self._advance = to

    def _serve_requests(self) -> None:
        if self._advance is not None and not self._inbox:
            to, self._advance = self._advance, None
            self._apply(self._engine.advance_watermark(to))
            log.info("partition %s advanced to %s", self.key, to.isoformat())
        super()._serve_requests()

    def _escalate(self) -> None:
        """The replica escalates and prunes, once for all its partitions."""

    def _publish_outbox(self) -> None:
        """Publish the rows this partition wrote (its claim), then mark them sent."""
        owed, self._owed = self._owed, []
        if owed and self._role.send(owed):
            self._count_published(owed)
        self._outbox_dirty = False

    def _flush_acks(self) -> None:
        if self._unacked:
            self._role.check()  # lost meanwhile: leave the messages to the new owner
        super()._flush_acks()
