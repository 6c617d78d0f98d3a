"""MQTT client set-up shared by Pantau's long-running services (MQTT 5 or 3.1.1,
persistent session, several broker nodes: pantau.mqtt_failover)."""

from __future__ import annotations

import paho.mqtt.client as mqtt

from pantau.mqtt_failover import apply_credentials, connect_properties
from pantau.mqtt_fast import BufferedClient
from pantau.settings import MqttSettings

__all__ = ["apply_credentials", "connect_properties", "content_type", "make_client"]

RECONNECT_MIN_S = 1
RECONNECT_MAX_S = 8  # services must be back within 10 s of the broker returning


def make_client(
    settings: MqttSettings, client_id: str, *, manual_ack: bool, clean: bool = True
) -> BufferedClient:
    """clean=False resumes the session named `client_id` (on any node of the cluster)."""
    client = BufferedClient(settings, client_id, clean=clean, manual_ack=manual_ack)
    client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
    return client


def content_type(message: mqtt.MQTTMessage) -> str | None:
    """The MQTT v5 content type; None on 3.1.1, where pantau.decoding sniffs the payload."""
    props = getattr(message, "properties", None)
    value = getattr(props, "ContentType", None) if props is not None else None
    return value if isinstance(value, str) else None
