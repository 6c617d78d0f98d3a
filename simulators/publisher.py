"""Publishing a scenario over MQTT (v5, or 3.1.1 as most field gateways), the way the
field network does it: one client per gateway, one gateway per kecamatan.

Why gateways and not 325 clients: the city's sensors are LoRaWAN / NB-IoT radios.
The radio devices do not hold TCP sessions; a gateway (or the network server behind
it) does, and forwards each device's uplink to `{root}/sensors/{device}/up`. That is
also 13 sockets instead of 325, which keeps the broker and the benchmark honest. So:

* each gateway connects with MQTT v5 (or 3.1.1: MqttSettings.protocol), clean start,
  to the first broker node that answers (MqttSettings.hosts; after a lost connection
  the next one), with a Last Will: a retained
  `offline` status on `{root}/devices/{gateway}/status`, sent by the broker if the
  gateway drops off;
* on connect it publishes, retained, an `online` birth status for itself and for
  each of its devices on `{root}/devices/{device}/status`, naming the gateway, so a
  consumer that sees the gateway's will knows which devices went dark with it;
* uplinks are QoS 1 with the MQTT v5 content type (`application/json` or
  `application/senml+json`; on 3.1.1 none: ingest tells them apart by the payload's
  first byte); a device's messages always go through the same gateway,
  so its order is kept;
* on a clean finish it publishes retained `offline` statuses ("simulation ended")
  and waits for every PUBACK before `run_scenario` returns.

Status payload (JSON): `{"device": id, "status": "online"|"offline", "time": RFC 3339,
"gateway": gateway id, "kind": device kind or "gateway", "reason": why}`; the will
has no `time` (the broker sends it whenever it notices the loss).
"""

from __future__ import annotations

import json
import logging
import re
import select
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from pantau.city import City
from pantau.clock import Clock, SystemClock
from pantau.mqtt_failover import FailoverClient
from pantau.settings import MqttSettings
from pantau.topics import Topics
from pantau.wire import NATIVE_CONTENT_TYPE, SENML_CONTENT_TYPE, rfc3339
from simulators.fleet import gateway_id
from simulators.messages import FleetStream
from simulators.report import ReportBuilder, SimReport
from simulators.scenario import Scenario
from simulators.simclock import SimulatedClock, anchored_start

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0
ACK_TIMEOUT_S = 60.0
MAX_PENDING = 500  # un-acknowledged publishes per gateway before we wait (memory bound)
SERVICE_EVERY = 16  # publishes between two non-blocking socket services
RECONNECT_S = 2.0
# QoS 1 messages in flight per gateway. Mosquitto's default Receive Maximum is 20 and
# paho cannot change this once connected, so stay within it; paho queues the rest.
MAX_INFLIGHT = 20


class PublishError(RuntimeError):
    """The broker could not be reached or refused the simulator."""


def _properties(content_type: str) -> Properties:
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.ContentType = content_type
    return props


def status_payload(
    device_id: str, status: str, when: datetime, *, gateway: str, kind: str, reason: str
) -> bytes:
    body = {
        "device": device_id,
        "status": status,
        "time": rfc3339(when),
        "gateway": gateway,
        "kind": kind,
        "reason": reason,
    }
    return json.dumps(body, separators=(",", ":")).encode()


@dataclass(frozen=True, slots=True)
class GatewayPlan:
    id: str
    devices: Mapping[str, str]  # device id -> kind


class Gateway:
    """One MQTT client forwarding the uplinks of the devices of one kecamatan.

    It has no network thread of its own: a GatewayLoop drives every gateway's socket
    from one thread (13 paho threads contending for the GIL were 3x slower).
    """

    def __init__(
        self, plan: GatewayPlan, settings: MqttSettings, topics: Topics, *, client_id: str
    ) -> None:
        self.plan = plan
        self._topics = topics
        self._settings = settings
        self.outstanding = 0  # published, PUBACK not yet received
        self.acknowledged = 0
        self.failed = 0
        self.connected = False
        self.refused: str | None = None
        self._last_reconnect = 0.0
        self.closing = False
        self._props = {
            NATIVE_CONTENT_TYPE: _properties(NATIVE_CONTENT_TYPE),
            SENML_CONTENT_TYPE: _properties(SENML_CONTENT_TYPE),
        }
        client = FailoverClient(settings, client_id, clean=True)
        will_props = Properties(PacketTypes.WILLMESSAGE)  # type: ignore[no-untyped-call]
        will_props.ContentType = NATIVE_CONTENT_TYPE
        # The will has no time: the broker sends it whenever it notices the loss.
        will = {"device": plan.id, "status": "offline", "gateway": plan.id, "kind": "gateway"}
        client.will_set(
            topics.device_status(plan.id),
            json.dumps({**will, "reason": "connection lost"}, separators=(",", ":")),
            qos=1,
            retain=True,
            properties=will_props,
        )
        client.max_queued_messages_set(0)  # our own bound (MAX_PENDING) applies
        client.max_inflight_messages_set(MAX_INFLIGHT)
        client.on_connect = self._on_connect
        client.on_publish = self._on_publish
        client.on_disconnect = self._on_disconnect
        self.client = client

    # --- paho callbacks (run inside GatewayLoop.service) ----------------------------------
    def _on_connect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            self.refused = str(reason)
            return
        receive_max = getattr(properties, "ReceiveMaximum", None)
        if isinstance(receive_max, int) and receive_max < MAX_INFLIGHT:
            log.warning(
                "gateway %s: broker Receive Maximum %d < %d",
                self.plan.id,
                receive_max,
                MAX_INFLIGHT,
            )
        self.connected = True

    def _on_publish(
        self,
        client: paho.Client,
        userdata: Any,
        mid: int,
        reason: ReasonCode,
        properties: Properties,
    ) -> None:
        self.outstanding -= 1
        if reason.is_failure:
            self.failed += 1
            log.warning("gateway %s: PUBACK mid %d refused: %s", self.plan.id, mid, reason)
        else:
            self.acknowledged += 1

    def _on_disconnect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self.connected = False
        if reason.is_failure:
            log.warning("gateway %s disconnected: %s", self.plan.id, reason)

    # --- API ------------------------------------------------------------------------------
    def connect(self) -> None:
        """Open the TCP connection and send CONNECT; the CONNACK arrives in the loop."""
        try:
            self.client.connect_any()
        except OSError as err:
            raise PublishError(f"gateway {self.plan.id}: {err}") from err

    def reconnect_if_lost(self, now: float) -> None:
        if (
            self.closing
            or self.client.socket() is not None
            or now - self._last_reconnect < RECONNECT_S
        ):
            return
        self._last_reconnect = now
        try:
            # QoS 1 messages not yet acknowledged are sent again after the CONNACK; with
            # several broker nodes this goes to the next one.
            self.client.reconnect()
        except OSError as err:
            log.warning("gateway %s: reconnect failed: %s", self.plan.id, err)

    def publish(self, topic: str, payload: bytes, content_type: str, *, retain: bool) -> None:
        self.outstanding += 1
        info = self.client.publish(
            topic, payload, qos=1, retain=retain, properties=self._props[content_type]
        )
        # NO_CONN: paho keeps QoS 1 messages and sends them after reconnecting.
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            self.outstanding -= 1
            self.failed += 1
            log.warning("gateway %s: publish to %s failed: %s", self.plan.id, topic, info.rc)

    def statuses(self, status: str, when: datetime, reason: str) -> list[tuple[str, bytes]]:
        """Retained status messages of the gateway and each of its devices."""
        entries = [(self.plan.id, "gateway"), *self.plan.devices.items()]
        return [
            (
                self._topics.device_status(device_id),
                status_payload(
                    device_id, status, when, gateway=self.plan.id, kind=kind, reason=reason
                ),
            )
            for device_id, kind in entries
        ]

    def close(self) -> None:
        self.closing = True
        if self.client.socket() is not None:
            self.client.disconnect()  # a clean DISCONNECT: the broker drops the will


class GatewayLoop:
    """Drives the sockets of all gateways from the calling thread with one select()."""

    def __init__(self, gateways: Iterable[Gateway]) -> None:
        self.gateways = list(gateways)
        self._last_misc = 0.0
        self._published = 0

    def service(self, timeout_s: float) -> None:
        now = time.monotonic()
        socks: dict[Any, Gateway] = {}
        for g in self.gateways:
            g.reconnect_if_lost(now)
            sock = g.client.socket()
            if sock is not None:
                socks[sock] = g
        if not socks:
            time.sleep(timeout_s)
            return
        want = [s for s, g in socks.items() if g.client.want_write()]
        readable, writable, _ = select.select(list(socks), want, [], timeout_s)
        for sock in readable:
            socks[sock].client.loop_read()
        for sock in writable:
            socks[sock].client.loop_write()
        if now - self._last_misc >= 1.0:  # keepalive pings and their timeouts
            self._last_misc = now
            for g in self.gateways:
                g.client.loop_misc()

    def connect(self, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
        for g in self.gateways:
            g.connect()
        deadline = time.monotonic() + timeout_s
        while not all(g.connected or g.refused for g in self.gateways):
            if time.monotonic() > deadline:
                missing = [g.plan.id for g in self.gateways if not g.connected]
                raise PublishError(f"no CONNACK for {', '.join(missing)} within {timeout_s:g}s")
            self.service(0.05)
        refused = [f"{g.plan.id}: {g.refused}" for g in self.gateways if g.refused]
        if refused:
            raise PublishError(f"broker refused: {'; '.join(refused)}")

    def publish(
        self, gateway: Gateway, topic: str, payload: bytes, content_type: str, *, retain: bool
    ) -> None:
        while gateway.outstanding >= MAX_PENDING:
            self.service(0.05)
        gateway.publish(topic, payload, content_type, retain=retain)
        self._published += 1
        if self._published % SERVICE_EVERY == 0:  # read PUBACKs so paho sends the queue
            self.service(0.0)

    def drain(self, timeout_s: float) -> int:
        """Wait for every outstanding PUBACK; returns how many never came."""
        deadline = time.monotonic() + timeout_s
        while any(g.outstanding for g in self.gateways) and time.monotonic() < deadline:
            self.service(0.05)
        return sum(g.outstanding for g in self.gateways)

    def wait(self, seconds: float, stop: threading.Event) -> bool:
        """Keep the connections serviced for `seconds`; True if `stop` was set."""
        deadline = time.monotonic() + seconds
        while not stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.service(min(left, 0.2))
        return True

    def close(self) -> None:
        for g in self.gateways:
            g.close()  # without a network thread paho writes the DISCONNECT right away


def gateway_plans(city: City) -> list[GatewayPlan]:
    by_gateway: dict[str, dict[str, str]] = {}
    for d in sorted(city.devices.values(), key=lambda d: d.id):
        by_gateway.setdefault(gateway_id(d.kecamatan_id), {})[d.id] = d.kind
    return [GatewayPlan(g, devices) for g, devices in sorted(by_gateway.items())]


def _client_id(gateway: str, root: str) -> str:
    # Distinct roots (tests run side by side on one broker) need distinct client ids.
    suffix = re.sub(r"[^A-Za-z0-9_.-]", "_", root)
    return f"pantau-sim-{gateway}-{suffix}"[:64]


def run_scenario(
    city: City,
    scenario: Scenario,
    mqtt: MqttSettings,
    *,
    speed: float | None,
    stop: threading.Event | None = None,
    start: datetime | None = None,
    clock: Clock | None = None,
    ack_timeout_s: float = ACK_TIMEOUT_S,
    login: Callable[[str], MqttSettings] | None = None,
    pace: Callable[[datetime], bool] | None = None,
) -> SimReport:
    """Publish the scenario's message stream and wait for every PUBACK.

    login: the broker settings of each gateway (by gateway id), for a broker where each
    gateway has its own account (pantau.broker); by default every gateway uses `mqtt`.

    speed: None for as fast as the broker takes it, 1.0 for real time, 60.0 for one
    simulated minute per second. start: the simulated start; by default the scenario's
    own start moved by whole days so that no reading is in the future or older than
    ingest accepts (simclock.anchored_start). The payloads are exactly those of
    `iter_messages(city, scenario, start=report.start, topics=Topics(root))`.

    pace: asked before each message with its simulated time; while it answers False the
    message waits (the connections kept serviced): a benchmark holds the stream back to
    what its consumers have caught up with (bench.soak), without changing the stream.
    """
    if speed is not None and speed <= 0:
        raise ValueError("speed must be positive, or None for as fast as possible")
    wall = clock or SystemClock()
    stop = stop or threading.Event()
    topics = Topics(mqtt.root)
    sim_start = start or anchored_start(scenario.start, scenario.duration_s, wall.now(), speed)
    stream = FleetStream(city, scenario, topics=topics, start=sim_start)
    gateways = {
        p.id: Gateway(
            p, login(p.id) if login else mqtt, topics, client_id=_client_id(p.id, topics.root)
        )
        for p in gateway_plans(city)
    }
    log.info(
        "scenario %s: %d devices through %d gateways, %s .. %s, speed %s",
        scenario.name,
        len(city.devices),
        len(gateways),
        sim_start.isoformat(),
        stream.scenario.end.isoformat(),
        "max" if speed is None else speed,
    )
    loop = GatewayLoop(gateways.values())
    began = time.monotonic()
    builder = ReportBuilder()
    status = 0
    try:
        loop.connect()
        status += _announce(loop, "online", sim_start, "started")
        completed = _pump(
            stream, gateways, loop, builder, speed=speed, stop=stop, wall=wall, pace=pace
        )
        ended = stream.scenario.end if completed else (builder.last_sim_time or sim_start)
        reason = "simulation ended" if completed else "simulation stopped"
        status += _announce(loop, "offline", ended, reason)
        unacked = loop.drain(ack_timeout_s)
    finally:
        loop.close()
    if unacked:
        log.warning("%d publishes were never acknowledged", unacked)
    return SimReport(
        scenario=scenario.name,
        seed=scenario.seed,
        start=sim_start,
        end=stream.scenario.end,
        speed=speed,
        completed=completed,
        messages=builder.messages,
        dropped=stream.dropped,
        valid_by_device=dict(builder.valid_by_device),
        reading_keys=frozenset(builder.keys),
        malformed=tuple(builder.malformed),
        status_messages=status,
        acknowledged=sum(g.acknowledged for g in loop.gateways),
        failed=sum(g.failed for g in loop.gateways) + unacked,
        digest=builder.digest,
        wall_s=time.monotonic() - began,
    )


def _announce(loop: GatewayLoop, status: str, when: datetime, reason: str) -> int:
    count = 0
    for g in loop.gateways:
        for topic, payload in g.statuses(status, when, reason):
            loop.publish(g, topic, payload, NATIVE_CONTENT_TYPE, retain=True)
            count += 1
    return count


def _pump(
    stream: FleetStream,
    gateways: Mapping[str, Gateway],
    loop: GatewayLoop,
    builder: ReportBuilder,
    *,
    speed: float | None,
    stop: threading.Event,
    wall: Clock,
    pace: Callable[[datetime], bool] | None = None,
) -> bool:
    """Send the stream, paced on a simulated clock unless speed is None (and held by
    `pace`, when given). True when the whole stream went out, False when `stop` ended
    it early."""
    start = stream.scenario.start
    sim_clock = None if speed is None else SimulatedClock(wall, start, speed)
    for msg in stream:
        if stop.is_set():
            return False
        if sim_clock is not None:
            wait = sim_clock.wall_seconds_until(msg.sim_time)
            if wait > 0 and loop.wait(wait, stop):
                return False
        while pace is not None and not pace(msg.sim_time):
            if loop.wait(0.05, stop):
                return False
        loop.publish(
            gateways[msg.gateway_id], msg.topic, msg.payload, msg.content_type, retain=False
        )
        builder.add(msg)
    return True
