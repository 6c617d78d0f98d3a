"""MQTT client set-up shared by Pantau's long-running services (MQTT v5, persistent session)."""

from __future__ import annotations

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from pantau.mqtt_fast import BufferedClient
from pantau.settings import MqttSettings

RECONNECT_MIN_S = 1
RECONNECT_MAX_S = 8  # services must be back within 10 s of the broker returning


def make_client(settings: MqttSettings, client_id: str, *, manual_ack: bool) -> BufferedClient:
    client = BufferedClient(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5,
        manual_ack=manual_ack,
    )
    apply_credentials(client, settings)
    client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
    return client


def apply_credentials(client: mqtt.Client, settings: MqttSettings) -> None:
    """Username, password and TLS (verifying the broker against `tls_ca`)."""
    if settings.username:
        password = settings.password.get_secret_value() if settings.password else None
        client.username_pw_set(settings.username, password)
    if settings.tls_ca is not None:
        client.tls_set(ca_certs=str(settings.tls_ca))


def connect_properties(session_expiry_s: int, receive_maximum: int) -> Properties:
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = session_expiry_s
    props.ReceiveMaximum = receive_maximum
    return props


def content_type(message: mqtt.MQTTMessage) -> str | None:
    props = getattr(message, "properties", None)
    value = getattr(props, "ContentType", None) if props is not None else None
    return value if isinstance(value, str) else None
