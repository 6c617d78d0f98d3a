"""The ingest service: MQTT in, durable spool, InfluxDB out.

An MQTT message is acknowledged once its readings are in the on-disk spool
(ingest.spool, fsynced), not once InfluxDB has them: an InfluxDB outage then fills
local disk instead of the broker's session, and a crash loses nothing acknowledged.

Threads: paho's network loop only queues messages; a decoder thread decodes, validates
and batches; a spool thread appends each batch (one fsync per batch: group commit),
publishes its dead letters and acknowledges its messages, in arrival order; a drain
thread reads the spool in order, in chunks of up to `drain_batch_bytes`, and hands
each to one of `write_concurrency` writer threads, so that InfluxDB parses one chunk
while the next is on its way. A writer sends the chunk's records as they are in the
spool (one body, no copy per line), retrying 429/5xx for as long as it takes, and
isolates what InfluxDB refuses (4xx, by bisection). The drain then, strictly in spool
order and only once a chunk and every chunk before it are written, dead-letters the
refused lines with the server's reason and moves the spool's cursor past the chunk
(whole segments behind it are deleted): a crash or a stop never skips a chunk still
in flight, it writes it again in the next run. Chunks may land in InfluxDB out of
order; a point is measurement + tags + device time, so order does not change what is
stored, but for one point sent twice with different values within `write_concurrency`
chunks, either may win. A full spool blocks the spool thread: ingest stops
acknowledging and the MQTT v5 Receive Maximum stops the broker sending more.
"""

from __future__ import annotations

import logging
import math
import queue
import shutil
import threading
import time
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ingest import deadletter
from ingest.deadletter import Rejection
from ingest.metrics import IngestMetrics
from ingest.pipeline import Outcome, Pipeline
from ingest.spool import Spool
from ingest.writes import ChunkWriter, Stopping, Write
from pantau.cameras import Camera
from pantau.city import City
from pantau.clock import Clock, SystemClock
from pantau.influx.writers import InfluxWriter
from pantau.mqtt_fast import FastPublish
from pantau.mqtt_session import Inbound, SessionConsumer
from pantau.settings import Settings
from pantau.topics import Topics

log = logging.getLogger(__name__)

IDLE_WAIT_S = 5.0  # an idle decoder wakes this seldom; arrivals and stop() wake it at once
QUIET_GAPS = 2.0  # a batch ends once the inbox stays empty this many usual gaps
GAP_HALF_LIFE_S = 0.1  # how fast the usual gap is forgotten (_refilled)
# What an inbox message costs beside its payload (the Inbound, its topic, the packet id's
# entry; tracemalloc: ~340 bytes), so the byte bound holds for small messages too.
MESSAGE_BYTES = 340
HOLD_WAIT_S = 0.005  # a full inbox: how long the network thread waits for room per pass


class WakingSession(SessionConsumer):
    """A SessionConsumer that sets `arrived` when a message lands in the inbox, so the
    decoder sleeps until there is work instead of polling (an idle ingest costs nothing),
    and stops reading the socket while the inbox holds `max_messages` or `max_bytes`
    (payloads plus MESSAGE_BYTES each): a burst then waits at the broker, not in ingest's
    memory."""

    def __init__(self, *args: Any, max_messages: int, max_bytes: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.arrived = threading.Event()
        self._max_messages = max_messages
        self._max_bytes = max_bytes
        # Bytes into and out of the inbox; one writer each (network thread, decoder).
        self.received_bytes = 0
        self.taken_bytes = 0
        self.client.hold_reading = self._full

    def _on_publishes(self, publishes: list[FastPublish]) -> None:
        self.received_bytes += sum(len(p[2]) for p in publishes) + MESSAGE_BYTES * len(publishes)
        super()._on_publishes(publishes)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        self.received_bytes += len(message.payload) + MESSAGE_BYTES
        super()._on_message(client, userdata, message)
        self.wake()

    def _full(self) -> bool:
        """The network thread, before a read pass: wait a little if the inbox is full,
        then say whether it still is (paho writes the acks meanwhile)."""
        for wait in (HOLD_WAIT_S, 0.0):
            if (
                len(self.inbox) < self._max_messages
                and self.received_bytes - self.taken_bytes < self._max_bytes
            ):
                return False
            time.sleep(wait)
        return True

    def wake(self) -> None:
        if not self.arrived.is_set():  # a plain read: no lock per message at full rate
            self.arrived.set()


@dataclass(slots=True)
class HttpWaiter:
    """What an HTTP request waits for: its outcome, once spooled and dead-lettered."""

    done: threading.Event = field(default_factory=threading.Event)
    outcome: Outcome | None = None


@dataclass(slots=True)
class HttpInbound(Inbound):
    """A message POSTed to the HTTP intake (ingest.http): it takes the MQTT messages' way
    through decoding, the budget, the spool and the dead letters; QoS 0, so nothing is
    acknowledged to the broker for it."""

    waiter: HttpWaiter = field(default_factory=HttpWaiter)


@dataclass(slots=True)
class _Batch:
    items: list[Inbound] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    ended: str = "full"  # why it was handed over (the debug timeline says)


@dataclass(slots=True)
class IngestStats:
    messages: int = 0  # acknowledged (their readings spooled)
    readings_spooled: int = 0
    readings_written: int = 0  # taken by InfluxDB
    batches: int = 0
    write_seconds: float = 0.0
    rejected: Counter[str] = field(default_factory=Counter)


class IngestService:
    def __init__(
        self,
        settings: Settings,
        city: City,
        writer: InfluxWriter,
        clock: Clock | None = None,
        cameras: Mapping[str, Camera] | None = None,
        *,
        share_group: str | None = None,
        metrics_name: str = "ingest",
    ) -> None:
        """With `cameras`, camera analyses and states are stored too (ingest.cameras).
        With `share_group`, the session subscribes `$share/{group}/...` (one of the
        partition sessions of ingest.partitions)."""
        self._settings = settings
        self._topics = Topics(settings.mqtt.root)
        self._pipeline = Pipeline(city, self._topics, settings.ingest, cameras)
        self._writer = writer
        self._clock = clock or SystemClock()
        self.stats = IngestStats()
        self._stop = threading.Event()  # no more input: finish the batches in hand
        self._abort = threading.Event()  # give up on InfluxDB: the spool keeps the rest
        self._chunk_writer = ChunkWriter(writer, self._abort, self._clock)
        self.spool = Spool(
            settings.ingest.spool_path(settings.mqtt.root, settings.influx.database),
            max_bytes=settings.ingest.spool_max_bytes,
            segment_bytes=settings.ingest.spool_segment_bytes,
        )
        self._session = WakingSession(
            settings.mqtt,
            settings.ingest.client_id,
            [
                f if share_group is None else f"$share/{share_group}/{f}"
                for f in self._pipeline.topic_filters
            ],
            session_expiry_s=settings.ingest.session_expiry_s,
            receive_maximum=settings.ingest.receive_maximum,
            clock=self._clock,
            fast_publishes=True,
            max_messages=settings.ingest.receive_maximum,
            max_bytes=settings.ingest.inbox_max_bytes,
        )
        self._client = self._session.client  # dead letters are published on it
        # Two batches in hand at most: one being spooled, one decoded and waiting.
        self._batches: queue.Queue[_Batch | None] = queue.Queue(maxsize=1)
        self._spool_failed = threading.Event()
        self._gap = 0.0  # the usual gap between arrivals into an empty inbox (_refilled)
        self._gap_at = 0.0
        self._last_arrival: float | None = None
        self._decode_thread = threading.Thread(
            target=self._decode, name="ingest-decode", daemon=True
        )
        self._spool_thread = threading.Thread(
            target=self._spool_batches, name="ingest-spool", daemon=True
        )
        self._drain_thread = threading.Thread(target=self._drain, name="ingest-drain", daemon=True)
        self.metrics = IngestMetrics(
            settings,
            lambda: len(self._session.inbox) + self._batches.qsize(),
            metrics_name,
            spool_bytes=self.spool.disk_bytes,
        )

    # --- lifecycle ------------------------------------------------------------------
    def start(self) -> None:
        self.spool.open()  # before subscribing: a spool in use elsewhere stops us here
        self.metrics.start(self._writer)
        self._session.start()
        self._decode_thread.start()
        self._spool_thread.start()
        self._drain_thread.start()

    def wait_connected(self, timeout: float) -> bool:
        return self._session.wait_connected(timeout)

    def wait_subscribed(self, timeout: float) -> bool:
        """True once the broker has confirmed the subscription on the current connection."""
        return self._session.wait_subscribed(timeout)

    @property
    def connects(self) -> int:
        """Connections made to the broker so far (reconnects included)."""
        return self._session.connects

    def inbox(self) -> tuple[int, int]:
        """Messages and their bytes (payloads plus MESSAGE_BYTES each) received and not
        yet decoded (HTTP ones uncounted)."""
        session = self._session
        return len(session.inbox), session.received_bytes - session.taken_bytes

    def stop(self) -> None:
        """Spool and acknowledge what is in hand, write the spool out for up to
        `stop_drain_s` if InfluxDB takes it, then disconnect."""
        self._stop.set()
        self._session.wake()
        self._decode_thread.join(timeout=30)
        self._spool_thread.join(timeout=30)
        self._drain_thread.join(timeout=self._settings.ingest.stop_drain_s)
        self._abort.set()
        self._drain_thread.join(timeout=30)
        self._session.stop()
        self.metrics.stop()
        self._writer.close()
        drained = self.spool.drained() and not self._drain_thread.is_alive()
        self.spool.close()
        if drained and self._settings.ingest.spool_dir is None:
            # A default spool is per destination (tests make many): leave no empty ones.
            shutil.rmtree(self.spool.directory, ignore_errors=True)

    def submit(
        self, device_id: str, payload: bytes, content_type: str | None, timeout: float
    ) -> Outcome | None:
        """One HTTP message through the MQTT messages' path; its outcome once its readings
        are in the spool and its dead letters published, or None if that took longer than
        `timeout` or ingest is saturated (the caller answers 503: try again)."""
        if self._stop.is_set() or len(self._session.inbox) >= self._settings.ingest.receive_maximum:
            return None
        item = HttpInbound(
            generation=-1,
            mid=0,
            qos=0,
            topic=self._topics.sensor_up(device_id),
            payload=payload,
            content_type=content_type,
            received_at=self._clock.now(),
        )
        self._session.inbox.append(item)
        self._session.wake()
        return item.waiter.outcome if item.waiter.done.wait(timeout) else None

    # --- decoder thread -------------------------------------------------------------------
    def _decode(self) -> None:
        """Decode, validate and batch; hand each batch to the spool thread, so the next
        batch is decoded while the previous one is fsynced."""
        try:
            while (batch := self._next_batch()) is not None:
                if log.isEnabledFor(logging.DEBUG):  # bench.ingest's timeline reads these
                    log.debug(
                        "batch formed at %.6f: %d messages (%s)",
                        time.time(),
                        len(batch.items),
                        batch.ended,
                    )
                if not self._hand_over(batch):
                    return
        finally:
            self._hand_over(None)  # tells the spool thread no more batches come

    def _next_batch(self) -> _Batch | None:
        """The next batch: full (batch_max_points), batch_max_delay_s old, quiet for
        batch_quiet_s, or holding an HTTP request; None once stopped with nothing in hand."""
        max_points = self._settings.ingest.batch_max_points
        session = self._session
        inbox = session.inbox
        batch = _Batch()
        deadline = None
        dry_since = None  # when the batch found the inbox empty, cleared by an arrival
        quiet_until = None
        dry = False  # the inbox was found empty since the last arrival
        http_waiting = False
        while len(batch.lines) < max_points:
            if deadline is not None and time.monotonic() >= deadline:
                batch.ended = "linger"
                break
            try:
                item = inbox.popleft()
            except IndexError:
                dry = True
                if deadline is None and self._stop.is_set():
                    return None
                if http_waiting:  # a request waits: nothing more to group, go
                    batch.ended = "http"
                    break
                if deadline is not None:
                    # Group commit: under load the inbox never stays empty this long, so
                    # batches still fill; once nothing has come for batch_quiet_s, and for
                    # QUIET_GAPS of the usual gaps between arrivals (a stream paced in ticks
                    # keeps its batches), the burst is over, and waiting out the deadline
                    # would only delay its acks and its write to InfluxDB.
                    # The usual gap fades while we wait: look again every half-life.
                    now = time.monotonic()
                    dry_since = now if dry_since is None else dry_since
                    quiet_until = dry_since + max(
                        self._settings.ingest.batch_quiet_s, QUIET_GAPS * self._usual_gap(now)
                    )
                    if now >= quiet_until:
                        batch.ended = "quiet"
                        break
                self._wait_for_arrival(
                    IDLE_WAIT_S
                    if deadline is None or quiet_until is None
                    else min(deadline, quiet_until, now + GAP_HALF_LIFE_S) - time.monotonic()
                )
                continue
            if dry:
                self._refilled()
                dry = False
            dry_since = quiet_until = None
            if deadline is None:
                deadline = time.monotonic() + self._settings.ingest.batch_max_delay_s
            batch.items.append(item)
            outcome = self._pipeline.handle(
                item.topic, item.payload, item.content_type, item.received_at
            )
            batch.lines.extend(outcome.lines)
            batch.rejections.extend(outcome.rejections)
            if isinstance(item, HttpInbound):
                item.waiter.outcome = outcome
                http_waiting = True
            else:
                session.taken_bytes += len(item.payload) + MESSAGE_BYTES
        return batch

    def _wait_for_arrival(self, timeout: float) -> None:
        # Clear, then look again: an arrival after the clear sets it anew.
        self._session.arrived.clear()
        if not self._session.inbox:
            self._session.arrived.wait(max(timeout, 0.0))

    def _refilled(self) -> None:
        """The inbox ran dry and has a message again: note the gap since the last time.
        The usual gap is the longest recent one (a stream paced in ticks arrives in a
        few read passes per tick: an average would take the short gaps within a tick for
        its pace), forgotten with a half-life of GAP_HALF_LIFE_S, so that after a
        second of arrivals that never let the inbox run dry (a burst) it is ~0 again."""
        now = time.monotonic()
        if self._last_arrival is not None:  # the first arrival has no gap before it
            gap = min(now - self._last_arrival, self._settings.ingest.batch_max_delay_s)
            self._gap = max(gap, self._usual_gap(now))
            self._gap_at = now
        self._last_arrival = now

    def _usual_gap(self, now: float) -> float:
        return self._gap * math.pow(0.5, (now - self._gap_at) / GAP_HALF_LIFE_S)

    def _hand_over(self, batch: _Batch | None) -> bool:
        """Queue `batch` for the spool thread, waiting while it is busy (spool full: the
        broker holds the rest). False if the spool thread has given up."""
        while not self._spool_failed.is_set():
            try:
                self._batches.put(batch, timeout=0.5)
                return True
            except queue.Full:
                continue
        return False

    # --- spool thread ---------------------------------------------------------------------
    def _spool_batches(self) -> None:
        while (batch := self._batches.get()) is not None:
            try:
                self._spool_batch(batch)
            except Stopping:
                self._spool_failed.set()
                log.info(
                    "stopping with %d messages unacknowledged (redelivered later)",
                    len(batch.items),
                )
                return

    def _spool_batch(self, batch: _Batch) -> None:
        if batch.lines:
            record = "\n".join(batch.lines).encode("utf-8")
            # While full, wait for the drain; at stop, give up (the broker redelivers).
            while True:
                try:
                    if not self.spool.append([record], self._stop):
                        raise Stopping
                    break
                except OSError as err:  # disk full or failing: nothing acked, try again
                    log.error("cannot append to the spool (%s); retrying", err)
                    if self._stop.wait(1.0):
                        raise Stopping from err
        if log.isEnabledFor(logging.DEBUG):
            log.debug("batch spooled at %.6f: %d lines", time.time(), len(batch.lines))
        self._publish_dead_letters(batch.rejections, self._stop)
        self._session.ack(batch.items)
        for item in batch.items:
            if isinstance(item, HttpInbound):  # durable now: the request may answer
                item.waiter.done.set()
        self.stats.messages += len(batch.items)
        self.stats.readings_spooled += len(batch.lines)
        self.stats.batches += 1
        for rejection in batch.rejections:
            self.stats.rejected[rejection.reason] += 1
        self.metrics.batch(len(batch.items), 0, (r.reason for r in batch.rejections), 0.0)

    # --- drain thread and its writers -------------------------------------------------------
    def _drain(self) -> None:
        """Read the spool in order and hand each chunk to a writer thread, up to
        `write_concurrency` chunks in flight (InfluxDB parses one while the next is sent);
        publish each chunk's dead letters and commit it, in spool order, once it and every
        chunk before it are written. Only this thread reads and commits the spool."""
        concurrency = self._settings.ingest.write_concurrency
        max_bytes = self._settings.ingest.drain_batch_bytes
        writes: queue.Queue[Write | None] = queue.Queue()
        writers = [
            threading.Thread(
                target=self._write_chunks, args=(writes,), name=f"ingest-write-{i}", daemon=True
            )
            for i in range(concurrency)
        ]
        for writer in writers:
            writer.start()
        in_flight: deque[Write] = deque()  # in spool order, written or not

        def head_written() -> bool:
            return bool(in_flight) and in_flight[0].done.is_set()

        try:
            while not self._abort.is_set():
                while head_written():
                    self._commit(in_flight.popleft())
                if len(in_flight) >= concurrency:
                    in_flight[0].done.wait(0.2)
                    continue
                # A writer done with the oldest chunk ends this wait (spool.wake).
                chunk = self.spool.read(max_bytes, timeout=0.2, until=head_written)
                if chunk is not None:
                    write = Write(chunk)
                    in_flight.append(write)
                    writes.put(write)
                elif not in_flight and self._stop.is_set() and not self._spool_thread.is_alive():
                    return  # everything spooled is in InfluxDB
            # Giving up on InfluxDB (stopping): the writers give up too, and what they
            # wrote before the first chunk they did not still moves the cursor.
            while in_flight and in_flight[0].done.wait() and in_flight[0].error is None:
                self._commit(in_flight.popleft())
        except Stopping:
            pass
        except BaseException:
            self._abort.set()  # a bug: the writers give up too
            raise
        finally:
            for _ in writers:
                writes.put(None)
        if pending := self.spool.pending_bytes():
            log.info("stopping with %d bytes spooled for the next run", pending)

    def _write_chunks(self, writes: queue.Queue[Write | None]) -> None:
        """A writer thread: write chunks to InfluxDB as the drain hands them over."""
        while (write := writes.get()) is not None:
            try:
                write.result = self._chunk_writer.write(write.chunk)
            except Exception as err:  # Stopping, or a bug: the drain re-raises it
                write.error = err
            finally:
                write.done.set()
                self.spool.wake()

    def _commit(self, write: Write) -> None:
        """The drain: `write` and every chunk before it are written; publish its dead
        letters and move the cursor past it."""
        if write.error is not None:
            raise write.error
        result = write.result
        assert result is not None
        # Dead letters before the commit: a crash in between sends them again, never none.
        self._publish_dead_letters(result.rejections, self._abort)
        self.spool.commit(write.chunk.end)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("chunk committed at %.6f: %d lines", time.time(), result.lines)
        self.stats.write_seconds += result.seconds
        self.stats.readings_written += result.lines - len(result.rejections)
        for rejection in result.rejections:
            self.stats.rejected[rejection.reason] += 1
        self.metrics.batch(0, result.lines, (r.reason for r in result.rejections), result.seconds)

    def _publish_dead_letters(
        self, rejections: Sequence[Rejection], give_up: threading.Event
    ) -> None:
        """Publish each at QoS 1 and wait for the broker's PUBACK; those that could not
        be sent on this connection are published again once it is back (a dead letter may
        come twice, never not at all)."""
        pending = list(rejections)
        while pending:
            infos = [(r, self._publish_dead_letter(r)) for r in pending]
            pending = [r for r, info in infos if not self._published(info, give_up)]
            if pending and give_up.wait(1.0):
                raise Stopping

    def _publish_dead_letter(self, rejection: Rejection) -> mqtt.MQTTMessageInfo:
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.ContentType = "application/json"
        props.UserProperty = [("reason", rejection.reason)]
        return self._client.publish(
            self._topics.deadletter(rejection.reason),
            deadletter.encode(rejection),
            qos=1,
            properties=props,
        )

    @staticmethod
    def _published(info: mqtt.MQTTMessageInfo, give_up: threading.Event) -> bool:
        """True once acknowledged; False if it was never sent (no connection: paho's
        is_published and wait_for_publish raise then, for good)."""
        while True:
            if give_up.is_set():
                raise Stopping
            try:
                if info.is_published():
                    return True
                info.wait_for_publish(timeout=1.0)
            except (RuntimeError, ValueError):
                return False
