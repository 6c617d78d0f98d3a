"""ingest over MQTT 3.1.1 and 5 on the real Mosquitto, given a dead node first in its
list: it connects to the next one, tells the payload forms apart without a content
type, and its persistent session (clean_session / clean_start false) keeps what is
published while it is away."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta

import cbor2
import pytest

from ingest.service import IngestService
from pantau.city import City, load_city
from pantau.clock import SystemClock
from pantau.influx.query import InfluxQL
from pantau.influx.writers import make_writer
from pantau.mqtt_session import SessionConsumer
from pantau.settings import MqttProtocol, Settings
from pantau.topics import Topics
from pantau.wire import Sample, encode_native, encode_senml
from testkit.mqtt import Publisher, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def city() -> City:
    return load_city()


def dead_address() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def stored(settings: Settings) -> int:
    with InfluxQL.from_settings(settings.influx) as influx:
        rows = influx.rows("SELECT count(value) FROM battery")
    return sum(int(str(r["count"])) for r in rows)


@pytest.mark.parametrize("protocol", list(MqttProtocol))
def test_ingest_fails_over_sniffs_payloads_and_keeps_its_session(
    settings: Settings, city: City, protocol: MqttProtocol
) -> None:
    mqtt = settings.mqtt
    live = f"{mqtt.host}:{mqtt.port}"
    settings = settings.model_copy(
        update={
            "mqtt": mqtt.model_copy(update={"hosts": [dead_address(), live], "protocol": protocol})
        }
    )
    topics = Topics(settings.mqtt.root)
    devices = sorted(d.id for d in city.devices.values() if "battery" in d.metrics)[:30]
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)

    def payload(i: int, device: str) -> bytes:
        when = start + timedelta(minutes=i)
        samples = [Sample("battery", 80.0, "%")]
        match i % 3:
            case 0:
                return encode_native(device, i, when, samples)
            case 1:
                return encode_senml(device, when, samples)
            case _:  # SenML CBOR (RFC 8428 section 6 labels): no content type to say so
                pack = [{-2: f"{device}/", -3: when.timestamp(), 0: "battery", 1: "%", 2: 80}]
                return bytes(cbor2.dumps(pack))

    def publish(rounds: range) -> None:
        publisher = Publisher(settings.mqtt)  # same protocol, also past the dead node
        for i in rounds:
            for device in devices:
                publisher.publish(topics.sensor_up(device), payload(i, device))
        publisher.close()

    ingest = IngestService(settings, city, make_writer(settings.influx))
    ingest.start()
    try:
        assert ingest.wait_subscribed(30)
        publish(range(6))
        wait_for(lambda: stored(settings) == 6 * len(devices), 60, "the first readings")
    finally:
        ingest.stop()
    publish(range(6, 12))  # ingest away: its session keeps them
    again = IngestService(settings, city, make_writer(settings.influx))
    again.start()
    try:
        assert again.wait_subscribed(30)
        wait_for(lambda: stored(settings) == 12 * len(devices), 60, "what came while away")
    finally:
        again.stop()
    assert not ingest.stats.rejected and not again.stats.rejected  # every form understood
    assert again.stats.messages == 6 * len(devices)  # the session's backlog, once


@pytest.mark.parametrize("protocol", list(MqttProtocol))
def test_a_session_consumer_names_the_node_it_reached(
    settings: Settings, protocol: MqttProtocol
) -> None:
    live = f"{settings.mqtt.host}:{settings.mqtt.port}"
    dead = dead_address()
    mqtt = settings.mqtt.model_copy(update={"hosts": [dead, live], "protocol": protocol})
    consumer = SessionConsumer(
        mqtt,
        f"probe-{settings.mqtt.root}",
        Topics(mqtt.root).all_sensor_up,
        session_expiry_s=60,
        receive_maximum=10,
        clock=SystemClock(),
    )
    consumer.start()
    try:
        assert consumer.wait_subscribed(30)
        assert consumer.broker == live  # past the dead node
        assert consumer.client.failovers == 1
    finally:
        consumer.stop()


def test_a_session_consumer_wakes_its_reader_on_arrival(settings: Settings) -> None:
    """A consumer waits on `arrived` instead of polling its inbox: each message sets it,
    and a reader that cleared it and found the inbox empty is woken by the next one."""
    consumer = SessionConsumer(
        settings.mqtt,
        f"wake-{settings.mqtt.root}",
        Topics(settings.mqtt.root).all_sensor_up,
        session_expiry_s=60,
        receive_maximum=10,
        clock=SystemClock(),
    )
    consumer.start()
    publisher = Publisher(settings.mqtt)
    try:
        assert consumer.wait_subscribed(30)
        topic = Topics(settings.mqtt.root).sensor_up("dev-1")
        for n in range(3):
            consumer.arrived.clear()
            assert not consumer.inbox
            publisher.publish(topic, f"m{n}".encode())
            assert consumer.arrived.wait(10)
            assert consumer.inbox.popleft().payload == f"m{n}".encode()
        consumer.arrived.clear()
        assert not consumer.arrived.wait(0.3)  # nothing more came: stays clear
    finally:
        publisher.close()
        consumer.stop()
