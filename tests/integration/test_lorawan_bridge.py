"""`pantau bridge lorawan` end to end: a real Mosquitto stands in for the network
server's broker (ChirpStack v4 speaks MQTT v5 there, The Things Stack v3 speaks 3.1.1),
the bridge relays into Pantau's broker, ingest stores into InfluxDB. Payloads are
shaped as the two servers document them (testkit.netservers)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import SecretStr

from bridges.__main__ import build
from bridges.relay import Relay
from ingest.service import IngestService
from pantau import deadletter
from pantau.broker.passwords import hash_password
from pantau.city import City, load_city
from pantau.errors import ConfigErrors
from pantau.influx.query import InfluxQL
from pantau.influx.writers import make_writer
from pantau.local import LocalStack
from pantau.local.mosquitto import Mosquitto, MosquittoOptions
from pantau.local.ports import free_port
from pantau.mqtt import apply_credentials
from pantau.settings import MqttSettings, Settings
from pantau.topics import Topics
from testkit import netservers as ns
from testkit.mqtt import Collector, Publisher, wait_for

pytestmark = pytest.mark.integration

STATION, STATION_EUI = "wl-alam-jaya-001", "0004a30b001c0530"
PUMP, PUMP_EUI = "ps-porisgaga-baru-001", "0004a30b001c0531"


@pytest.fixture(scope="module")
def city() -> City:
    return load_city()


@pytest.fixture(scope="module")
def netserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """The network server's broker (not Pantau's)."""
    broker = Mosquitto(tmp_path_factory.mktemp("netserver"), free_port())
    broker.start()
    yield broker
    broker.stop()


def write_config(
    path: Path, broker: Mosquitto, kind: str, client_id: str, protocol: str = "5"
) -> Path:
    config: dict[str, Any] = {
        "network_server": {
            "name": f"{kind}-test",
            "kind": kind,
            "broker": {
                "host": broker.host,
                "port": broker.port,
                "client_id": client_id,
                "protocol": protocol,
            },
        },
        "devices": {STATION_EUI.upper(): STATION, PUMP_EUI: PUMP},
        "fields": {
            "water_level_station": {
                "level_cm": {"metric": "water_level", "unit": "cm"},
                "battery_pct": {"metric": "battery", "unit": "%"},
            },
            "pump_station": {
                "pump.running": "pump_running",
                "sump.level_m": {"metric": "water_level", "unit": "m"},
            },
        },
    }
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def ingest(settings: Settings, city: City) -> Iterator[IngestService]:
    service = IngestService(settings, city, make_writer(settings.influx))
    service.start()
    assert service.wait_subscribed(10)
    yield service
    service.stop()


def start_bridge(settings: Settings, config: Path) -> Relay:
    relay = build("lorawan", config, settings)
    relay.start()
    assert relay.wait_ready(15), "the bridge did not connect to both brokers"
    return relay


def query(settings: Settings, q: str) -> list[dict[str, object]]:
    with InfluxQL.from_settings(settings.influx) as influx:
        return influx.rows(q)


def ns_settings(broker: Mosquitto) -> MqttSettings:
    return MqttSettings(host=broker.host, port=broker.port)


def test_chirpstack_uplinks_joins_and_status_reach_influx_and_the_device_topics(
    settings: Settings,
    ingest: IngestService,
    netserver: Mosquitto,
    tmp_path: Path,
    topic_root: str,
) -> None:
    topics = Topics(settings.mqtt.root)
    statuses = Collector(settings.mqtt, f"{settings.mqtt.root}/devices/+/status")
    packs = Collector(settings.mqtt, topics.all_sensor_up)  # what the rules read
    dead = Collector(settings.mqtt, topics.all_deadletter)
    config = write_config(tmp_path / "lorawan.yaml", netserver, "chirpstack", f"cs-{topic_root}")
    relay = start_bridge(settings, config)
    server = Publisher(ns_settings(netserver))
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)
    try:
        server.publish(
            ns.chirpstack_topic(STATION_EUI, "join"), ns.chirpstack_join(STATION_EUI, t0)
        )
        for i, f_cnt in enumerate([1, 2, 5]):  # 3 and 4 never reached the network server
            up = ns.chirpstack_up(
                STATION_EUI,
                t0 + timedelta(minutes=1 + i),
                f_cnt,
                {"level_cm": 120 + i, "battery_pct": 88, "temperature": 31.5},
                radio=[(-110, 3.5), (-97, 7.25)],
            )
            server.publish(ns.chirpstack_topic(STATION_EUI, "up"), up)
        pump = ns.chirpstack_up(
            PUMP_EUI,
            t0 + timedelta(minutes=2),
            7,
            {"pump": {"running": "running"}, "sump": {"level_m": 1.4}},
        )
        server.publish(ns.chirpstack_topic(PUMP_EUI, "up"), pump)
        server.publish(
            ns.chirpstack_topic(STATION_EUI, "status"),
            ns.chirpstack_status(STATION_EUI, t0 + timedelta(minutes=5), 77.0, 9),
        )
        stranger = "70b3d57ed0000001"
        server.publish(
            ns.chirpstack_topic(stranger, "up"),
            ns.chirpstack_up(stranger, t0, 1, {"level_cm": 1}),
        )
        too_high = ns.chirpstack_up(STATION_EUI, t0 + timedelta(minutes=9), 6, {"level_cm": 99999})
        server.publish(ns.chirpstack_topic(STATION_EUI, "up"), too_high)
        server.publish(ns.chirpstack_topic(STATION_EUI, "up"), b'{"deviceInfo": ')
        server.flush()

        def stored(measurement: str) -> int:
            rows = query(settings, f'SELECT count(value) FROM "{measurement}"')
            return int(str(rows[0]["count"])) if rows else 0

        wait_for(lambda: stored("water_level") == 4, 30, "3 station levels and 1 sump level")
        wait_for(lambda: stored("battery") == 4, 30, "3 uplink batteries and the status one")
        levels = query(settings, "SELECT value FROM water_level WHERE device = 'wl-alam-jaya-001'")
        assert [r["value"] for r in levels] == [120.0, 121.0, 122.0]
        sump = query(
            settings, "SELECT value FROM water_level WHERE device = 'ps-porisgaga-baru-001'"
        )
        assert [r["value"] for r in sump] == [140.0]  # 1.4 m in the catalogue's cm
        assert [r["value"] for r in query(settings, "SELECT value FROM pump_running")] == [1.0]
        rssi = query(settings, "SELECT value FROM rssi WHERE device = 'wl-alam-jaya-001'")
        assert {r["value"] for r in rssi} == {-97.0}  # the best gateway's

        wait_for(lambda: bool(query(settings, "SELECT * FROM data_quality")), 30, "the gap")
        (gap,) = query(settings, "SELECT * FROM data_quality")
        assert (gap["kind"], gap["cause"], gap["device"]) == (
            "frame_counter_gap",
            "lorawan",
            STATION,
        )
        assert (gap["missing"], gap["after_seq"], gap["next_seq"]) == (2, 2, 5)
        link = query(
            settings, f"SELECT snr, f_cnt, gateways FROM device_link WHERE device = '{STATION}'"
        )
        assert [(r["snr"], r["f_cnt"], r["gateways"]) for r in link][:3] == [
            (7.25, 1, 2),
            (7.25, 2, 2),
            (7.25, 5, 2),
        ]

        wait_for(lambda: len(statuses.snapshot()) >= 2, 15, "join and status statuses")
        bodies = [json.loads(m.payload) for m in statuses.snapshot()]
        assert [(b["device"], b["status"], b["reason"]) for b in bodies] == [
            (STATION, "online", "joined"),
            (STATION, "online", "device status"),
        ]
        assert bodies[1]["battery"] == 77.0 and bodies[1]["margin"] == 9
        late = Collector(settings.mqtt, topics.device_status(STATION))  # retained
        wait_for(lambda: bool(late.snapshot()), 10, "the retained status")
        assert json.loads(late.snapshot()[0].payload)["reason"] == "device status"
        late.close()
        assert all(b["gateway"] == "chirpstack-test" for b in bodies)

        wait_for(lambda: len(dead.snapshot()) >= 3, 15, "three dead letters")
        letters = [deadletter.decode(bytes(m.payload)) for m in dead.snapshot()]
        by_reason = {letter.reason: letter for letter in letters}
        assert set(by_reason) == {"unknown_device", "malformed_json", "out_of_range"}
        assert by_reason["unknown_device"].topic == ns.chirpstack_topic(stranger, "up")
        assert "70b3d57ed0000001" in by_reason["unknown_device"].detail
        # a value the catalogue refuses is judged by ingest, like any device's
        assert by_reason["out_of_range"].topic == topics.sensor_up(STATION)
        # the rules read the same topic: every uplink with readings is there
        assert len([m for m in packs.snapshot() if m.topic == topics.sensor_up(STATION)]) == 5
        wait_for(lambda: relay.stats.rejected == 2, 10, "the bridge's own two")
    finally:
        server.close()
        relay.stop()
        for c in (statuses, packs, dead):
            c.close()


def test_the_things_stack_over_mqtt_3_1_1(
    settings: Settings, ingest: IngestService, netserver: Mosquitto, tmp_path: Path, topic_root: str
) -> None:
    config = write_config(tmp_path / "tts.yaml", netserver, "tts", f"tts-{topic_root}", "3.1.1")
    relay = start_bridge(settings, config)
    server = Publisher(ns_settings(netserver))
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=20)
    topics = Topics(settings.mqtt.root)
    statuses = Collector(settings.mqtt, topics.device_status(STATION))
    try:
        server.publish(ns.tts_topic("level-1", "join"), ns.tts_join("level-1", STATION_EUI, t0))
        for i, f_cnt in enumerate([0, 1, 3]):  # f_cnt 0 is left out of the JSON
            body = ns.tts_up(
                "level-1", STATION_EUI, t0 + timedelta(minutes=1 + i), f_cnt, {"level_cm": 50 + i}
            )
            server.publish(ns.tts_topic("level-1", "up"), body)
        wrong = ns.tts_up("level-2", STATION_EUI, t0, 9, {"level_cm": 1})
        server.publish(ns.tts_topic("level-1", "up"), wrong)  # ids disagree with the topic
        server.flush()
        wait_for(
            lambda: len(query(settings, "SELECT value FROM water_level")) == 3, 30, "three levels"
        )
        assert [r["value"] for r in query(settings, "SELECT value FROM water_level")] == [
            50.0,
            51.0,
            52.0,
        ]
        assert [r["value"] for r in query(settings, "SELECT value FROM rssi")] == [-35.0] * 3
        wait_for(lambda: bool(query(settings, "SELECT * FROM data_quality")), 30, "the gap")
        (gap,) = query(settings, "SELECT * FROM data_quality")
        assert (gap["missing"], gap["after_seq"], gap["next_seq"]) == (1, 1, 3)
        wait_for(lambda: bool(statuses.snapshot()), 15, "the join status")
        assert json.loads(statuses.snapshot()[0].payload)["reason"] == "joined"
        wait_for(lambda: relay.stats.rejected == 1, 15, "the mismatch dead-lettered")
    finally:
        server.close()
        relay.stop()
        statuses.close()


def test_nothing_is_acknowledged_to_the_network_server_before_pantau_has_it(
    settings: Settings, ingest: IngestService, netserver: Mosquitto, tmp_path: Path, topic_root: str
) -> None:
    """A bridge that cannot reach Pantau's broker holds every uplink unacknowledged; the
    network server's broker keeps them in the bridge's session for the next run."""
    config = write_config(tmp_path / "lorawan.yaml", netserver, "chirpstack", f"cs-{topic_root}")
    cut_off = settings.model_copy(deep=True)
    cut_off.mqtt.port = free_port()  # nothing listens there
    relay = build("lorawan", config, cut_off)
    relay.start()
    assert relay.source.wait_subscribed(15)
    server = Publisher(ns_settings(netserver))
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    for i in range(5):
        up = ns.chirpstack_up(STATION_EUI, t0 + timedelta(minutes=i), 10 + i, {"level_cm": 70 + i})
        server.publish(ns.chirpstack_topic(STATION_EUI, "up"), up)
    server.close()
    wait_for(lambda: relay.source.received == 5, 15, "all five delivered to the bridge")
    relay.stop()
    assert relay.stats.messages == 0  # none acknowledged

    relay = start_bridge(settings, config)  # same session, Pantau reachable
    try:
        wait_for(lambda: len(query(settings, "SELECT value FROM water_level")) == 5, 30, "all five")
        assert relay.stats.messages == 5
    finally:
        relay.stop()


def test_a_bad_config_fails_at_start_with_file_and_line(
    settings: Settings, netserver: Mosquitto, tmp_path: Path
) -> None:
    path = write_config(tmp_path / "lorawan.yaml", netserver, "chirpstack", "x")
    text = path.read_text().replace("pump_running", "gate_opening").replace(PUMP, "no-such-device")
    path.write_text(text)
    with pytest.raises(ConfigErrors) as err:
        build("lorawan", path, settings)
    message = str(err.value)
    assert "lorawan.yaml:" in message
    assert "'no-such-device' is not in the registry" in message
    assert "'gate_opening' is not a metric of a pump_station" in message


def test_bridged_uplinks_are_held_to_the_device_budget(
    settings: Settings, city: City, netserver: Mosquitto, tmp_path: Path, topic_root: str
) -> None:
    """The budget is ingest's, per device, whatever path the reading took: a device that
    uplinks faster than its kind allows is dead-lettered as rate_limited."""
    settings.ingest.rate_limit_factor = 2  # two messages per report interval (60 s)
    service = IngestService(settings, city, make_writer(settings.influx))
    service.start()
    assert service.wait_subscribed(10)
    dead = Collector(settings.mqtt, Topics(settings.mqtt.root).deadletter("rate_limited"))
    config = write_config(tmp_path / "lorawan.yaml", netserver, "chirpstack", f"cs-{topic_root}")
    relay = start_bridge(settings, config)
    server = Publisher(ns_settings(netserver))
    t0 = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=3)
    try:
        for i in range(4):
            up = ns.chirpstack_up(STATION_EUI, t0 + timedelta(seconds=i), 20 + i, {"level_cm": 60})
            server.publish(ns.chirpstack_topic(STATION_EUI, "up"), up)
        server.flush()
        wait_for(lambda: len(dead.snapshot()) == 2, 30, "two uplinks over the budget")
        letter = deadletter.decode(bytes(dead.snapshot()[0].payload))
        assert letter.topic == Topics(settings.mqtt.root).sensor_up(STATION)
        assert "over its budget" in letter.detail
        wait_for(lambda: len(query(settings, "SELECT value FROM water_level")) == 2, 30, "two")
    finally:
        server.close()
        relay.stop()
        dead.close()
        service.stop()


def test_the_bridge_signs_in_with_its_own_account_on_the_network_servers_broker(
    settings: Settings,
    ingest: IngestService,
    tmp_path: Path,
    topic_root: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The password comes from the variable `password_env` names; a wrong one is refused
    by the broker and the bridge takes nothing."""
    passwd = tmp_path / "passwd"
    passwd.write_text(
        f"pantau-bridge:{hash_password('bridge-secret')}\nchirpstack:{hash_password('ns')}\n"
    )
    broker = Mosquitto(
        tmp_path / "secured", free_port(), options=MosquittoOptions(password_file=passwd)
    )
    broker.start()
    try:
        path = write_config(tmp_path / "l.yaml", broker, "chirpstack", f"cs-{topic_root}")
        doc = yaml.safe_load(path.read_text())
        doc["network_server"]["broker"] |= {
            "username": "pantau-bridge",
            "password_env": "PANTAU_TEST_NS_PASSWORD",
        }
        path.write_text(yaml.safe_dump(doc))
        monkeypatch.setenv("PANTAU_TEST_NS_PASSWORD", "wrong")
        refused = build("lorawan", path, settings)
        refused.start()
        assert not refused.source.wait_subscribed(3)
        refused.stop()

        monkeypatch.setenv("PANTAU_TEST_NS_PASSWORD", "bridge-secret")
        relay = start_bridge(settings, path)
        server = MqttSettings(
            host=broker.host, port=broker.port, username="chirpstack", password=SecretStr("ns")
        )
        publisher = mqtt.Client(CallbackAPIVersion.VERSION2, "chirpstack")
        apply_credentials(publisher, server)
        publisher.connect(broker.host, broker.port)
        publisher.loop_start()
        when = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
        info = publisher.publish(
            ns.chirpstack_topic(STATION_EUI, "up"),
            ns.chirpstack_up(STATION_EUI, when, 1, {"level_cm": 42}),
            qos=1,
        )
        info.wait_for_publish(10)
        assert info.is_published()
        wait_for(lambda: bool(query(settings, "SELECT value FROM water_level")), 30, "stored")
        assert query(settings, "SELECT value FROM water_level")[0]["value"] == 42.0
        publisher.disconnect()
        publisher.loop_stop()
        relay.stop()
    finally:
        broker.stop()


def test_pantau_bridge_lorawan_runs_until_sigterm(
    stack: LocalStack,
    settings: Settings,
    ingest: IngestService,
    netserver: Mosquitto,
    tmp_path: Path,
    topic_root: str,
) -> None:
    """The command itself: relays an uplink, stops cleanly on SIGTERM with its figures."""
    config = write_config(tmp_path / "lorawan.yaml", netserver, "chirpstack", f"cli-{topic_root}")
    env = {
        **os.environ,
        **stack.environment(),
        "PANTAU_MQTT__ROOT": settings.mqtt.root,
        "PANTAU_INFLUX__DATABASE": settings.influx.database,
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "pantau.cli", "bridge", "lorawan", "--config", str(config)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        server = Publisher(ns_settings(netserver))
        when = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)

        def relayed() -> bool:  # before its first subscription an uplink has no session
            server.publish(
                ns.chirpstack_topic(STATION_EUI, "up"),
                ns.chirpstack_up(STATION_EUI, when, 1, {"level_cm": 77}),
            )
            time.sleep(0.3)
            return bool(query(settings, "SELECT value FROM water_level"))

        wait_for(relayed, 60, "the command to relay an uplink")
        server.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()[-2000:]
    assert b"stopped: RelayStats(messages=" in err
