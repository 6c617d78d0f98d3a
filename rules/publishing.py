"""Outbox rows onto the broker: QoS 1 with the message id as a user property, each
awaited until the broker acknowledged it (rules.service publishes a turn's rows this
way; rules.replicas sends a replica's claimed rows with the same `publish_row` and
`await_ack`)."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from enum import Enum

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from pantau.store import OutboxKind, OutboxMessage
from rules.outbox import MESSAGE_ID_PROPERTY
from rules.stats import RulesStats

STOP_GRACE_S = 3.0  # for PUBACKs in flight when stopping
POLL_S = 1.0  # how often a wait for a PUBACK looks at the stop and the deadline


class Stopping(Exception):
    """The service is stopping: leave the batch unacknowledged for redelivery."""


def publish_row(client: mqtt.Client, m: OutboxMessage) -> mqtt.MQTTMessageInfo:
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.ContentType = "application/json"
    props.UserProperty = [(MESSAGE_ID_PROPERTY, str(m.id))]
    return client.publish(m.topic, m.payload, qos=1, properties=props)


def count_published(stats: RulesStats, rows: Sequence[OutboxMessage]) -> None:
    for m in rows:
        if m.kind is OutboxKind.EVENT:
            stats.events_published += 1
        elif m.kind is OutboxKind.ALERT:
            stats.alerts_published += 1
            if m.crew_id is not None:
                stats.alerts_by_crew[m.crew_id] = stats.alerts_by_crew.get(m.crew_id, 0) + 1
        else:
            stats.escalations_published += 1


class RowPublisher:
    """Publishes rows and waits for every PUBACK, through reconnects."""

    def __init__(
        self,
        client: mqtt.Client,
        wait_connected: Callable[[float], bool],
        stop: threading.Event,
    ) -> None:
        self._client = client
        self._wait_connected = wait_connected
        self._stop = stop

    def publish(self, rows: Sequence[OutboxMessage]) -> None:
        """A row published while the connection was down (a broker restart, a failover
        to another node) is published again once it is back: a copy under the same
        message id, which receivers dedupe on. Raises Stopping on a stop."""
        pending = list(rows)
        while pending:
            infos = [(m, publish_row(self._client, m)) for m in pending]
            pending = [m for m, info in infos if not self._wait(info)]
            while pending and not self._wait_connected(1.0):
                if self._stop.is_set():
                    raise Stopping

    def _wait(self, info: mqtt.MQTTMessageInfo) -> bool:
        """True once the broker acknowledged it; False if it was never sent. A stop
        still gives PUBACKs in flight a moment (STOP_GRACE_S), so a clean stop marks
        what the broker took instead of leaving it to be sent again."""
        # Not acknowledged by the broker (e.g. it went away after the send): paho
        # resends on the reconnect; until then the inputs stay unacknowledged too.
        ack = await_ack(info, self._stop, grace_s=STOP_GRACE_S)
        if ack is Ack.GAVE_UP:
            raise Stopping
        return ack is Ack.ACKED


class Ack(Enum):
    ACKED = "acked"  # the broker acknowledged it
    UNSENT = "unsent"  # never sent: no connection (paho's calls raise then, for good)
    GAVE_UP = "gave up"  # the deadline passed, or the stop and its grace


def await_ack(
    info: mqtt.MQTTMessageInfo,
    stop: threading.Event,
    *,
    deadline: float = math.inf,
    grace_s: float = 0.0,
) -> Ack:
    """Wait for the broker's PUBACK of `info` until `deadline` (time.monotonic), or
    until `grace_s` after `stop` is set, whichever comes first."""
    give_up, stopping = deadline, False
    try:
        while not info.is_published():
            now = time.monotonic()
            if not stopping and stop.is_set():
                stopping, give_up = True, min(give_up, now + grace_s)
            if now >= give_up:
                return Ack.GAVE_UP
            info.wait_for_publish(timeout=min(POLL_S, give_up - now))
    except (RuntimeError, ValueError):  # published while not connected
        return Ack.UNSENT
    return Ack.ACKED
