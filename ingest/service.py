"""The ingest service: MQTT in, InfluxDB out, an MQTT message acknowledged only after
its readings are written (paho manual ack), so a crash never loses an accepted reading.

Threads: paho's network loop only queues messages; a decoder thread decodes, validates
and batches; a writer thread writes each batch, publishes its dead letters and then
acknowledges its messages, batch after batch, so acks keep arrival order. The MQTT v5
Receive Maximum bounds how many unacknowledged messages the broker sends, so memory
stays bounded while InfluxDB is down: the broker holds the rest in the session.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ingest import deadletter
from ingest.deadletter import Rejection
from ingest.metrics import IngestMetrics
from ingest.pipeline import Pipeline
from ingest.writers import InfluxWriter, WriteRejected, WriteUnavailable
from pantau.city import City
from pantau.clock import Clock, SystemClock
from pantau.mqtt_session import Inbound, SessionConsumer
from pantau.settings import Settings
from pantau.topics import Topics

log = logging.getLogger(__name__)

POLL_S = 0.002
BACKOFF_MAX_S = 30.0


class Stopping(Exception):
    """The service is stopping: leave the batch unacknowledged for redelivery."""


@dataclass(slots=True)
class _Batch:
    items: list[Inbound] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)


@dataclass(slots=True)
class IngestStats:
    messages: int = 0
    readings_written: int = 0
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
    ) -> None:
        self._settings = settings
        self._topics = Topics(settings.mqtt.root)
        self._pipeline = Pipeline(city, self._topics, settings.ingest)
        self._writer = writer
        self._clock = clock or SystemClock()
        self.stats = IngestStats()
        self._stop = threading.Event()
        self._session = SessionConsumer(
            settings.mqtt,
            settings.ingest.client_id,
            self._topics.all_sensor_up,
            session_expiry_s=settings.ingest.session_expiry_s,
            receive_maximum=settings.ingest.receive_maximum,
            clock=self._clock,
        )
        self._client = self._session.client  # dead letters are published on it
        # Two batches in hand at most: one being written, one decoded and waiting.
        self._batches: queue.Queue[_Batch | None] = queue.Queue(maxsize=1)
        self._writer_failed = threading.Event()
        self._decode_thread = threading.Thread(
            target=self._decode, name="ingest-decode", daemon=True
        )
        self._write_thread = threading.Thread(
            target=self._write_batches, name="ingest-write", daemon=True
        )
        self.metrics = IngestMetrics(
            settings, lambda: len(self._session.inbox) + self._batches.qsize()
        )

    # --- lifecycle ------------------------------------------------------------------
    def start(self) -> None:
        self.metrics.start()
        self._session.start()
        self._decode_thread.start()
        self._write_thread.start()

    def wait_connected(self, timeout: float) -> bool:
        return self._session.wait_connected(timeout)

    def wait_subscribed(self, timeout: float) -> bool:
        """True once the broker has confirmed the subscription on the current connection."""
        return self._session.wait_subscribed(timeout)

    def stop(self) -> None:
        """Flush what is buffered if InfluxDB takes it, then disconnect."""
        self._stop.set()
        self._decode_thread.join(timeout=30)
        self._write_thread.join(timeout=30)
        self._session.stop()
        self._writer.close()
        self.metrics.stop()

    # --- decoder and writer threads ---------------------------------------------------
    def _decode(self) -> None:
        """Decode, validate and batch; hand full batches to the writer thread, so the next
        batch is decoded while InfluxDB takes the previous one."""
        max_points = self._settings.ingest.batch_max_points
        max_delay = self._settings.ingest.batch_max_delay_s
        inbox = self._session.inbox
        try:
            while True:
                batch = _Batch()
                deadline = None
                while len(batch.lines) < max_points:
                    if deadline is not None and time.monotonic() >= deadline:
                        break
                    try:
                        item = inbox.popleft()
                    except IndexError:
                        if deadline is None and self._stop.is_set():
                            return
                        time.sleep(POLL_S)
                        continue
                    if deadline is None:
                        deadline = time.monotonic() + max_delay
                    batch.items.append(item)
                    outcome = self._pipeline.handle(
                        item.topic, item.payload, item.content_type, item.received_at
                    )
                    batch.lines.extend(outcome.lines)
                    batch.rejections.extend(outcome.rejections)
                if not self._hand_over(batch):
                    return
        finally:
            self._hand_over(None)  # tells the writer no more batches come

    def _hand_over(self, batch: _Batch | None) -> bool:
        """Queue `batch` for the writer, waiting while it is busy (InfluxDB slow or down:
        the broker holds the rest). False if the writer has given up."""
        while not self._writer_failed.is_set():
            try:
                self._batches.put(batch, timeout=0.5)
                return True
            except queue.Full:
                continue
        return False

    def _write_batches(self) -> None:
        while (batch := self._batches.get()) is not None:
            try:
                self._flush(batch)
            except Stopping:
                self._writer_failed.set()
                log.info(
                    "stopping with %d messages unacknowledged (redelivered later)",
                    len(batch.items),
                )
                return

    def _flush(self, batch: _Batch) -> None:
        started = time.monotonic()
        rejections = batch.rejections
        if batch.lines:
            for line, err in self._write(batch.lines):
                rejections.append(
                    Rejection(
                        "influx_rejected",
                        err.message,
                        "",
                        line.encode("utf-8"),
                        self._clock.now(),
                    )
                )
        write_s = time.monotonic() - started
        self.stats.write_seconds += write_s
        self._publish_dead_letters(rejections)
        self._session.ack(batch.items)
        self.stats.messages += len(batch.items)
        self.stats.readings_written += len(batch.lines)
        self.stats.batches += 1
        for rejection in rejections:
            self.stats.rejected[rejection.reason] += 1
        self.metrics.batch(
            len(batch.items), len(batch.lines), (r.reason for r in rejections), write_s
        )

    def _write(self, lines: list[str]) -> list[tuple[str, WriteRejected]]:
        """Write all lines, retrying while InfluxDB is unavailable; return the lines it
        refused, isolated by bisection so one bad line does not sink its batch."""
        try:
            self._retrying(lines)
        except WriteRejected as err:
            if len(lines) == 1:
                log.warning("InfluxDB refused %r: %s", lines[0][:200], err.message)
                return [(lines[0], err)]
            half = len(lines) // 2
            return self._write(lines[:half]) + self._write(lines[half:])
        return []

    def _retrying(self, lines: list[str]) -> None:
        delay = 0.2
        while True:
            try:
                self._writer.write(lines)
                return
            except WriteUnavailable as err:
                log.warning("InfluxDB unavailable (%s); retrying in %.1fs", err, delay)
            if self._stop.wait(delay):
                raise Stopping
            delay = min(delay * 2, BACKOFF_MAX_S)

    def _publish_dead_letters(self, rejections: Sequence[Rejection]) -> None:
        infos = []
        for rejection in rejections:
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            props.ContentType = "application/json"
            props.UserProperty = [("reason", rejection.reason)]
            infos.append(
                self._client.publish(
                    self._topics.deadletter(rejection.reason),
                    deadletter.encode(rejection),
                    qos=1,
                    properties=props,
                )
            )
        for info in infos:
            # Not acknowledged by the broker in time (e.g. it went away): the originals stay
            # unacknowledged too and come back with the session.
            while not info.is_published():
                if self._stop.is_set():
                    raise Stopping
                try:
                    info.wait_for_publish(timeout=1.0)
                except (RuntimeError, ValueError):
                    # paho raises when the message cannot be sent on this connection.
                    if self._stop.wait(1.0):
                        raise Stopping from None
