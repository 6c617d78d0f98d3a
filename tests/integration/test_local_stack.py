"""The local services are real and behave as the pipeline needs them to."""

from __future__ import annotations

import os
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import sqlalchemy as sa
import urllib3
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from pantau.influx.query import InfluxQL, InfluxQLError, quote_ident, quote_string
from pantau.local import LocalStack, ServiceError
from pantau.local.influxd import Influxd
from pantau.local.mosquitto import Mosquitto, MosquittoOptions
from pantau.local.ports import accepts_connections, free_port, free_ports
from pantau.local.postgres import Postgres

pytestmark = pytest.mark.integration

TIMEOUT_S = 10.0


@dataclass
class Consumer:
    """A paho v5 client on a background loop, collecting what it receives."""

    client: mqtt.Client
    messages: queue.Queue[mqtt.MQTTMessage] = field(default_factory=queue.Queue)
    connected: threading.Event = field(default_factory=threading.Event)
    session_present: bool = False

    def get(self) -> mqtt.MQTTMessage:
        return self.messages.get(timeout=TIMEOUT_S)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def connect(
    host: str,
    port: int,
    client_id: str | None = None,
    *,
    clean_start: bool = True,
    session_expiry_s: int = 0,
) -> Consumer:
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id or f"test-{uuid.uuid4().hex[:12]}",
        protocol=mqtt.MQTTv5,
    )
    consumer = Consumer(client)

    def on_connect(
        _c: mqtt.Client,
        _u: object,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        _p: Properties | None,
    ) -> None:
        assert not reason.is_failure, reason
        consumer.session_present = flags.session_present
        consumer.connected.set()

    client.on_connect = on_connect
    client.on_message = lambda _c, _u, message: consumer.messages.put(message)
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    # MQTT v5: without a Session Expiry Interval the session ends at disconnect,
    # whatever clean_start says.
    properties.SessionExpiryInterval = session_expiry_s
    client.connect(host, port, clean_start=clean_start, properties=properties)
    client.loop_start()
    assert consumer.connected.wait(TIMEOUT_S), "no CONNACK"
    return consumer


def subscribe(consumer: Consumer, topic: str) -> None:
    done = threading.Event()
    consumer.client.on_subscribe = lambda *_args: done.set()
    result, _mid = consumer.client.subscribe(topic, qos=1)
    assert result == mqtt.MQTT_ERR_SUCCESS
    assert done.wait(TIMEOUT_S), "no SUBACK"


def publish(host: str, port: int, topic: str, payloads: list[bytes]) -> None:
    """Publish QoS 1 and return once the broker has acknowledged every message."""
    publisher = connect(host, port)
    try:
        infos = [publisher.client.publish(topic, p, qos=1) for p in payloads]
        for info in infos:
            info.wait_for_publish(TIMEOUT_S)
            assert info.is_published()
    finally:
        publisher.close()


def test_qos1_round_trip_through_the_broker(stack: LocalStack, topic_root: str) -> None:
    consumer = connect(stack.mqtt_host, stack.mqtt_port)
    try:
        subscribe(consumer, f"{topic_root}/sensors/+/up")
        payloads = [f'{{"n": {i}}}'.encode() for i in range(200)]
        publish(stack.mqtt_host, stack.mqtt_port, f"{topic_root}/sensors/wl-01/up", payloads)
        received = [consumer.get() for _ in payloads]
    finally:
        consumer.close()
    assert [m.payload for m in received] == payloads
    assert {m.qos for m in received} == {1}
    assert {m.topic for m in received} == {f"{topic_root}/sensors/wl-01/up"}


def test_broker_holds_a_large_unacknowledged_window(stack: LocalStack, topic_root: str) -> None:
    # ingest acks a whole batch at once; the broker must not stop at 20 in flight
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"test-{uuid.uuid4().hex[:12]}",
        protocol=mqtt.MQTTv5,
        manual_ack=True,
    )
    received: queue.Queue[int] = queue.Queue()
    subscribed = threading.Event()
    client.on_message = lambda _c, _u, message: received.put(message.mid)
    client.on_subscribe = lambda *_args: subscribed.set()
    client.connect(stack.mqtt_host, stack.mqtt_port)
    client.loop_start()
    try:
        client.subscribe(f"{topic_root}/sensors/+/up", qos=1)
        assert subscribed.wait(TIMEOUT_S)
        payloads = [b"x"] * 2000
        publish(stack.mqtt_host, stack.mqtt_port, f"{topic_root}/sensors/d/up", payloads)
        mids = [received.get(timeout=TIMEOUT_S) for _ in payloads]  # none acked yet
        for mid in mids:
            client.ack(mid, 1)
    finally:
        client.disconnect()
        client.loop_stop()
    assert len(set(mids)) == len(payloads)


def test_line_protocol_round_trip(stack: LocalStack, influx_db: str) -> None:
    lines = b"\n".join(
        [
            b"water_level,device=wl-01,zone=karawaci value=112.5 1700000000",
            b"water_level,device=wl-01,zone=karawaci value=118.0 1700000060",
            b"water_level,device=wl-02,zone=cipondoh value=40 1700000000",
            b'pump,device=p-01 state="on",flow=1.25 1700000000',
        ]
    )
    response = urllib3.request(
        "POST",
        f"{stack.influx_url}/write?db={influx_db}&precision=s",
        body=lines,
    )
    assert response.status == 204, response.data

    with InfluxQL(stack.influx_url, influx_db) as influx:
        counts = influx.rows("SELECT count(value) FROM water_level GROUP BY device")
        rows = influx.rows(
            "SELECT value FROM water_level WHERE device = $device",
            params={"device": "wl-01"},
            epoch="s",
        )
        pump = influx.rows('SELECT "state", flow FROM pump')
        series = influx.query("SELECT last(value) FROM water_level GROUP BY zone")
    assert sorted((r["device"], r["count"]) for r in counts) == [("wl-01", 2), ("wl-02", 1)]
    assert rows == [{"time": 1700000000, "value": 112.5}, {"time": 1700000060, "value": 118.0}]
    assert pump == [{"time": "2023-11-14T22:13:20Z", "state": "on", "flow": 1.25}]
    assert {(s.name, s.tags["zone"]) for s in series} == {
        ("water_level", "karawaci"),
        ("water_level", "cipondoh"),
    }


def test_influxql_quotes_names_and_values(stack: LocalStack, influx_db: str) -> None:
    # a measurement and tag value with quotes, spaces and a backslash survive quoting
    line = 'odd\\ "name,site=it\'s\\ a\\ "tag" value=1 1700000000'
    response = urllib3.request(
        "POST", f"{stack.influx_url}/write?db={influx_db}&precision=s", body=line.encode()
    )
    assert response.status == 204, response.data
    with InfluxQL(stack.influx_url, influx_db) as influx:
        measurement = quote_ident('odd "name')
        site = quote_string('it\'s a "tag"')
        rows = influx.rows(f"SELECT value FROM {measurement} WHERE site = {site}")
    assert [r["value"] for r in rows] == [1.0]


def test_influxql_errors_carry_the_server_message(stack: LocalStack, influx_db: str) -> None:
    with InfluxQL(stack.influx_url, influx_db) as influx:
        with pytest.raises(InfluxQLError, match="error parsing query"):
            influx.query("SELECT FROM")
        with pytest.raises(InfluxQLError, match="database not found: no_such_db"):
            influx.query("SELECT * FROM m", database="no_such_db")
    with (
        InfluxQL(f"http://127.0.0.1:{free_port()}") as nowhere,
        pytest.raises(InfluxQLError, match="cannot reach"),
    ):
        nowhere.query("SHOW DATABASES")


def test_create_and_drop_database(stack: LocalStack) -> None:
    name = f"test_{uuid.uuid4().hex[:12]}"

    def databases() -> set[object]:
        with InfluxQL(stack.influx_url) as influx:
            return {row["name"] for row in influx.rows("SHOW DATABASES")}

    stack.create_database(name)
    assert name in databases()
    stack.drop_database(name)
    assert name not in databases()


@pytest.mark.parametrize("how", ["stop", "kill"])
def test_persistent_session_survives_a_broker_restart(tmp_path: Path, how: str) -> None:
    broker = Mosquitto(tmp_path / "mosquitto", free_port())
    broker.start()
    try:
        topic = f"t{uuid.uuid4().hex[:12]}/alerts/crews/c-01"
        client_id = f"crew-{uuid.uuid4().hex[:12]}"
        consumer = connect(
            broker.host, broker.port, client_id, clean_start=False, session_expiry_s=3600
        )
        subscribe(consumer, topic)
        consumer.close()

        saves_before = broker.log_file.read_text().count("Saving in-memory database")
        publish(broker.host, broker.port, topic, [b"queued while offline"])
        if how == "stop":
            broker.stop()  # SIGTERM: the broker saves on the way out
        else:
            # SIGKILL loses what arrived since the last autosave: wait for one first
            _wait_for(
                lambda: (
                    broker.log_file.read_text().count("Saving in-memory database") > saves_before
                )
            )
            broker.kill()
        assert not accepts_connections(broker.host, broker.port)
        broker.start()

        consumer = connect(
            broker.host, broker.port, client_id, clean_start=False, session_expiry_s=3600
        )
        try:
            assert consumer.session_present
            message = consumer.get()
        finally:
            consumer.close()
        assert (message.topic, message.payload, message.qos) == (
            topic,
            b"queued while offline",
            1,
        )
    finally:
        broker.stop()


def test_influxd_keeps_acknowledged_writes_across_a_kill(tmp_path: Path) -> None:
    http_port, rpc_port = free_ports(2)
    influxd = Influxd(tmp_path / "influxd", http_port, rpc_port)
    influxd.start()
    try:
        influxd.create_database("pantau")
        response = urllib3.request(
            "POST",
            f"{influxd.url}/write?db=pantau&precision=s",
            body=b"rainfall,device=rg-01 value=12.5 1700000000",
        )
        assert response.status == 204, response.data
        influxd.kill()  # the WAL is fsynced before /write answers 204
        influxd.start()
        with influxd.client("pantau") as influx:
            rows = influx.rows("SELECT value FROM rainfall", epoch="s")
        assert rows == [{"time": 1700000000, "value": 12.5}]
    finally:
        influxd.stop()


def test_stop_leaves_no_process_behind() -> None:
    stack = LocalStack().start()
    pids = [stack.mosquitto.pid, stack.influxd.pid]
    ports = [stack.mqtt_port, stack.influxd.http_port]
    run_dir = stack.run_dir
    assert all(pid is not None for pid in pids)
    assert all(accepts_connections("127.0.0.1", port) for port in ports)

    stack.stop()

    for pid in pids:
        assert pid is not None
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert not any(accepts_connections("127.0.0.1", port) for port in ports)
    assert not run_dir.exists()  # a temp run dir goes with the stack


def test_settings_point_at_the_stack(stack: LocalStack) -> None:
    settings = stack.settings(database="d1", root="r1")
    assert (settings.mqtt.host, settings.mqtt.port, settings.mqtt.root) == (
        stack.mqtt_host,
        stack.mqtt_port,
        "r1",
    )
    assert (settings.influx.url, settings.influx.database) == (stack.influx_url, "d1")


def test_a_failing_broker_reports_its_log(tmp_path: Path) -> None:
    broker = Mosquitto(
        tmp_path / "mosquitto", free_port(), options=MosquittoOptions(extra_lines=("no_such 1",))
    )
    with pytest.raises(ServiceError, match="no_such"):
        broker.start()
    assert not broker.running


def test_a_run_dir_serves_one_stack_at_a_time(stack: LocalStack) -> None:
    with pytest.raises(ServiceError, match="in use by another stack"):
        LocalStack(stack.run_dir).start()
    assert stack.mosquitto.running and stack.influxd.running


def test_a_taken_port_is_refused(stack: LocalStack, tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "mosquitto", stack.mqtt_port)
    with pytest.raises(ServiceError, match="already in use"):
        broker.start()


def _wait_for(condition: Callable[[], bool], timeout_s: float = TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_private_postgres_serves_fresh_databases(postgres_url: str, postgres: Postgres) -> None:
    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE t (x int)"))
        conn.execute(sa.text("INSERT INTO t VALUES (41), (1)"))
        assert conn.execute(sa.text("SELECT sum(x) FROM t")).scalar_one() == 42
        port = conn.execute(sa.text("SHOW port")).scalar_one()
    engine.dispose()
    assert int(port) == postgres.port != 5432  # never the machine's own server
