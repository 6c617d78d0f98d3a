"""A pump station as a Sparkplug B edge node (for the bridge's tests and benchmark).

Edge node `{group}/{node}` with its own metrics (the pumps and the sump) and one
Sparkplug device, `Outfall`, a level gauge downstream. It behaves as the
specification asks of an edge node: NBIRTH with `bdSeq` and `Node Control/Rebirth`,
metric aliases in the births and only aliases in the DATA messages, `seq` 0..255 over
all its messages, a Last Will NDEATH with the birth's `bdSeq`, and a fresh NBIRTH and
DBIRTH when a host sends NCMD `Node Control/Rebirth`.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from pantau.mqtt import apply_credentials
from pantau.settings import MqttSettings
from pantau.sparkplug_b_pb2 import Payload

BOOLEAN, FLOAT, DOUBLE, INT64 = 11, 9, 10, 4
REBIRTH = "Node Control/Rebirth"

# name -> (alias, datatype): node metrics, then the Outfall device's
NODE_METRICS = {
    "Pump/Running": (1, BOOLEAN),
    "Pump/Current": (2, FLOAT),  # amperes: not a catalogue metric, the bridge skips it
    "Sump/Level": (3, DOUBLE),  # metres
}
OUTFALL_METRICS = {"Level": (10, FLOAT)}  # centimetres
DEVICE = "Outfall"


def _ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


class PumpStationNode:
    def __init__(self, settings: MqttSettings, group: str, node: str, client_id: str) -> None:
        self.group, self.node = group, node
        self.seq = -1
        self.bd_seq = 0
        self.rebirths = 0
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self._settings = settings
        self.values: dict[str, Any] = {
            "Pump/Running": False,
            "Pump/Current": 0.0,
            "Sump/Level": 1.0,
        }
        self.outfall_cm = 80.0
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv311,
            clean_session=True,
        )
        apply_credentials(self.client, settings)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.will_set(self.topic("NDEATH"), self._death(), qos=1)

    def topic(self, kind: str, device: str | None = None) -> str:
        tail = f"/{device}" if device else ""
        return f"spBv1.0/{self.group}/{kind}/{self.node}{tail}"

    # --- lifecycle ----------------------------------------------------------------------
    def start(self, timeout: float = 10.0) -> None:
        self.client.connect(self._settings.host, self._settings.port)
        self.client.loop_start()
        if not self._connected.wait(timeout):
            raise TimeoutError("the pump station could not connect")
        self.births(datetime.now(UTC))

    def stop(self) -> None:
        """A clean end: NDEATH first, as the specification asks."""
        self.client.publish(self.topic("NDEATH"), self._death(), qos=1).wait_for_publish(10)
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client: mqtt.Client, *args: Any) -> None:
        client.subscribe(self.topic("NCMD"), qos=1)
        self._connected.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        command = Payload.FromString(bytes(message.payload))
        if any(m.name == REBIRTH and m.boolean_value for m in command.metrics):
            # Not on paho's network thread: births wait for their publishes to go out.
            threading.Thread(target=self._rebirth, daemon=True).start()

    def _rebirth(self) -> None:
        self.births(datetime.now(UTC))
        self.rebirths += 1

    # --- messages -----------------------------------------------------------------------
    def _next_seq(self) -> int:
        self.seq = (self.seq + 1) % 256
        return self.seq

    def _death(self) -> bytes:
        death = Payload(timestamp=_ms(datetime.now(UTC)))
        death.metrics.add(name="bdSeq", datatype=INT64, long_value=self.bd_seq)
        return death.SerializeToString()

    def births(self, when: datetime) -> None:
        with self._lock:
            self.seq = -1
            birth = Payload(timestamp=_ms(when), seq=self._next_seq())
            birth.metrics.add(name="bdSeq", datatype=INT64, long_value=self.bd_seq)
            birth.metrics.add(name=REBIRTH, datatype=BOOLEAN, boolean_value=False)
            for name, (alias, datatype) in NODE_METRICS.items():
                metric = birth.metrics.add(name=name, alias=alias, datatype=datatype)
                _set(metric, datatype, self.values[name])
            self._publish(self.topic("NBIRTH"), birth)
            device = Payload(timestamp=_ms(when), seq=self._next_seq())
            for name, (alias, datatype) in OUTFALL_METRICS.items():
                metric = device.metrics.add(name=name, alias=alias, datatype=datatype)
                _set(metric, datatype, self.outfall_cm)
            self._publish(self.topic("DBIRTH", DEVICE), device)

    def data(self, when: datetime, **changes: Any) -> None:
        """NDATA with the changed node metrics, by alias only."""
        with self._lock:
            self.values.update(changes)
            message = Payload(timestamp=_ms(when), seq=self._next_seq())
            for name, value in changes.items():
                alias, datatype = NODE_METRICS[name]
                _set(message.metrics.add(alias=alias, timestamp=_ms(when)), datatype, value)
            self._publish(self.topic("NDATA"), message)

    def outfall(self, when: datetime, level_cm: float) -> None:
        with self._lock:
            self.outfall_cm = level_cm
            message = Payload(timestamp=_ms(when), seq=self._next_seq())
            alias, datatype = OUTFALL_METRICS["Level"]
            _set(message.metrics.add(alias=alias), datatype, level_cm)
            self._publish(self.topic("DDATA", DEVICE), message)

    def device_death(self, when: datetime) -> None:
        with self._lock:
            self._publish(
                self.topic("DDEATH", DEVICE), Payload(timestamp=_ms(when), seq=self._next_seq())
            )

    def raw(self, kind: str, payload: Payload, device: str | None = None) -> None:
        """Anything, with the next seq (tests: an unknown alias, a lost message)."""
        with self._lock:
            payload.seq = self._next_seq()
            self._publish(self.topic(kind, device), payload)

    def lose(self, messages: int) -> None:
        """Messages that never reach the broker: the seq moves on without them."""
        with self._lock:
            self.seq = (self.seq + messages) % 256

    def _publish(self, topic: str, payload: Payload) -> None:
        self.client.publish(topic, payload.SerializeToString(), qos=0).wait_for_publish(10)


def _set(metric: Payload.Metric, datatype: int, value: Any) -> None:
    if datatype == BOOLEAN:
        metric.boolean_value = bool(value)
    elif datatype == FLOAT:
        metric.float_value = float(value)
    elif datatype == DOUBLE:
        metric.double_value = float(value)
    else:
        metric.long_value = int(value)
