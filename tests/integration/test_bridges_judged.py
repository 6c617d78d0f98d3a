"""Bridged readings are judged by the rules like any device's: a LoRaWAN station whose
decoded level passes its Siaga I level opens the flood incident, through the real
network-server broker, bridge, Pantau's broker and rules service (SQLite store)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pantau.city import load_city
from pantau.incidents import Severity
from pantau.local.mosquitto import Mosquitto
from pantau.local.ports import free_port
from pantau.roster import load_roster
from pantau.settings import RulesSettings, Settings
from pantau.zoneindex import ZoneIndex
from rules.routing import Router
from rules.service import RulesService, make_store
from testkit import netservers as ns
from testkit.mqtt import Publisher, wait_for
from tests.integration.test_lorawan_bridge import (
    STATION,
    STATION_EUI,
    ns_settings,
    start_bridge,
    write_config,
)

pytestmark = pytest.mark.integration
RULE = "flood-water-level"


def test_a_bridged_level_above_siaga_i_opens_the_flood_incident(
    settings: Settings, tmp_path: Path, topic_root: str
) -> None:
    settings = settings.model_copy(
        update={
            "database_url": f"sqlite:///{tmp_path / 'incidents.db'}",
            "rules": RulesSettings(client_id=f"rules-{topic_root}", tick_interval_s=0),
        }
    )
    city = load_city()
    zones = ZoneIndex.for_city(city)
    store = make_store(settings, zones)
    rules = RulesService(settings, city, store, Router(load_roster(city), zones), zones)
    netserver = Mosquitto(tmp_path / "netserver", free_port())
    netserver.start()
    rules.start()
    relay = None
    try:
        assert rules.wait_subscribed(10)
        config = write_config(tmp_path / "l.yaml", netserver, "chirpstack", f"cs-{topic_root}")
        relay = start_bridge(settings, config)
        server = Publisher(ns_settings(netserver))
        t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
        for i in range(5):  # 150 cm for 4 minutes: past Siaga I (145) longer than raise_for
            up = ns.chirpstack_up(STATION_EUI, t0 + timedelta(minutes=i), i + 1, {"level_cm": 150})
            server.publish(ns.chirpstack_topic(STATION_EUI, "up"), up)
        server.close()

        def flood() -> list[Severity]:
            return [i.severity_current for i in store.active() if i.key.rule_id == RULE]

        wait_for(lambda: bool(flood()), 60, "the flood incident")
        wait_for(lambda: flood() == [Severity.AWAS], 30, "awas")
        (incident,) = [i for i in store.active() if i.key.rule_id == RULE]
        assert STATION in str(incident.evidence)
    finally:
        if relay is not None:
            relay.stop()
        rules.stop()
        store.close()
        netserver.stop()
