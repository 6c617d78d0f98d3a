"""A paho client that knows several broker nodes and speaks MQTT 5 or 3.1.1.

A broker cluster (EMQX, HiveMQ, NATS with JetStream) keeps a persistent session on
whichever node the client reaches next, so surviving the loss of a node is the
client's job: every reconnect (after a lost connection or a failed attempt) goes to
the next address of `MqttSettings.addresses()`, round the list, with the same client
id and no clean start, and the broker resumes the session there. With one address
this is paho's own behaviour.

MQTT 3.1.1 has no connect properties: Session Expiry and Receive Maximum are left to
the broker's configuration (docs/operations.md#brokers), a persistent session is
`clean_session=False`, and publish properties (content type, user properties) are
not sent (paho drops them on 3.1.1).
"""

from __future__ import annotations

import logging
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from pantau.settings import MqttProtocol, MqttSettings

log = logging.getLogger(__name__)


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


class FailoverClient(mqtt.Client):
    """paho's Client on `settings` (protocol, credentials, TLS) over every broker node.

    clean: start a fresh session (True) or resume the one named `client_id` (False).
    """

    def __init__(
        self, settings: MqttSettings, client_id: str, *, clean: bool, **kwargs: Any
    ) -> None:
        self.v5 = settings.protocol is MqttProtocol.V5
        if not self.v5:
            kwargs["clean_session"] = clean  # 3.1.1 sets it per client, not per connect
        super().__init__(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5 if self.v5 else mqtt.MQTTv311,
            **kwargs,
        )
        self.brokers = settings.addresses()
        self.failovers = 0  # reconnects that went to another node than the last one
        self._attempts = 0
        self._clean = clean
        self._keepalive_s = settings.keepalive_s
        apply_credentials(self, settings)

    @property
    def broker(self) -> str:
        """host:port of the node of the current (or last) connection."""
        return f"{self.host}:{self.port}"

    def start_async(
        self, *, session_expiry_s: int | None = None, receive_maximum: int | None = None
    ) -> None:
        """Connect from the network thread (`loop_start` next), first node first. The v5
        properties are sent when given; on 3.1.1 they are the broker's business."""
        self.connect_async(
            self.brokers[0][0],
            self.brokers[0][1],
            **self._connect_args(session_expiry_s, receive_maximum),
        )

    def connect_any(
        self, *, session_expiry_s: int | None = None, receive_maximum: int | None = None
    ) -> None:
        """Connect now (the caller drives the loop), trying each node once; OSError
        naming every address if none answers."""
        host, port = self.brokers[0]
        self.connect_async(host, port, **self._connect_args(session_expiry_s, receive_maximum))
        errors = []
        for _ in self.brokers:
            try:
                self.reconnect()
                return
            except OSError as err:
                errors.append(f"{self.broker}: {err}")
        raise OSError("cannot reach any broker: " + "; ".join(errors))

    def _connect_args(
        self, session_expiry_s: int | None, receive_maximum: int | None
    ) -> dict[str, Any]:
        args: dict[str, Any] = {"keepalive": self._keepalive_s}
        if self.v5:
            args["clean_start"] = self._clean
            if session_expiry_s is not None and receive_maximum is not None:
                args["properties"] = connect_properties(session_expiry_s, receive_maximum)
        return args

    def reconnect(self) -> MQTTErrorCode:
        """Every attempt after the first goes to the next node (paho's loop calls this
        after a lost connection and after each failed attempt)."""
        host, port = self.brokers[self._attempts % len(self.brokers)]
        if self._attempts and len(self.brokers) > 1:
            self.failovers += 1
            log.info("MQTT client %s: trying broker %s:%d", self._client_id.decode(), host, port)
        self._attempts += 1
        # paho's host/port setters refuse while a dead connection is not yet closed;
        # reconnect() closes it right away, so set the fields themselves.
        self._host, self._port = host, port
        rc: MQTTErrorCode = super().reconnect()
        return rc
