"""`pantau bridge sparkplug` end to end: a simulated pump station (a Sparkplug B edge
node, simulators.sparkplug_station) publishes through a real Mosquitto (the plant's
broker); the bridge relays into Pantau's broker; ingest stores into InfluxDB."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from bridges.__main__ import build
from bridges.relay import Relay
from ingest.service import IngestService
from pantau import deadletter
from pantau.city import load_city
from pantau.influx.query import InfluxQL
from pantau.influx.writers import make_writer
from pantau.local.mosquitto import Mosquitto
from pantau.local.ports import free_port
from pantau.settings import MqttSettings, Settings
from pantau.sparkplug_b_pb2 import Payload
from pantau.topics import Topics
from simulators.sparkplug_station import PumpStationNode
from testkit.mqtt import Collector, Publisher, wait_for

CONFIG = Path(__file__).resolve().parents[2] / "config"

pytestmark = pytest.mark.integration

PUMP, OUTFALL = "ps-porisgaga-baru-001", "wl-alam-jaya-001"


@pytest.fixture(scope="module")
def plant(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    broker = Mosquitto(tmp_path_factory.mktemp("plant"), free_port())
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def ingest(settings: Settings) -> Iterator[IngestService]:
    service = IngestService(settings, load_city(), make_writer(settings.influx))
    service.start()
    assert service.wait_subscribed(10)
    yield service
    service.stop()


def bridge(settings: Settings, plant: Mosquitto, tmp_path: Path, group: str) -> Relay:
    config = yaml.safe_load((CONFIG / "sparkplug.yaml").read_text())
    config["broker"] = {"host": plant.host, "port": plant.port, "client_id": f"sp-{group}"}
    config["groups"] = [group]
    config["nodes"][0]["group"] = group
    config["host_id"] = f"pantau-{group}"
    path = tmp_path / "sparkplug.yaml"
    path.write_text(yaml.safe_dump(config))
    relay = build("sparkplug", path, settings)
    relay.start()
    assert relay.wait_ready(15)
    return relay


def station(plant: Mosquitto, group: str) -> PumpStationNode:
    return PumpStationNode(
        MqttSettings(host=plant.host, port=plant.port), group, "PS-Porisgaga-Baru", f"edge-{group}"
    )


def rows(settings: Settings, q: str) -> list[dict[str, object]]:
    with InfluxQL.from_settings(settings.influx) as influx:
        return influx.rows(q)


def values(settings: Settings, measurement: str, device: str) -> list[object]:
    return [
        r["value"]
        for r in rows(settings, f"SELECT value FROM {measurement} WHERE device = '{device}'")
    ]


def test_a_pump_station_births_data_gaps_unknown_aliases_and_deaths(
    settings: Settings, ingest: IngestService, plant: Mosquitto, tmp_path: Path, topic_root: str
) -> None:
    topics = Topics(settings.mqtt.root)
    statuses = Collector(settings.mqtt, f"{settings.mqtt.root}/devices/+/status")
    dead = Collector(settings.mqtt, topics.all_deadletter)
    relay = bridge(settings, plant, tmp_path, topic_root)
    node = station(plant, topic_root)
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)
    try:
        node.start()  # NBIRTH + DBIRTH: Pump/Running false, sump 1.0 m, outfall 80 cm
        wait_for(lambda: len(values(settings, "water_level", OUTFALL)) == 1, 30, "the births")
        node.data(t0 + timedelta(minutes=1), **{"Pump/Running": True, "Sump/Level": 1.6})
        node.outfall(t0 + timedelta(minutes=2), 95.5)
        node.lose(2)  # two messages the broker never saw
        node.data(t0 + timedelta(minutes=3), **{"Pump/Current": 12.5, "Sump/Level": 1.2})
        wait_for(lambda: len(values(settings, "water_level", PUMP)) == 3, 30, "sump levels")
        assert values(settings, "water_level", PUMP)[:2] == [160.0, 120.0]  # m -> cm
        assert values(settings, "pump_running", PUMP)[0] == 1.0
        assert values(settings, "water_level", OUTFALL)[0] == 95.5

        wait_for(lambda: bool(rows(settings, "SELECT * FROM data_quality")), 30, "the seq gap")
        (gap,) = rows(settings, "SELECT * FROM data_quality")
        assert (gap["device"], gap["kind"], gap["cause"]) == (PUMP, "seq_gap", "sparkplug")
        assert (gap["missing"], gap["after_seq"], gap["next_seq"]) == (2, 3, 6)

        stray = Payload(timestamp=int(t0.timestamp() * 1000))
        stray.metrics.add(alias=99, float_value=1.0)
        node.raw("NDATA", stray)  # an alias no birth defined: dead letter and rebirth
        wait_for(lambda: node.rebirths == 1, 15, "the rebirth request")
        bad = Publisher(MqttSettings(host=plant.host, port=plant.port))
        bad.publish(node.topic("NDATA"), b"\xff\xff not protobuf")
        bad.close()
        wait_for(lambda: len(dead.snapshot()) >= 2, 15, "two dead letters")
        letters = [deadletter.decode(bytes(m.payload)) for m in dead.snapshot()]
        assert [x.reason for x in letters] == ["unknown_alias", "malformed_protobuf"]
        assert "alias 99" in letters[0].detail and letters[0].topic == node.topic("NDATA")

        node.device_death(t0 + timedelta(minutes=4))
        node.stop()  # NDEATH
        wait_for(
            lambda: (
                sum(json.loads(m.payload)["status"] == "offline" for m in statuses.snapshot()) >= 3
            ),
            15,
            "DDEATH and NDEATH statuses",
        )
        seen = [(m.topic.split("/")[-2], json.loads(m.payload)) for m in statuses.snapshot()]
        assert [(d, s["status"], s["reason"]) for d, s in seen] == [
            (PUMP, "online", "NBIRTH"),
            (OUTFALL, "online", "DBIRTH"),
            (PUMP, "online", "NBIRTH"),  # the rebirth
            (OUTFALL, "online", "DBIRTH"),
            (OUTFALL, "offline", "DDEATH"),
            (PUMP, "offline", "NDEATH"),
            (OUTFALL, "offline", "NDEATH"),
        ]
        assert all(s["gateway"] == f"{topic_root}/PS-Porisgaga-Baru" for _, s in seen)
    finally:
        relay.stop()
        statuses.close()
        dead.close()


def test_a_bridge_started_after_the_birth_asks_for_one(
    settings: Settings, ingest: IngestService, plant: Mosquitto, tmp_path: Path, topic_root: str
) -> None:
    node = station(plant, topic_root)
    node.start()  # born before the bridge listens: its aliases are unknown to it
    relay = bridge(settings, plant, tmp_path, topic_root)
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    try:
        node.data(t0, **{"Sump/Level": 2.0})  # refused: no birth seen; rebirth asked
        wait_for(lambda: node.rebirths == 1, 15, "the rebirth request")
        node.data(t0 + timedelta(minutes=1), **{"Sump/Level": 2.5})
        wait_for(lambda: 250.0 in values(settings, "water_level", PUMP), 30, "data after rebirth")
        # The refused NDATA's 2.0 m is not stored at its time; the rebirth's NBIRTH
        # carries the value again, at the birth's (later) time.
        assert values(settings, "water_level", PUMP) == [250.0, 200.0]
        assert relay.stats.rejected == 1 and relay.stats.commands == 1
    finally:
        node.stop()
        relay.stop()


def test_the_host_application_state_is_online_while_the_bridge_runs(
    settings: Settings, plant: Mosquitto, tmp_path: Path, topic_root: str
) -> None:
    """Sparkplug 3.0 edge nodes with a primary host publish their births once its STATE
    says online: retained, after the bridge subscribed; offline again when it stops."""
    state = f"spBv1.0/STATE/pantau-{topic_root}"
    relay = bridge(settings, plant, tmp_path, topic_root)
    watch = MqttSettings(host=plant.host, port=plant.port)
    seen = Collector(watch, state)  # subscribes after: gets the retained one
    try:
        wait_for(lambda: bool(seen.snapshot()), 10, "the retained STATE")
        online = json.loads(seen.snapshot()[0].payload)
        assert online["online"] is True and online["timestamp"] > 0
    finally:
        relay.stop()
    wait_for(lambda: len(seen.snapshot()) >= 2, 10, "STATE offline")
    offline = json.loads(seen.snapshot()[-1].payload)
    assert offline == {"online": False, "timestamp": online["timestamp"]}
    seen.close()
