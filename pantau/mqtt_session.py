"""A persistent-session MQTT subscriber (v5 or 3.1.1) that acknowledges only when told.

Pantau's consumers of device topics (ingest, rules) both need the same guarantee: a
QoS 1 message is acknowledged only after its work is durable (InfluxDB write, SQL
commit), in arrival order, and only on the connection it arrived on (a message id is
meaningless on the next connection: the broker redelivers instead). This class owns
that plumbing; a service takes messages from `inbox` and calls `ack` when done.

A packet id is acknowledged once per time the broker gives it out. NATS redelivers a
message whose PUBACK is late (`ack_wait`) on the same connection, under the same packet
id: the second copy is not acknowledged again, because once the first PUBACK has
freed the id the broker may have given it to another message, which a second PUBACK
would acknowledge before it is processed (lost if the process or connection dies).

With several broker nodes (MqttSettings.hosts) a lost connection is resumed on the
next node: same client id, no clean start, so a clustered broker hands over the
session and what it queued; messages not yet acknowledged are redelivered there.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from pantau.clock import Clock
from pantau.mqtt import content_type, make_client
from pantau.mqtt_fast import BufferedClient, FastPublish
from pantau.settings import MqttSettings

log = logging.getLogger(__name__)


@dataclass(slots=True)  # not frozen: a frozen __init__ costs ~0.6 us more per message
class Inbound:
    generation: int  # connection number: mids are only valid on their own connection
    mid: int
    qos: int
    topic: str
    payload: bytes
    content_type: str | None
    received_at: datetime
    delivery: int = 0  # which handing-out of `mid` on its connection (copies share it)


class SessionConsumer:
    """Subscribes `topic_filter` (one or several) at QoS 1 on a persistent session;
    queues each message in `inbox` (a deque: append/popleft are atomic, cheaper than
    queue.Queue at 10k msg/s; the MQTT v5 Receive Maximum bounds its length, on 3.1.1
    the broker's own in-flight limit does). `arrived` is set after each append: a
    consumer with an empty inbox clears it, looks again, then waits on it (no polling)."""

    def __init__(
        self,
        settings: MqttSettings,
        client_id: str,
        topic_filter: str | Sequence[str],
        *,
        session_expiry_s: int,
        receive_maximum: int,
        clock: Clock,
        fast_publishes: bool = False,
        linger_s: float = 0.0,
    ) -> None:
        """`fast_publishes`: plain QoS 1 messages come in lists past paho's per-message
        layers (pantau.mqtt_fast.BufferedClient.publish_sink), the rest via on_message;
        `linger_s`: a read pass of those that found a few waits this long for more
        (BufferedClient.sink_linger_s)."""
        self._settings = settings
        filters = [topic_filter] if isinstance(topic_filter, str) else list(topic_filter)
        self._subscription = [(f, 1) for f in filters]
        self._session_expiry_s = session_expiry_s
        self._receive_maximum = receive_maximum
        self._clock = clock
        self.inbox: deque[Inbound] = deque()
        self.arrived = threading.Event()
        self.connects = 0
        self.session_present = False  # the broker resumed a session (with its backlog)
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self._closing = False
        self._generation = 0
        self._ack_lock = threading.Lock()
        # Packet id -> the delivery it was last given out for, until acknowledged (this
        # connection only). A PUBLISH whose id is in here is a copy of that delivery.
        self._unacked: dict[int, int] = {}
        self._deliveries = 0
        self.client: BufferedClient = make_client(settings, client_id, manual_ack=True, clean=False)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        if fast_publishes:
            self.client.publish_sink = self._on_publishes
            self.client.sink_linger_s = linger_s

    def start(self) -> None:
        self.client.start_async(
            session_expiry_s=self._session_expiry_s, receive_maximum=self._receive_maximum
        )
        self.client.loop_start()

    def stop(self) -> None:
        self._closing = True
        self.client.disconnect()
        self.client.loop_stop()

    @property
    def broker(self) -> str:
        """host:port of the broker node of the current (or last) connection."""
        return self.client.broker

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def wait_subscribed(self, timeout: float) -> bool:
        """True once the broker has confirmed the subscription on the current connection."""
        return self._subscribed.wait(timeout)

    def ack(self, items: Iterable[Inbound]) -> None:
        """Acknowledge `items` (in the order they arrived); those from an earlier
        connection are skipped: the broker redelivers them on this one. So is a copy
        whose packet id was acknowledged already (module docstring)."""
        with self._ack_lock:
            unacked, generation = self._unacked, self._generation
            mids = []
            for i in items:
                if i.qos != 1 or i.generation != generation:
                    continue
                # Forgotten before the PUBACK is queued: a PUBLISH reusing the id can only
                # come after the broker has it, so it is never taken for a copy.
                if unacked.get(i.mid) == i.delivery:
                    del unacked[i.mid]
                    mids.append(i.mid)
            self.client.ack_many(mids)

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
            self._unacked.clear()
        self.connects += 1
        self.session_present = bool(flags.session_present)
        log.info(
            "connected to %s (MQTT %s, session present: %s)",
            self.client.broker,
            self._settings.protocol.value,
            flags.session_present,
        )
        # Subscribing again on a resumed session is harmless and covers a lost session.
        client.subscribe(self._subscription)
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
            self._unacked.clear()
        if not self._closing:
            log.warning("disconnected from the broker (%s); reconnecting", reason)

    def _delivery(self, mid: int) -> int:
        """The number of this handing-out of QoS 1 packet id `mid`: a copy of a delivery
        not yet acknowledged shares its number. No lock: only the MQTT thread adds, and
        ack() removes an id before its PUBACK."""
        delivery = self._unacked.get(mid, 0)
        if not delivery:
            self._deliveries += 1
            delivery = self._unacked[mid] = self._deliveries
        return delivery

    def _on_publishes(self, publishes: list[FastPublish]) -> None:
        """One read pass's plain QoS 1 messages: one clock reading and one wake-up for
        all of them (they came in the same recv() calls)."""
        generation, now = self._generation, self._clock.now()
        number = self._delivery
        self.inbox.extend(
            [
                Inbound(generation, mid, 1, topic, payload, ct, now, number(mid))
                for mid, topic, payload, ct in publishes
            ]
        )
        if not self.arrived.is_set():
            self.arrived.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        mid = message.mid
        delivery = self._delivery(mid) if message.qos == 1 else 0
        self.inbox.append(
            Inbound(
                self._generation,
                mid,
                message.qos,
                message.topic,
                bytes(message.payload),  # paho types it bytes | bytearray
                content_type(message),
                self._clock.now(),
                delivery,
            )
        )
        if not self.arrived.is_set():  # a busy consumer has not cleared it: skip the lock
            self.arrived.set()
