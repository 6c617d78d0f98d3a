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
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from ingest import deadletter
from ingest.deadletter import Rejection
from ingest.pipeline import Pipeline
from ingest.writers import InfluxWriter, WriteRejected, WriteUnavailable
from pantau.city import City
from pantau.clock import Clock, SystemClock
from pantau.mqtt import connect_properties, content_type, make_client
from pantau.settings import Settings
from pantau.topics import Topics

log = logging.getLogger(__name__)

POLL_S = 0.002
BACKOFF_MAX_S = 30.0


class Stopping(Exception):
    """The service is stopping: leave the batch unacknowledged for redelivery."""


@dataclass(frozen=True, slots=True)
class _Inbound:
    generation: int  # connection number: mids are only valid on their own connection
    mid: int
    qos: int
    topic: str
    payload: bytes
    content_type: str | None
    received_at: Any  # datetime; Any keeps the hot path free of a cast


@dataclass(slots=True)
class _Batch:
    items: list[_Inbound] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)


@dataclass(slots=True)
class IngestStats:
    messages: int = 0
    readings_written: int = 0
    batches: int = 0
    write_seconds: float = 0.0
    rejected: Counter[str] = field(default_factory=Counter)
    connects: int = 0


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
        # A deque, not queue.Queue: append/popleft are atomic, and the Queue's two
        # condition variables cost ~15% of ingest CPU at 10k msg/s. Receive Maximum
        # bounds its length; the worker polls it.
        self._inbox: deque[_Inbound] = deque()
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self._generation = 0
        self._ack_lock = threading.Lock()
        self.stats = IngestStats()
        self._client = make_client(settings.mqtt, settings.ingest.client_id, manual_ack=True)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe
        # Two batches in hand at most: one being written, one decoded and waiting.
        self._batches: queue.Queue[_Batch | None] = queue.Queue(maxsize=1)
        self._writer_failed = threading.Event()
        self._decode_thread = threading.Thread(
            target=self._decode, name="ingest-decode", daemon=True
        )
        self._write_thread = threading.Thread(
            target=self._write_batches, name="ingest-write", daemon=True
        )

    # --- lifecycle ------------------------------------------------------------------
    def start(self) -> None:
        mqtt_settings = self._settings.mqtt
        self._client.connect_async(
            mqtt_settings.host,
            mqtt_settings.port,
            keepalive=mqtt_settings.keepalive_s,
            clean_start=False,
            properties=connect_properties(
                self._settings.ingest.session_expiry_s, self._settings.ingest.receive_maximum
            ),
        )
        self._client.loop_start()
        self._decode_thread.start()
        self._write_thread.start()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def wait_subscribed(self, timeout: float) -> bool:
        """True once the broker has confirmed the subscription on the current connection."""
        return self._subscribed.wait(timeout)

    def stop(self) -> None:
        """Flush what is buffered if InfluxDB takes it, then disconnect."""
        self._stop.set()
        self._decode_thread.join(timeout=30)
        self._write_thread.join(timeout=30)
        self._client.disconnect()
        self._client.loop_stop()
        self._writer.close()

    # --- paho callbacks (network thread: keep them short) ---------------------------
    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            log.error("broker refused the connection: %s", reason)
            return
        with self._ack_lock:
            self._generation += 1
        self.stats.connects += 1
        log.info(
            "connected to %s:%s (session present: %s)",
            self._settings.mqtt.host,
            self._settings.mqtt.port,
            flags.session_present,
        )
        # Subscribing again on a resumed session is harmless and covers a lost session.
        client.subscribe(self._topics.all_sensor_up, qos=1)
        self._connected.set()

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        if any(rc.is_failure for rc in reason_codes):
            log.error("broker refused the subscription: %s", reason_codes)
            return
        self._subscribed.set()

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._connected.clear()
        self._subscribed.clear()
        with self._ack_lock:
            self._generation += 1  # acks of messages from the old connection are void
        if not self._stop.is_set():
            log.warning("disconnected from the broker (%s); reconnecting", reason)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        self._inbox.append(
            _Inbound(
                self._generation,
                message.mid,
                message.qos,
                message.topic,
                bytes(message.payload),  # paho types it bytes | bytearray
                content_type(message),
                self._clock.now(),
            )
        )

    # --- decoder and writer threads ---------------------------------------------------
    def _decode(self) -> None:
        """Decode, validate and batch; hand full batches to the writer thread, so the next
        batch is decoded while InfluxDB takes the previous one."""
        max_points = self._settings.ingest.batch_max_points
        max_delay = self._settings.ingest.batch_max_delay_s
        inbox = self._inbox
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
        self.stats.write_seconds += time.monotonic() - started
        self._publish_dead_letters(rejections)
        with self._ack_lock:
            self._client.ack_many(
                [i.mid for i in batch.items if i.qos == 1 and i.generation == self._generation]
            )
        self.stats.messages += len(batch.items)
        self.stats.readings_written += len(batch.lines)
        self.stats.batches += 1
        for rejection in rejections:
            self.stats.rejected[rejection.reason] += 1

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
