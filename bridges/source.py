"""The bridge's subscription on a foreign broker (a LoRaWAN network server's, a plant's
Sparkplug broker): its own account, QoS 1, a persistent session, and an acknowledgement
only when the bridge says its work is durable.

Like the kernel's SessionConsumer (pantau.mqtt_session), but the protocol is the
foreign broker's choice: The Things Stack speaks MQTT 3.1.1 only (clean session off
is its persistent session), ChirpStack's Mosquitto and Sparkplug brokers speak v5.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from pantau.clock import Clock
from pantau.mqtt import RECONNECT_MAX_S, RECONNECT_MIN_S, apply_credentials, connect_properties
from pantau.settings import MqttSettings

log = logging.getLogger(__name__)


class SourceBroker(BaseModel):
    """Where a bridge reads from (a section of config/lorawan.yaml, config/sparkplug.yaml).
    The password comes from the environment variable `password_env`, never the file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    username: str | None = None
    password_env: str | None = Field(
        default=None, pattern=r"^[A-Z_][A-Z0-9_]*$", description="variable holding the password"
    )
    tls_ca: Path | None = None
    client_id: str = Field(pattern=r"^[A-Za-z0-9_.@-]{1,64}$")
    protocol: Literal["5", "3.1.1"] = "5"
    session_expiry_s: int = Field(default=7 * 86400, ge=0)
    receive_maximum: int = Field(default=1000, ge=1, le=65535)

    def mqtt(self, environ: dict[str, str]) -> MqttSettings:
        password = environ.get(self.password_env) if self.password_env else None
        return MqttSettings(
            host=self.host,
            port=self.port,
            username=self.username,
            password=SecretStr(password) if password is not None else None,
            tls_ca=self.tls_ca,
        )


@dataclass(frozen=True, slots=True)
class Presence:
    """Retained messages that tell the source the bridge is there: `online` after each
    subscription, `offline` as the Last Will and before a clean disconnect (Sparkplug's
    host application STATE)."""

    topic: str
    online: bytes
    offline: bytes


@dataclass(frozen=True, slots=True)
class SourceMessage:
    generation: int  # connection number: a mid is only valid on its own connection
    mid: int
    qos: int
    topic: str
    payload: bytes
    received_at: datetime


class SourceConsumer:
    """Subscribes `filters` at QoS 1 on a persistent session and queues each message in
    `inbox`; `ack` acknowledges in arrival order, on the connection they came on."""

    def __init__(
        self,
        broker: SourceBroker,
        filters: Iterable[str],
        clock: Clock,
        environ: dict[str, str],
        presence: Presence | None = None,
    ) -> None:
        self._broker = broker
        self._filters = [(f, 1) for f in filters]
        self._clock = clock
        self._v5 = broker.protocol == "5"
        self.inbox: deque[SourceMessage] = deque()
        self.connects = 0
        self.received = 0  # messages taken from the source broker (acknowledged or not)
        self._generation = 0
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=broker.client_id,
            protocol=mqtt.MQTTv5 if self._v5 else mqtt.MQTTv311,
            clean_session=None if self._v5 else False,
            manual_ack=True,
        )
        apply_credentials(self.client, broker.mqtt(environ))
        self._presence = presence
        if presence is not None:
            self.client.will_set(presence.topic, presence.offline, qos=1, retain=True)
        self.client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.client.on_disconnect = self._on_disconnect

    def start(self) -> None:
        b = self._broker
        if self._v5:
            props = connect_properties(b.session_expiry_s, b.receive_maximum)
            self.client.connect_async(b.host, b.port, clean_start=False, properties=props)
        else:
            self.client.max_inflight_messages_set(b.receive_maximum)
            self.client.connect_async(b.host, b.port)
        self.client.loop_start()

    def stop(self) -> None:
        if self._presence is not None and self.client.is_connected():
            p = self._presence
            self.client.publish(p.topic, p.offline, qos=1, retain=True).wait_for_publish(5)
        self.client.disconnect()
        self.client.loop_stop()

    def wait_subscribed(self, timeout: float) -> bool:
        return self._subscribed.wait(timeout)

    def ack(self, items: Iterable[SourceMessage]) -> None:
        with self._lock:
            for item in items:
                if item.qos > 0 and item.generation == self._generation:
                    self.client.ack(item.mid, item.qos)

    def publish(self, topic: str, payload: bytes, qos: int = 0) -> None:
        """A command back to the source (Sparkplug's NCMD rebirth request)."""
        self.client.publish(topic, payload, qos=qos)

    # --- paho callbacks (network thread) ----------------------------------------------
    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            log.error("%s refused the bridge: %s", self._broker.host, reason)
            return
        with self._lock:
            self._generation += 1
            self.connects += 1
        # A resumed session still has the subscription; subscribing again is harmless.
        client.subscribe(self._filters)

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reasons: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        refused = [r for r in reasons if r.is_failure]
        if refused:
            log.error("subscription refused by the source broker: %s", refused)
            return
        if self._presence is not None:  # after subscribing: nothing is missed in between
            client.publish(self._presence.topic, self._presence.online, qos=1, retain=True)
        self._subscribed.set()

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._subscribed.clear()
        if reason.is_failure:
            log.warning("source broker connection lost: %s", reason)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        self.received += 1
        self.inbox.append(
            SourceMessage(
                self._generation,
                message.mid,
                message.qos,
                message.topic,
                bytes(message.payload),
                self._clock.now(),
            )
        )
