"""Small real-MQTT helpers for integration tests: a QoS 1 publisher, a numbered rssi
stream and a collector."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from pantau.devices import Device
from pantau.mqtt_failover import FailoverClient
from pantau.settings import MqttSettings
from pantau.topics import Topics
from pantau.wire import Sample, encode_native


def _client(prefix: str, settings: MqttSettings) -> FailoverClient:
    """A clean-session client on `settings` (protocol, every broker node)."""
    return FailoverClient(settings, f"{prefix}-{uuid.uuid4().hex[:8]}", clean=True)


class Publisher:
    """Publishes at QoS 1 and waits until the broker has acknowledged everything."""

    def __init__(self, settings: MqttSettings) -> None:
        self._client = _client("test-pub", settings)
        self._client.max_inflight_messages_set(1000)
        self._client.max_queued_messages_set(0)
        self._client.connect_any()
        self._client.loop_start()
        self._infos: list[mqtt.MQTTMessageInfo] = []

    def publish(self, topic: str, payload: bytes, content_type: str | None = None) -> None:
        props = None
        if content_type:
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            props.ContentType = content_type
        self._infos.append(self._client.publish(topic, payload, qos=1, properties=props))

    def connected(self) -> bool:
        return self._client.is_connected()

    def flush(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        for info in self._infos:
            info.wait_for_publish(max(0.1, deadline - time.monotonic()))
            assert info.is_published(), "broker did not acknowledge a publish in time"
        self._infos.clear()

    def close(self) -> None:
        self.flush()
        self._client.disconnect()
        self._client.loop_stop()


class RssiStream(Publisher):
    """Numbered native messages of one rssi reading each, message i from device
    i % len(devices), each device once a second from an hour ago: what ingest's outage
    and burst tests send and count."""

    def __init__(self, settings: MqttSettings, devices: Sequence[Device]) -> None:
        super().__init__(settings)
        self._topics = Topics(settings.root)
        self._devices = list(devices)
        self._start = datetime.now(UTC) - timedelta(hours=1)

    def send(self, first: int, last: int, value: float = -60.0) -> None:
        """Messages first..last-1, acknowledged by the broker on return."""
        n = len(self._devices)
        for i in range(first, last):
            d = self._devices[i % n]
            when = self._start + timedelta(seconds=i // n)
            self.publish(
                self._topics.sensor_up(d.id), encode_native(d.id, i, when, [Sample("rssi", value)])
            )
        self.flush()


class Collector:
    """Subscribes to a filter and keeps every message it receives."""

    def __init__(self, settings: MqttSettings, topic_filter: str) -> None:
        self.messages: list[mqtt.MQTTMessage] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._client = _client("test-sub", settings)
        self._client.on_message = self._on_message
        self._client.on_subscribe = lambda *_args: self._subscribed.set()
        self._client.connect_any()
        self._client.subscribe(topic_filter, qos=1)
        self._client.loop_start()
        assert self._subscribed.wait(10), "subscription not acknowledged"

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(message)

    def snapshot(self) -> list[mqtt.MQTTMessage]:
        with self._lock:
            return list(self.messages)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)
