"""Simulator -> real Mosquitto -> rules service -> incidents (PostgreSQL), incident
events and crew alerts (MQTT), on the storm scenario.

The scenario's event time is in the past (played as fast as the broker takes it), so
the service's wall-clock tick is off and the test flushes with `advance_to(end)`.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import text

from ingest.service import IngestService
from pantau.city import City, load_city
from pantau.incidents import Hazard
from pantau.influx.query import InfluxQL
from pantau.influx.writers import make_writer
from pantau.roster import load_roster
from pantau.settings import RulesSettings, Settings
from pantau.store import Incident, IncidentStore
from pantau.zoneindex import ZoneIndex
from rules.routing import Router
from rules.rulespec import load_rules
from rules.service import RulesService, make_store
from simulators.publisher import run_scenario
from simulators.report import SimReport
from simulators.scenario import find_scenario, load_scenario
from testkit.mqtt import Collector, wait_for
from testkit.truth import Observed, ground_truth

pytestmark = pytest.mark.integration

FAR_AWAY = {"kec-ciledug", "kec-larangan"}  # the far south-east; the storm is west


@dataclass
class World:
    settings: Settings
    city: City
    zones: ZoneIndex
    router: Router
    store: IncidentStore
    influx: InfluxQL

    def service(self) -> RulesService:
        return RulesService(
            self.settings, self.city, self.store, self.router, self.zones, influx=self.influx
        )


@pytest.fixture
def world(settings: Settings, postgres_url: str, topic_root: str) -> Iterator[World]:
    settings = settings.model_copy(
        update={
            "database_url": postgres_url,
            "rules": RulesSettings(
                client_id=f"rules-{topic_root}",
                tick_interval_s=0,  # event time is the scenario's past: flush explicitly
                rebuild_window_s=3 * 86400,
            ),
        }
    )
    city = load_city()
    zones = ZoneIndex.for_city(city)
    store = make_store(settings, zones)
    influx = InfluxQL.from_settings(settings.influx)
    yield World(settings, city, zones, Router(load_roster(city), zones), store, influx)
    store.close()
    influx.close()


def kecamatan_of(world: World, zone_id: str) -> str | None:
    return world.router.kecamatan_of(zone_id)


def all_incidents(store: IncidentStore) -> list[Incident]:
    return store.active()  # nobody acknowledges or resolves in these tests


def assert_matches_truth(world: World, report: SimReport) -> None:
    """The incidents in SQL are exactly those the scenario's ground truth expects."""
    rules = load_rules(world.settings.config_dir / "rules.yaml", world.city)
    scenario = load_scenario(find_scenario("storm-karawaci"), world.city)
    truth = ground_truth(world.city, scenario, rules, report.end, start=report.start)
    verdict = truth.check(
        Observed(i.key, i.opened_at, i.severity_max) for i in all_incidents(world.store)
    )
    print(verdict.summary().splitlines()[0])
    assert verdict.exact, verdict.summary()


def keys_in_sql(store: IncidentStore) -> Counter[str]:
    with store.engine.connect() as conn:
        rows = conn.execute(text("SELECT rule_id, zone_id, hazard FROM incidents")).all()
    return Counter(f"{r[0]}|{r[1]}|{r[2]}" for r in rows)


def test_storm_opens_flood_incidents_in_karawaci_and_alerts_the_routed_crews(
    world: World,
) -> None:
    settings, city = world.settings, world.city
    root = settings.mqtt.root
    events = Collector(settings.mqtt, f"{root}/incidents/+")
    alerts = Collector(settings.mqtt, f"{root}/alerts/crews/+")
    service = world.service()
    service.start()
    try:
        assert service.wait_subscribed(10)
        started = time.monotonic()
        report = run_scenario(
            city, load_scenario(find_scenario("storm-karawaci"), city), settings.mqtt, speed=None
        )
        assert report.completed and report.failed == 0
        wait_for(lambda: service.stats.messages >= report.messages, 120, "every message")
        took = time.monotonic() - started
        assert service.advance_to(report.end, 60)
        opened = service.stats.opened
        wait_for(lambda: len(alerts.snapshot()) >= opened, 30, "an alert per opened incident")
    finally:
        service.stop()
        events.close()
        alerts.close()
    stats = service.stats
    assert stats.messages == report.messages  # nothing redelivered on a clean run
    assert stats.rejected >= len(report.malformed)
    print(  # figures for the report
        f"\nrules service: {stats.readings / took:.0f} readings/s over {took:.1f} s "
        f"(publisher-bound), {stats}"
    )  # figures for the report

    incidents = all_incidents(world.store)
    assert incidents and len(incidents) == stats.opened
    assert_matches_truth(world, report)  # which zones, hazards, severities, in which order
    # floods in and around Karawaci, none in the far south-east
    flood_kec = {
        kecamatan_of(world, i.key.zone_id) for i in incidents if i.key.hazard is Hazard.FLOOD
    }
    assert "kec-karawaci" in flood_kec
    assert not flood_kec & FAR_AWAY, flood_kec
    assert any(
        i.key.rule_id == "flood-widespread" and i.key.zone_id == "kec-karawaci" for i in incidents
    )
    # exactly one incident per dedup key, in SQL as well
    assert all(n == 1 for n in keys_in_sql(world.store).values())

    # one crew alert per opened incident (plus one per severity rise), to the routed crew
    alert_msgs = [(m.topic, json.loads(m.payload)) for m in alerts.snapshot()]
    first_alert: dict[int, tuple[str, dict[str, object]]] = {}
    last_alert: dict[int, dict[str, object]] = {}
    severities: dict[int, set[str]] = {}
    for topic, body in alert_msgs:
        last_alert[int(str(body["incident_id"]))] = body
        severities.setdefault(int(str(body["incident_id"])), set()).add(str(body["severity"]))
        if body["alert"] == "opened":
            assert body["incident_id"] not in first_alert, "an incident alerted as opened twice"
            first_alert[int(str(body["incident_id"]))] = (topic, body)
    assert set(first_alert) == {i.id for i in incidents}
    for inc in incidents:
        topic, body = first_alert[inc.id]
        crew = world.router.route(inc.key.zone_id, inc.key.hazard, inc.opened_at)
        assert topic == f"{root}/alerts/crews/{crew}"
        assert body["hazard"] == inc.key.hazard.value
        assert body["zone_id"] == inc.key.zone_id
        assert body["zone_name"] == world.zones.zone(inc.key.zone_id).name
        assert body["devices"] and body["severity"]
        # a rise tightens the SLA: the latest alert carries the due time in force
        assert last_alert[inc.id]["ack_due"] == inc.sla_ack_due.isoformat()
        assert inc.severity_max.name.lower() in severities[inc.id]
    # the storm starts at 15:30 WIB: Karawaci's floods go to BPBD's western evening crew
    karawaci_floods = [
        i
        for i in incidents
        if i.key.hazard is Hazard.FLOOD and kecamatan_of(world, i.key.zone_id) == "kec-karawaci"
    ]
    assert {first_alert[i.id][0] for i in karawaci_floods} == {
        f"{root}/alerts/crews/bpbd-barat-siang"
    }

    # incident events on the zone's topic, the opening one carrying SLA and evidence
    opened_events = {}
    for m in events.snapshot():
        body = json.loads(m.payload)
        assert m.topic == f"{root}/incidents/{body['zone_id']}"
        if body["update"] == "opened":
            opened_events[body["incident_id"]] = body
    assert set(opened_events) == {i.id for i in incidents}
    sample = opened_events[karawaci_floods[0].id]
    assert sample["agency"] == "bpbd" and sample["workflow_state"] == "open"
    assert sample["sla"]["ack_due"] and sample["evidence"]["device_ids"]


def test_a_restart_mid_storm_opens_no_incident_twice(world: World) -> None:
    """Stop the service while the storm is being played, start a new one on the same
    store and MQTT session: it rebuilds from InfluxDB (ingest runs alongside), takes the
    messages the first never acknowledged, and recognises the incidents already open."""
    settings, city = world.settings, world.city
    alerts = Collector(settings.mqtt, f"{settings.mqtt.root}/alerts/crews/+")
    ingest = IngestService(settings, city, make_writer(settings.influx))
    ingest.start()
    first = world.service()
    first.start()
    second: RulesService | None = None
    result: list[SimReport] = []
    try:
        assert ingest.wait_subscribed(10) and first.wait_subscribed(10)
        player = threading.Thread(
            target=lambda: result.append(
                run_scenario(
                    city,
                    load_scenario(find_scenario("storm-karawaci"), city),
                    settings.mqtt,
                    speed=None,
                )
            )
        )
        player.start()
        wait_for(lambda: first.stats.opened >= 3, 120, "the first incidents")
        first.stop()
        second = world.service()
        second.start()
        assert second.wait_subscribed(10)
        player.join(180)
        report = result[0]
        assert report.completed
        done = second
        wait_for(
            lambda: first.stats.messages + done.stats.messages >= report.messages,
            120,
            "every message, between the two",
        )
        assert second.advance_to(report.end, 60)
    finally:
        if second is not None:
            second.stop()
        ingest.stop()
        alerts.close()
    print(f"\nfirst: {first.stats}\nsecond: {second.stats}")
    assert second.stats.rebuilt_readings > 0
    counts = keys_in_sql(world.store)
    assert counts and all(n == 1 for n in counts.values()), counts
    opened = Counter(
        json.loads(m.payload)["incident_id"]
        for m in alerts.snapshot()
        if json.loads(m.payload)["alert"] == "opened"
    )
    assert all(n == 1 for n in opened.values()), opened
    assert set(opened) == {i.id for i in all_incidents(world.store)}
    assert_matches_truth(world, report)  # nothing lost across the restart either


def test_a_bad_rule_file_keeps_the_old_rules_and_a_good_one_is_taken(
    world: World, tmp_path: Path
) -> None:
    rules_file = tmp_path / "rules.yaml"
    shutil.copy(world.settings.config_dir / "rules.yaml", rules_file)
    world.settings = world.settings.model_copy(
        update={
            "rules": world.settings.rules.model_copy(
                update={"rules_file": rules_file, "reload_check_s": 0.1}
            )
        }
    )
    service = world.service()
    service.start()
    try:
        assert service.wait_subscribed(10)
        text_before = rules_file.read_text(encoding="utf-8")
        rules_file.write_text(text_before.replace("kind: threshold", "kind: thresh", 1))
        wait_for(lambda: service.stats.reload_errors == 1, 10, "the bad file refused")
        assert service.stats.reloads == 0
        # a good edit: the heavy-rain rule goes
        start = text_before.index("  - id: heavy-rain")
        end = text_before.index("  - id:", start + 1)
        rules_file.write_text(text_before[:start] + text_before[end:])
        wait_for(lambda: service.stats.reloads == 1, 10, "the good file taken")
        assert "heavy-rain" not in service.rule_ids
        assert "flood-water-level" in service.rule_ids
    finally:
        service.stop()
