"""The relay every bridge shares: foreign messages in, Pantau's own topics out, and the
foreign message acknowledged only once what it became is durable.

A translator (bridges.lorawan, bridges.sparkplug) turns one foreign message into:
- SenML packs for `{root}/sensors/{device}/up` and retained statuses for
  `{root}/devices/{device}/status`, published on Pantau's broker at QoS 1. ingest and
  the rules read them there like any device's (the same decoding, validation, device
  budget, spool and dead letters; the rules judge them);
- dead letters for what cannot be translated (`{root}/deadletter/{reason}`);
- InfluxDB points the catalogue has no metric for (link health, data-quality events),
  written before the acknowledgement;
- commands back to the source (Sparkplug's rebirth request).

Per batch: write the points (retrying while InfluxDB is away), publish and wait for
every PUBACK (again after a reconnect), then acknowledge the batch to the source
broker in arrival order. A crash in between makes the source redeliver: a reading may
arrive twice (it overwrites itself in InfluxDB), never not at all.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bridges.source import SourceConsumer, SourceMessage
from pantau import deadletter
from pantau.deadletter import Rejection
from pantau.influx.writers import InfluxWriter, WriteRejected, WriteUnavailable
from pantau.mqtt import make_client
from pantau.settings import MqttSettings
from pantau.topics import Topics

log = logging.getLogger(__name__)

BATCH_MAX = 500
POLL_S = 0.005
BACKOFF_MAX_S = 30.0


@dataclass(frozen=True, slots=True)
class Publish:
    topic: str
    payload: bytes
    content_type: str = "application/json"
    retain: bool = False


@dataclass(slots=True)
class Translation:
    publishes: list[Publish] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)  # InfluxDB line protocol (ms)
    commands: list[Publish] = field(default_factory=list)  # back to the source broker

    def extend(self, other: Translation) -> None:
        self.publishes += other.publishes
        self.rejections += other.rejections
        self.lines += other.lines
        self.commands += other.commands


class Translator(Protocol):
    @property
    def filters(self) -> Sequence[str]:
        """What to subscribe on the source broker."""
        ...

    def translate(self, topic: str, payload: bytes, received_at: datetime) -> Translation: ...


@dataclass(slots=True)
class RelayStats:
    messages: int = 0  # acknowledged to the source
    published: int = 0
    rejected: int = 0
    points: int = 0
    commands: int = 0


class Stopping(Exception):
    """Stop with the batch unacknowledged: the source broker redelivers it."""


class Relay:
    def __init__(
        self,
        source: SourceConsumer,
        translator: Translator,
        pantau: MqttSettings,
        client_id: str,
        writer: InfluxWriter | None,
    ) -> None:
        self.source = source
        self._translator = translator
        self._pantau = pantau
        self._topics = Topics(pantau.root)
        self._writer = writer
        self.stats = RelayStats()
        self._stop = threading.Event()
        self._connected = threading.Event()
        self.client = make_client(pantau, client_id, manual_ack=False)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *_: self._connected.clear()
        self._thread = threading.Thread(target=self._run, name="bridge-relay", daemon=True)

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, *_: Any
    ) -> None:
        if reason.is_failure:
            log.error("Pantau's broker refused the bridge: %s", reason)
        else:
            self._connected.set()

    def start(self) -> None:
        self.client.connect_async(
            self._pantau.host, self._pantau.port, keepalive=self._pantau.keepalive_s
        )
        self.client.loop_start()
        self.source.start()
        self._thread.start()

    def wait_ready(self, timeout: float) -> bool:
        """Connected to Pantau's broker and subscribed on the source's."""
        deadline = time.monotonic() + timeout
        return self._connected.wait(timeout) and self.source.wait_subscribed(
            max(0.0, deadline - time.monotonic())
        )

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self.source.stop()
        self.client.disconnect()
        self.client.loop_stop()
        if self._writer is not None:
            self._writer.close()

    # --- the loop ---------------------------------------------------------------------
    def _run(self) -> None:
        inbox = self.source.inbox
        while not self._stop.is_set():
            batch: list[SourceMessage] = []
            while len(batch) < BATCH_MAX:
                try:
                    batch.append(inbox.popleft())
                except IndexError:
                    break
            if not batch:
                time.sleep(POLL_S)
                continue
            try:
                self.handle(batch)
            except Stopping:
                log.info("stopping with %d messages unacknowledged (redelivered)", len(batch))
                return

    def handle(self, batch: Sequence[SourceMessage]) -> None:
        out = Translation()
        for message in batch:
            try:
                out.extend(
                    self._translator.translate(message.topic, message.payload, message.received_at)
                )
            except Exception as err:  # a translator bug must not stop the bridge: say so
                log.exception("translator failed on %s", message.topic)
                out.rejections.append(
                    Rejection(
                        "bridge_error",
                        f"{type(err).__name__}: {err}"[:500],
                        message.topic,
                        message.payload,
                        message.received_at,
                    )
                )
        if out.lines:
            self._write(out.lines)
        self._publish_all(
            [*out.publishes, *(self._dead_letter(r) for r in out.rejections)],
        )
        for command in out.commands:
            self.source.publish(command.topic, command.payload)
        self.source.ack(batch)
        self.stats.messages += len(batch)
        self.stats.published += len(out.publishes)
        self.stats.rejected += len(out.rejections)
        self.stats.points += len(out.lines)
        self.stats.commands += len(out.commands)

    def _dead_letter(self, rejection: Rejection) -> Publish:
        return Publish(self._topics.deadletter(rejection.reason), deadletter.encode(rejection))

    def _publish_all(self, publishes: Sequence[Publish]) -> None:
        """QoS 1, each awaited; what was not sent on this connection goes again."""
        pending = list(publishes)
        while pending:
            infos = [(p, self._publish(p)) for p in pending]
            pending = [p for p, info in infos if not self._published(info)]
            if pending and self._stop.wait(1.0):
                raise Stopping

    def _publish(self, p: Publish) -> mqtt.MQTTMessageInfo:
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.ContentType = p.content_type
        return self.client.publish(p.topic, p.payload, qos=1, retain=p.retain, properties=props)

    def _published(self, info: mqtt.MQTTMessageInfo) -> bool:
        while True:
            if self._stop.is_set() and not self._connected.is_set():
                raise Stopping
            try:
                if info.is_published():
                    return True
                info.wait_for_publish(timeout=1.0)
            except (RuntimeError, ValueError):  # never sent: no connection
                return False
            if self._stop.is_set() and not info.is_published():
                raise Stopping

    def _write(self, lines: list[str]) -> None:
        """Retry 429 / 5xx / no answer until it takes them; log what it refuses for good
        (the readings still go on: a link-health point is not worth a stuck bridge)."""
        assert self._writer is not None, "a translator made points without a writer"
        delay = 0.2
        while True:
            try:
                self._writer.write(lines)
                return
            except WriteRejected as err:
                log.error("InfluxDB refused %d bridge points: %s", len(lines), err.message)
                return
            except WriteUnavailable as err:
                log.warning("InfluxDB unavailable (%s); retrying in %.1fs", err, delay)
            if self._stop.wait(delay):
                raise Stopping
            delay = min(delay * 2, BACKOFF_MAX_S)
