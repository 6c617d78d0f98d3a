"""Camera incidents end to end: the camera simulator over HTTP -> vision workers -> the
real Mosquitto -> the rules service (and ingest) -> incidents in PostgreSQL, with the
flood's JPEG reachable from the incident through the API.

The camera rules are those of config/rules.yaml with holds of 5 s instead of minutes
(and a lateness of 1 s), so the test takes seconds: water rising past the camera's
flood depth opens a flood incident, a covered lens a camera-fault incident, and a
station that reads 20 cm while the gauge shows 50 cm and more a data-quality incident.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from pydantic import SecretStr

from api.app import create_app
from api.context import build_context
from api.principal import Role
from ingest.service import IngestService
from pantau.cameras import load_cameras
from pantau.city import load_city
from pantau.incidents import Hazard, Severity
from pantau.influx.query import InfluxQL
from pantau.influx.writers import make_writer
from pantau.roster import load_roster
from pantau.settings import ApiSettings, RulesSettings, Settings
from pantau.store import Incident
from pantau.topics import Topics
from pantau.wire import NATIVE_CONTENT_TYPE, Sample, encode_native
from pantau.zoneindex import ZoneIndex
from rules import backtest as bt
from rules.cameras import read_camera_history, rules_city
from rules.routing import Router
from rules.rulespec import load_rules
from rules.service import RulesService, make_store
from simulators.camera.server import CameraServer
from testkit.mqtt import Publisher, wait_for
from tests.integration.camera_scenes import FLOOD, ROAD, flood_and_covered_road, served_cameras
from vision.service import VisionService

pytestmark = pytest.mark.integration

STATION = "wl-babakan-002"  # the station beside FLOOD
DEFAULT_RULES = Path(__file__).resolve().parents[2] / "config" / "rules.yaml"
PASSWORD = "correct-horse-battery"


def camera_rules(path: Path) -> Path:
    """config/rules.yaml's camera rules with 5 s holds."""
    doc: dict[str, Any] = yaml.safe_load(DEFAULT_RULES.read_text())
    rules = [
        r for r in doc["rules"] if any(k.startswith("cctv_") for k in r["applies_to"]["kinds"])
    ]
    for r in rules:
        for key in ("raise_for", "clear_for"):
            if key in r:
                r[key] = "5s"
    path.write_text(yaml.safe_dump({"lateness": "1s", "rules": rules}, sort_keys=False))
    return path


@pytest.fixture
def server() -> Iterator[CameraServer]:
    with flood_and_covered_road(covered_at_s=4.0) as srv:  # the lens covered 4 s in
        yield srv


def station_reports(settings: Settings, stop: threading.Event) -> None:
    """The station beside the flood camera reads 20 cm (stuck low) every second."""
    publisher = Publisher(settings.mqtt)
    topic = Topics(settings.mqtt.root).sensor_up(STATION)
    seq = 0
    while not stop.wait(1.0):
        seq += 1
        payload = encode_native(
            STATION, seq, datetime.now(UTC), [Sample("water_level", 20.0, "cm")]
        )
        publisher.publish(topic, payload, NATIVE_CONTENT_TYPE)
    publisher.close()


def by_rule(incidents: list[Incident]) -> dict[str, Incident]:
    return {i.key.rule_id: i for i in incidents}


def test_camera_incidents_with_the_frame_as_evidence(
    settings: Settings, postgres_url: str, topic_root: str, tmp_path: Path, server: CameraServer
) -> None:
    settings = settings.model_copy(
        update={
            "database_url": postgres_url,
            "evidence_dir": tmp_path / "evidence",
            "rules": RulesSettings(
                client_id=f"rules-{topic_root}",
                rules_file=camera_rules(tmp_path / "rules.yaml"),
                tick_interval_s=0.5,
                rebuild_window_s=0,
            ),
            "api": ApiSettings(
                jwt_secret=SecretStr(secrets.token_urlsafe(32)),
                argon2_memory_kib=1024,
                argon2_time_cost=1,
            ),
        }
    )
    city = load_city()
    registry = load_cameras(city)
    zones = ZoneIndex.for_city(city)
    store = make_store(settings, zones)
    rules = RulesService(
        settings, city, store, Router(load_roster(city), zones), zones, cameras=registry
    )
    ingest = IngestService(settings, city, make_writer(settings.influx), cameras=registry)
    cameras = served_cameras(registry, server)
    started = datetime.now(UTC)
    ingest.start()
    rules.start()
    assert ingest.wait_subscribed(10) and rules.wait_subscribed(10)
    vision = VisionService(settings.mqtt, cameras, evidence_dir=settings.evidence_dir)
    stop = threading.Event()
    station = threading.Thread(target=station_reports, args=(settings, stop), daemon=True)
    vision.start()
    station.start()
    wanted = {"flood-camera-depth", "camera-fault", "flood-camera-vs-station"}
    try:
        wait_for(lambda: wanted <= by_rule(store.active()).keys(), 45, "the three incidents")
    finally:
        stop.set()
        vision.stop()
        station.join(5)
        rules.stop()

    found = by_rule(store.active())
    for i in found.values():
        print(f"{i.key.rule_id}: opened {(i.opened_at - started).total_seconds():.1f} s in")
    assert found.keys() == wanted  # no queue on a flowing road, no camera offline
    flood = found["flood-camera-depth"]
    assert (flood.key.zone_id, flood.key.hazard, flood.agency) == (
        "kel-babakan",
        Hazard.FLOOD,
        "bpbd",
    )
    assert flood.evidence.device_ids == (FLOOD,) and flood.evidence.peak_value >= 60
    assert flood.severity_max >= Severity.WASPADA
    fault = found["camera-fault"]
    assert (fault.key.zone_id, fault.key.hazard, fault.agency) == (
        registry[ROAD].kelurahan_id,
        Hazard.CAMERA_FAULT,
        "diskominfo",
    )
    assert fault.evidence.device_ids == (ROAD,)
    quality = found["flood-camera-vs-station"]
    assert (quality.key.hazard, quality.agency) == (Hazard.DATA_QUALITY, "diskominfo")
    assert set(quality.evidence.device_ids) == {FLOOD, STATION}
    detail = store.get(quality.id)
    assert detail is not None
    opened = next(e.reason for e in detail.timeline if STATION in e.reason)
    assert f"water_level 20 cm at {STATION}" in opened and f"at {FLOOD}" in opened, opened
    print(opened)

    # The flood's frame, saved by vision and recorded by ingest, through the API.
    ctx = build_context(settings, city=city, zones=zones)
    ctx.accounts.create_user("ops", PASSWORD, Role.OPERATOR)
    try:
        with TestClient(create_app(ctx)) as client:
            token = client.post("/auth/token", data={"username": "ops", "password": PASSWORD})
            h = {"Authorization": f"Bearer {token.json()['access_token']}"}

            def frames() -> list[dict[str, Any]]:
                body = client.get(f"/incidents/{flood.id}", headers=h).json()
                return list(body["evidence"]["camera_frames"])

            wait_for(lambda: bool(frames()), 10, "the flood frame stored by ingest")
            (frame,) = frames()
            assert frame["camera_id"] == FLOOD and frame["url"].endswith("-flood.jpg")
            jpeg = client.get(frame["url"], headers=h)
            assert jpeg.status_code == 200 and jpeg.content[:2] == b"\xff\xd8"
            saved = settings.evidence_dir / FLOOD / frame["url"].rsplit("/", 1)[1]
            assert jpeg.content == saved.read_bytes()
            assert client.get(frame["url"]).status_code == 401
            fault_frames = client.get(f"/incidents/{fault.id}", headers=h).json()
            assert [f["faults"] for f in fault_frames["evidence"]["camera_frames"]] == [
                ["occluded"]
            ]
        # A restarted rules service rebuilds its state from InfluxDB, cameras included:
        # it re-emits the three open verdicts, and the store opens nothing twice.
        before = sorted(i.id for i in store.active())
        restart = settings.rules.model_copy(update={"rebuild_window_s": 600.0})
        with InfluxQL.from_settings(settings.influx) as influx:
            again = RulesService(
                settings.model_copy(update={"rules": restart}),
                city,
                store,
                Router(load_roster(city), zones),
                zones,
                influx=influx,
                cameras=registry,
            )
            again.start()
            again.stop()
        assert again.stats.rebuilt_readings > 0
        assert again.stats.changes >= 3 and again.stats.opened == 0
        assert sorted(i.id for i in store.active()) == before
    finally:
        ctx.close()
        ingest.stop()

    # A restarted rules service reads the cameras back at its own rate.
    with InfluxQL.from_settings(settings.influx) as influx:
        history = read_camera_history(
            influx, registry, city.catalogue, started - timedelta(minutes=1)
        )
    depths = [r.value for r in history if r.device_id == FLOOD and r.metric == "water_depth"]
    assert depths and max(depths) >= 60
    assert {r.metric for r in history if r.device_id == ROAD} >= {"camera_fault", "stopped_traffic"}
    # ... and so does the backtest, which replays the camera rules over the stored data.
    with InfluxQL.from_settings(settings.influx) as influx:
        rules_file = settings.rules.rules_file
        assert rules_file is not None
        replayed = bt.run(
            influx,
            city,
            load_rules(rules_file, rules_city(city, registry)),
            started - timedelta(minutes=1),
            datetime.now(UTC),
            cameras=registry,
        )
    replayed_rules = {e.key.rule_id for e in replayed.episodes}
    print("backtest:", sorted(replayed_rules))
    assert {"flood-camera-depth", "camera-fault"} <= replayed_rules
    assert "camera-offline" not in replayed_rules  # the 8 cameras never heard are left out
    store.close()
