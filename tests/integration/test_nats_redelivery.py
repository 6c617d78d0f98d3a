"""NATS redelivers a QoS 1 message whose PUBACK is late on the same connection, under
the same packet id, and gives the id out again once it is acknowledged. A session
consumer acknowledges each handing-out of an id once: acknowledging the late copy too
would acknowledge whatever message NATS has given the id since, before anyone has
processed it (pantau.mqtt_session)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pantau.clock import SystemClock
from pantau.local.nats import NatsCluster
from pantau.mqtt_session import Inbound, SessionConsumer
from pantau.settings import MqttProtocol, MqttSettings
from pantau.topics import Topics
from testkit.mqtt import Publisher

pytestmark = pytest.mark.integration

ACK_WAIT_S = 1.0


@pytest.fixture
def nats(tmp_path: Path) -> Iterator[NatsCluster]:
    with NatsCluster(tmp_path / "nats", size=1, replicas=1, ack_wait_s=ACK_WAIT_S) as node:
        yield node


def inbox(consumer: SessionConsumer) -> list[Inbound]:
    # By index: iterating a deque the MQTT thread appends to may raise.
    return [consumer.inbox[i] for i in range(len(consumer.inbox))]


def take(consumer: SessionConsumer, payload: bytes, count: int, timeout: float) -> list[Inbound]:
    """Wait until `count` copies of `payload` are in the inbox; all of them, in order."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        copies = [i for i in inbox(consumer) if i.payload == payload]
        if len(copies) >= count:
            return copies
        time.sleep(0.05)
    return [i for i in inbox(consumer) if i.payload == payload]


@pytest.mark.parametrize("fast", [False, True], ids=["on_message", "publish_sink"])
def test_a_copy_nats_redelivers_on_the_connection_is_acknowledged_once(
    nats: NatsCluster, topic_root: str, fast: bool
) -> None:
    """Both ways a message reaches the inbox: paho's on_message (rules) and the
    publish sink past paho's per-message layers (ingest)."""
    mqtt = MqttSettings(hosts=nats.hosts, protocol=MqttProtocol.V311, root=topic_root)
    topics = Topics(topic_root)
    consumer = SessionConsumer(
        mqtt,
        f"copies-{topic_root}",
        topics.all_sensor_up,
        session_expiry_s=60,
        receive_maximum=10,
        clock=SystemClock(),
        fast_publishes=fast,
    )
    consumer.start()
    publisher = Publisher(mqtt)
    try:
        assert consumer.wait_subscribed(30)
        publisher.publish(topics.sensor_up("dev-1"), b"A")
        first, copy, *_ = take(consumer, b"A", 2, 10 * ACK_WAIT_S)  # not acked: sent again
        assert (copy.mid, copy.delivery, copy.generation) == (
            first.mid,
            first.delivery,
            first.generation,
        )
        consumer.ack([first])  # NATS has nothing pending: its packet ids start again
        time.sleep(0.5)
        publisher.publish(topics.sensor_up("dev-1"), b"B")
        (b, *_) = take(consumer, b"B", 1, 10)
        assert b.mid == first.mid and b.delivery != first.delivery  # the id, given anew
        # The service acknowledges every message it processed, the copies of A too: none
        # of those PUBACKs may reach B, which nobody has processed.
        consumer.ack(i for i in inbox(consumer) if i.payload == b"A" and i is not first)
        # B unacknowledged: NATS sends it again after ack_wait.
        assert len(take(consumer, b"B", 2, 10 * ACK_WAIT_S)) >= 2
        consumer.ack([b])
    finally:
        publisher.close()
        consumer.stop()
