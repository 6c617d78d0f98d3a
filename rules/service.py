"""The rules service: device readings in over MQTT, incidents out (SQL, MQTT events, crew
alerts), each MQTT message acknowledged only after the changes it led to are stored and
their events published (paho manual ack).

One worker thread owns the rule engine (it is not thread-safe): it batches messages,
decodes and validates them exactly as ingest does (ingest dead-letters rejects; here
they are only counted), feeds the engine, applies each ConditionChange to the incident
store together with the messages it owes (the outbox, one transaction), publishes the
unsent outbox rows and marks them after the PUBACKs, then acks (the batches of the
last ACK_EVERY_S together). A crash anywhere in between loses no alert: the next start
publishes what is still unsent (at-least-once; every message carries its outbox id as
`message_id`). On each tick it also escalates unacknowledged incidents (rules.escalation);
a second thread posts alerts to the chat webhooks (rules.notify). The same thread ticks
the engine with the system clock (so absence fires with a silent fleet), polls the rule
file for a hot reload, and runs `advance_to` requests.

Latency: a batch is what the inbox holds when the worker looks (it waits only when the
inbox is empty, woken by the MQTT thread, which hands a trickle over in windows of up
to TURN_WINDOW_S: an idle worker costs nothing between ticks), per-device rules judge a
reading as it arrives (rules.engine), and a batch's outbox rows are published right
after their commit: a crew alert leaves one turn after the reading that raised it.

A reading still buffered for the watermark rules (younger than the watermark) is acked
before those rules evaluate it. That is safe because ingest stores it too: a restarted
service rebuilds its state from the last `rules.rebuild_window_s` of InfluxDB before it
consumes.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from pantau.cameras import Camera
from pantau.city import City, load_agencies
from pantau.clock import Clock, SystemClock
from pantau.device_messages import DeviceMessageReader
from pantau.errors import ConfigError, ConfigErrors
from pantau.incidents import ConditionChange
from pantau.influx.query import InfluxQL
from pantau.mqtt_session import Inbound, SessionConsumer
from pantau.readings import Reading
from pantau.settings import Settings
from pantau.store import (
    Dispatch,
    IncidentStore,
    IncidentUpdate,
    OutboxKind,
    OutboxMessage,
    UpdateKind,
    load_sla_policy,
    placement_by_zone,
)
from pantau.store.leases import LeaseLost
from pantau.store.prune import drop_report_photos
from pantau.topics import Topics
from pantau.zoneindex import ZoneIndex
from rules.cameras import CameraReadings, rules_city
from rules.engine import RuleEngine
from rules.escalation import escalate_due
from rules.fastread import FastReadings
from rules.gaps import UplinkGaps, input_quality_line
from rules.history import await_stored, rebuild_history
from rules.metrics import RulesMetrics
from rules.notify import NotifierThread, WebhookConfig
from rules.outbox import change_dispatch
from rules.publishing import RowPublisher, Stopping, count_published
from rules.routing import Router
from rules.rulespec import RuleSet, load_rules
from rules.stats import RulesStats

log = logging.getLogger(__name__)

PEEK_MESSAGES = 200  # redelivered messages looked at for the earliest pending reading
# Processed messages are acknowledged together, at most this long after the first of
# them was done (or once ACK_MAX wait): a PUBACK write wakes the MQTT thread, and a
# partition checks its lease before each (rules.partitions). An alert never waits for
# it (its outbox row is published before its message is acknowledged); a crash only
# means that much more is redelivered. ACK_MAX stays well under receive_maximum.
ACK_EVERY_S = 0.2
ACK_MAX = 1000
# A trickle comes in turns of up to TURN_WINDOW_S: after a read pass that found a few
# publishes the MQTT thread waits this long once for more before it hands them over
# (mqtt_fast.sink_linger_s; ended by something to send, none while a publish of ours
# awaits its PUBACK), and the worker takes what it is handed at once. Each turn and
# pass has a fixed cost (thread wake-ups, select(), settle, gaps, metrics): with 5 ms
# windows in both threads 2,000 readings/s made ~180 turns a second, and 20 ms took
# the process from 0.087 to 0.05-0.07 cores. An alert waits in the window at most once
# (20 ms, against the 250 ms p99 target); a pass that finds 32 at once does not wait.
TURN_WINDOW_S = 0.02
# Buffered readings the watermark kinds take per turn beyond twice the batch (a few ms:
# an alert arriving meanwhile waits for them); a kecamatan an idle source held back
# catches up over a few turns, not in one stall.
SETTLE_BUDGET = 200


def make_store(settings: Settings, zones: ZoneIndex, clock: Clock | None = None) -> IncidentStore:
    """The incident store at `settings.database_url`, schema migrated, zone levels from
    the zone index (so catchments and corridors are placed too), agencies and SLA from
    `settings.config_dir`."""
    _, hazard_agency = load_agencies(settings.config_dir / "agencies.yaml")
    return IncidentStore(
        settings.database_url,
        load_sla_policy(settings.config_dir / "sla.yaml"),
        clock or SystemClock(),
        place=placement_by_zone(lambda zone_id: zones.zone(zone_id).level, hazard_agency),
        migrate_schema=True,
    )


class RulesService:
    redelivery_wait_s = 2.0  # at a start, how long a persistent session's backlog may take

    def __init__(
        self,
        settings: Settings,
        city: City,
        store: IncidentStore,
        router: Router,
        zones: ZoneIndex,
        *,
        clock: Clock | None = None,
        influx: InfluxQL | None = None,
        cameras: Mapping[str, Camera] | None = None,
        webhooks: bool = True,
    ) -> None:
        """`influx`: where to read the rebuild window from (None: start empty).
        `cameras`: the camera registry; its analyses on `{root}/cameras/+/analysis` are
        fed to the rules as readings of devices at the cameras' locations (rules.cameras).
        None: devices only."""
        self._settings = settings
        self._config = settings.rules
        self._city = city
        self._store = store
        self._router = router
        self._zones = zones
        self._clock = clock or SystemClock()
        self._influx = influx
        self._topics = Topics(settings.mqtt.root)
        self.rules_path = self._config.rules_file or settings.config_dir / "rules.yaml"
        self._rules_mtime = self._mtime()
        # The engine's city holds the cameras as devices; decoding keeps the registry's.
        self._cameras = dict(cameras or {})
        self._rules_city = rules_city(city, self._cameras)
        self._camera_reader = (
            CameraReadings(self._cameras, city.catalogue, self._topics) if self._cameras else None
        )
        self._rules = load_rules(self.rules_path, self._rules_city)  # a bad file is fatal
        self._engine = RuleEngine(
            self._rules_city, self._rules, self._clock, kecamatan=self._scope()
        )
        self._reader = DeviceMessageReader(city, self._topics, settings.ingest)
        self._fast = FastReadings(city, self._topics, settings.ingest)  # the common case
        self._requests: queue.Queue[tuple[datetime, threading.Event]] = queue.Queue()
        self._reload_requested = threading.Event()
        self._stop = threading.Event()
        self.stats = RulesStats()
        self._session = SessionConsumer(
            settings.mqtt,
            self._client_id(),
            self._subscriptions(),
            session_expiry_s=self._config.session_expiry_s,
            receive_maximum=self._config.receive_maximum,
            clock=self._clock,
            fast_publishes=True,  # past paho's per-message layers (pantau.mqtt_fast)
            linger_s=TURN_WINDOW_S,
        )
        self._inbox = self._session.inbox
        self._arrived = self._session.arrived  # also set to wake the worker (stop, requests)
        self.metrics = RulesMetrics(
            settings, lambda: len(self._inbox), lambda: self.stats.sources_idle
        )
        self._client = self._session.client  # incident events and alerts go out on it
        self._publisher = RowPublisher(self._client, self._session.wait_connected, self._stop)
        self._worker = threading.Thread(target=self._run, name="rules-worker", daemon=True)
        # Unsent outbox rows of an earlier run (a crash before the PUBACK) go out first.
        self._outbox_dirty = True
        self._owed: list[OutboxMessage] = []  # rows this turn wrote (rules.partitions)
        self._unacked: list[Inbound] = []  # processed, their acknowledgement pending
        self._ack_due: float | None = None  # monotonic time _unacked must go out by
        self.lost = False  # the partition lease was lost (rules.partitions)
        hooks = WebhookConfig.from_settings(self._config) if webhooks else None
        self._webhooks = None if hooks is None else NotifierThread(store, hooks)
        self._photos_swept: datetime | None = None
        # Seq gaps across a broker reconnect: data_quality points and incidents.
        settle = timedelta(seconds=settings.rules.uplink_gap_settle_s)
        self._gaps = UplinkGaps(city, settings.influx, settle=settle)

    # --- what a partition of a replica changes (rules.partitions) -----------------------
    def _client_id(self) -> str:
        return self._config.client_id

    def _subscriptions(self) -> list[str]:
        cameras = [self._topics.all_camera_analysis] if self._cameras else []
        return [self._topics.all_sensor_up, *cameras]

    def _scope(self) -> Collection[str] | None:
        """The kecamatan this service judges (None: all)."""
        return None

    def _fence(self, session: Session) -> None:
        """Runs first in every incident transaction; a partition checks its lease."""

    # --- lifecycle ------------------------------------------------------------------
    def start(self) -> None:
        """Connect, rebuild from InfluxDB (publishing what the rebuild opens), consume."""
        self.metrics.start()
        self._session.start()
        if self._webhooks is not None:
            self._webhooks.start()
        # Messages that arrive meanwhile wait in the inbox; publishes wait for the
        # connection. What an earlier run committed but did not publish goes first.
        self._publish_outbox()
        self._rebuild()
        self._worker.start()

    def wait_connected(self, timeout: float) -> bool:
        return self._session.wait_connected(timeout)

    def wait_subscribed(self, timeout: float) -> bool:
        """True once the broker has confirmed the subscription on the current connection."""
        return self._session.wait_subscribed(timeout)

    def stop(self) -> None:
        """Finish the batch in hand (unless a publish is stuck), then disconnect. Messages
        not yet processed stay unacknowledged in the broker's session."""
        self._stop.set()
        self._arrived.set()
        self._worker.join(timeout=30)
        if self._webhooks is not None:
            self._webhooks.stop()
        self._session.stop()
        self._gaps.close()
        self.metrics.stop()

    @property
    def rule_ids(self) -> tuple[str, ...]:
        return self._engine.rule_ids

    @property
    def watermark(self) -> datetime | None:
        return self._engine.watermark

    def advance_to(self, when: datetime, timeout: float = 30.0) -> bool:
        """Process everything before event time `when` once the messages received so far
        are handled: the flush for a replay of past event time (with ticks off), e.g. the
        scenario's end once its stream is done. True once done."""
        done = threading.Event()
        self._requests.put((when, done))
        self._arrived.set()
        return done.wait(timeout)

    def request_reload(self) -> None:
        """Reload the rule file at the next turn of the worker (SIGHUP)."""
        self._reload_requested.set()
        self._arrived.set()

    # --- the worker -----------------------------------------------------------------
    def _run(self) -> None:
        tick_every = self._config.tick_interval_s
        next_tick = time.monotonic() + tick_every
        next_reload_check = time.monotonic() + self._config.reload_check_s
        try:
            while not self._stop.is_set():
                batch = self._collect()
                readings = self._decode(batch)
                # Series-local verdicts (the crew alerts) are stored and published
                # before the watermark kinds catch up, which is bounded per turn.
                self._apply(self._engine.take(readings))
                budget = SETTLE_BUDGET + 2 * len(readings)
                changes = self._engine.settle(budget)
                changes += self._gaps.changes(self._clock.now(), caught_up=not self._inbox)
                # Uplinks this session never got and ingest stored: judged late.
                if repaired := self._gaps.take_repaired():
                    changes += self._engine.take(repaired)
                self._gaps.count(self.stats)
                now = time.monotonic()
                if tick_every > 0 and now >= next_tick:
                    changes += self._engine.tick(budget)
                    self._escalate()
                    next_tick = now + tick_every
                if self._reload_requested.is_set() or now >= next_reload_check:
                    changes += self._maybe_reload(force=self._reload_requested.is_set())
                    next_reload_check = now + self._config.reload_check_s
                self._apply(changes)
                self._report_quality()
                self._ack(batch)
                self._serve_requests()
            self._flush_acks()  # a clean stop: everything processed is acknowledged
        except Stopping:
            log.info("stopping with messages unacknowledged (redelivered later)")
        except LeaseLost as err:
            # Another replica owns the partition now: act on nothing more of it.
            log.warning("%s; stopping, messages in hand unacknowledged", err)
            self.lost = True
        except Exception:
            log.exception("rules worker failed; messages in hand stay unacknowledged")
            raise

    def _collect(self) -> list[Inbound]:
        """What the inbox holds now (up to batch_max_messages); when it is empty, wait
        for the first message at most batch_max_delay_s (so the tick, reloads and a stop
        are still looked at). No window here: the MQTT thread's (TURN_WINDOW_S) already
        made the trickle a batch, and a second one would double an alert's wait."""
        batch: list[Inbound] = []
        deadline = time.monotonic() + self._config.batch_max_delay_s
        limit = self._config.batch_max_messages
        inbox, arrived = self._inbox, self._arrived
        while len(batch) < limit:
            try:
                batch.append(inbox.popleft())
            except IndexError:
                if batch or self._stop.is_set() or not self._requests.empty():
                    break
                if self._reload_requested.is_set():
                    break
                due = deadline if self._ack_due is None else min(deadline, self._ack_due)
                left = due - time.monotonic()
                if left <= 0:
                    break
                # Cleared, then looked at again: a message appended in between has set
                # it again, so the wait below cannot miss it.
                arrived.clear()
                if not inbox and not self._stop.is_set() and self._requests.empty():
                    arrived.wait(left)
        return batch

    def _decode(self, batch: Sequence[Inbound], *, count: bool = True) -> list[Reading]:
        """Decode and validate as ingest does; rejects are ingest's to dead-letter."""
        out: list[Reading] = []
        rejected = 0
        fast = self._fast.read
        for item in batch:
            taken = fast(item.topic, item.payload, item.content_type, item.received_at)
            if taken is not None:
                device_id, readings = taken
                out += readings
                if count:
                    head = readings[0]
                    self._gaps.observe(
                        device_id, head.seq, head.time, item.generation, item.received_at
                    )
                continue
            if self._camera_reader is not None and self._camera_reader.handles(item.topic):
                camera = self._camera_reader.read(item.topic, item.payload, take=count)
                out += camera.readings
                rejected += camera.rejected
                continue
            read = self._reader.read(item.topic, item.payload, item.content_type, item.received_at)
            out += read.readings
            rejected += len(read.rejections)
            if count:
                first = read.readings[0] if read.readings else None
                unsequenced = first is not None and first.seq is None
                self._gaps.observe(
                    read.device_id,
                    None if first is None else first.seq,
                    None if first is None else first.time,
                    item.generation,
                    item.received_at,
                    times=[r.time for r in read.readings] if unsequenced else (),
                )
        if count:
            self.stats.rejected += rejected
            self.stats.readings += len(out)
        return out

    def _report_quality(self) -> None:
        """What the engine reported instead of judging: stale and too-old readings become
        data_quality points; sources going idle and coming back are logged and counted
        (frequent, and a write in the worker would delay the next alerts)."""
        stats, engine = self.stats, self._engine.stats
        stats.late, stats.too_old, stats.stale = engine.late, engine.too_old, engine.stale
        reported = self._engine.drain_quality()
        if not reported:
            return
        points = [q for q in reported if q.kind in ("too_old", "stale")]
        if points:
            self._gaps.queue(
                [input_quality_line(q.kind, q.subject, q.at, q.detail) for q in points]
            )
        for q in reported:
            if q.kind in ("source_idle", "source_back"):
                log.info("source %s: %s (%s)", q.subject, q.kind, q.detail)
        stats.sources_idle = self._engine.sources_idle()

    def _serve_requests(self) -> None:
        if self._inbox or self._requests.empty():  # inbox done first; no Empty raised a turn
            return
        while True:
            try:
                when, done = self._requests.get_nowait()
            except queue.Empty:
                return
            self._apply(self._engine.advance_watermark(when))
            done.set()

    def _maybe_reload(self, *, force: bool) -> list[ConditionChange]:
        self._reload_requested.clear()
        mtime = self._mtime()
        if not force and mtime == self._rules_mtime:
            return []
        self._rules_mtime = mtime
        try:
            rules: RuleSet = load_rules(self.rules_path, self._rules_city)
        except (ConfigError, ConfigErrors) as err:
            self.stats.reload_errors += 1
            log.error("rule file not reloaded, the old rules stay in force:\n%s", err)
            return []
        self._rules = rules
        changes = self._engine.reload(rules)
        self.stats.reloads += 1  # after the engine has the new rules (a test reads both)
        return changes

    def _mtime(self) -> float | None:
        try:
            return self.rules_path.stat().st_mtime
        except OSError:
            return None

    # --- store, publish, ack --------------------------------------------------------
    def _apply(self, changes: Iterable[ConditionChange]) -> None:
        """Store each change with the messages it owes (one transaction, the outbox),
        then publish every unsent outbox row and wait for the broker."""
        for change in changes:
            self.stats.changes += 1
            update = self._store.apply(change, compose=self._composer(change), fence=self._fence)
            if update.kind is UpdateKind.OPENED:
                self.stats.opened += 1
                # Device time -> opening: near zero in order, the wait of a late reading.
                delay = (self._clock.now() - change.at).total_seconds()
                self.metrics.detection.observe(max(delay, 0.0))
                if delay > self._rules.lateness.total_seconds():
                    log.info(
                        "%s in %s opened %.0f s after its device time (late readings)",
                        change.key.rule_id,
                        change.key.zone_id,
                        delay,
                    )
            if update.outbox:
                self._outbox_dirty = True
                self._owed += update.outbox
            inc = update.incident
            for m in update.outbox:
                if m.kind is OutboxKind.ALERT and inc is not None:
                    log.info(
                        "incident %d %s in %s (%s): alert to %s",
                        inc.id,
                        inc.key.hazard,
                        inc.key.zone_id,
                        inc.severity_current.name.lower(),
                        m.crew_id,
                    )
        self._publish_outbox()

    def _composer(self, change: ConditionChange) -> Callable[[IncidentUpdate], Dispatch]:
        def compose(update: IncidentUpdate) -> Dispatch:
            assert update.incident is not None
            zone_name = self._zones.zone(update.incident.key.zone_id).name
            return change_dispatch(update, change, self._router, zone_name, self._topics)

        return compose

    def _escalate(self) -> None:
        """Escalate unacknowledged incidents past their acknowledge-by time (the
        service's clock); the alerts go out with the next outbox round. Also prunes
        old, settled outbox rows."""
        retention = self._config.outbox_retention_s
        if retention > 0:
            self._store.prune_outbox(
                self._clock.now() - timedelta(seconds=retention),
                keep_pending=self._webhooks is not None,
            )
        now = self._clock.now()
        if self._photos_swept is None or now - self._photos_swept >= timedelta(hours=1):
            days = self._settings.retention.report_photo_days  # citizen photos: hourly
            drop_report_photos(self._store.engine, now - timedelta(days=days))
            self._photos_swept = now
        if not self._config.escalation:
            return
        raised = escalate_due(
            self._store, self._router, self._clock.now(), root=self._settings.mqtt.root
        )
        if raised:
            self.stats.escalations += len(raised)
            self._outbox_dirty = True

    def _publish_outbox(self) -> None:
        """Publish unsent outbox rows in id order (QoS 1), wait for the PUBACKs, then
        mark them sent. A crash in between sends them again (receivers dedupe on the
        message id); a stop leaves them for the next start."""
        self._owed = []
        if not self._outbox_dirty:
            return
        limit = self._config.outbox_batch
        while True:
            rows = self._store.unpublished(limit)
            if rows:
                self._publisher.publish(rows)
                self._store.mark_published([m.id for m in rows])
                self._count_published(rows)
            if len(rows) < limit:
                break
        self._outbox_dirty = False
        if self._webhooks is not None:
            self._webhooks.wake()

    def _count_published(self, rows: Sequence[OutboxMessage]) -> None:
        count_published(self.stats, rows)

    def _ack(self, batch: Sequence[Inbound]) -> None:
        """The batch is done: acknowledge it with the others of the last ACK_EVERY_S."""
        if batch:
            self.metrics.done(batch, self._clock.now())
            self._unacked += batch
            if self._ack_due is None:
                self._ack_due = time.monotonic() + ACK_EVERY_S
        if not self._unacked:
            self.metrics.acked((), self._clock.now(), self.stats)  # counters follow stats
        elif len(self._unacked) >= ACK_MAX or time.monotonic() >= (self._ack_due or 0.0):
            self._flush_acks()

    def _flush_acks(self) -> None:
        done, self._unacked, self._ack_due = self._unacked, [], None
        if not done:
            return
        self._session.ack(done)
        self.stats.messages += len(done)
        self.metrics.acked(done, self._clock.now(), self.stats)

    # --- rebuild --------------------------------------------------------------------
    def _rebuild(self) -> None:
        """Replay the last window of readings from InfluxDB, then hand the open verdicts
        to the store: it recognises incidents it holds, so nothing opens twice."""
        self._await_history()
        history = self._history()
        self._engine, current = RuleEngine.rebuild(
            self._rules_city, self._rules, self._clock, history, kecamatan=self._scope()
        )
        self.stats.rebuilt_readings = len(history)
        self._apply(current)
        log.info(
            "rebuilt from %d readings: %d open verdicts, watermark %s",
            len(history),
            len(current),
            self._engine.watermark,
        )

    def _await_history(self) -> None:
        """Wait (at most rebuild_wait_s) until InfluxDB holds what the last run acked.

        Readings the previous run acknowledged come back only through InfluxDB, which
        ingest fills on its own schedule; the messages it never acknowledged are
        redelivered now, first in the inbox. Rebuilding before ingest has stored what
        precedes the first redelivered reading would leave a hole in every series:
        sensors would look silent and holds would restart (seen in the restart test).
        """
        if self._influx is None or self._config.rebuild_window_s <= 0:
            return
        wait = self.redelivery_wait_s
        if not self._session.wait_connected(wait) or not self._session.session_present:
            return  # a new session has no backlog, and nothing was acknowledged before
        deadline = time.monotonic() + wait
        # A persistent session's backlog arrives right after CONNACK.
        while not self._inbox and not self._stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._arrived.clear()
            if not self._inbox:
                self._arrived.wait(left)
        first = min(
            (r.time for r in self._decode(self._peek(PEEK_MESSAGES), count=False)),
            default=None,
        )
        if first is None:
            return  # nothing pending: the last run had acknowledged everything it got
        await_stored(
            self._influx,
            first,
            window_s=self._config.rebuild_window_s,
            wait_s=self._config.rebuild_wait_s,
        )

    def _peek(self, n: int) -> list[Inbound]:
        # By index: iterating a deque the MQTT thread appends to may raise.
        return [self._inbox[i] for i in range(min(n, len(self._inbox)))]

    def _history(self) -> list[Reading]:
        window = self._config.rebuild_window_s
        if self._influx is None or window <= 0:
            return []
        since = self._clock.now() - timedelta(seconds=window)
        return rebuild_history(self._influx, self._city, self._cameras, since)
