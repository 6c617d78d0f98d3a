"""Pantau for another city by swapping config/ alone: a small synthetic city in WITA
(Asia/Makassar) with its own name, kelurahan, agencies, crews, catalogue, devices,
rules, SLA and KPI targets. Its storm is played through Mosquitto into ingest
(InfluxDB) and the rules service (incidents, crew alerts), its crews answer through
the API, and nothing Pantau serves or stores names Kota Tangerang.
"""

from __future__ import annotations

import json
import queue
import secrets
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
import yaml
from pydantic import SecretStr
from sqlalchemy import MetaData, create_engine, select

from api.app import create_app
from api.context import build_context
from api.principal import Role
from demo.ekinerja import answer_and_evaluate, kpi_table
from demo.run import play
from pantau.city import City, city_zones, load_city
from pantau.cityfacts import load_city_facts
from pantau.incidents import Hazard
from pantau.influx.query import InfluxQL
from pantau.settings import ApiSettings, RulesSettings, Settings
from pantau.store import Incident, IncidentStore
from pantau.zoneindex import ZoneIndex
from simulators.placement import FleetPlan, place_fleet
from simulators.scenario import load_scenario
from testkit.mqtt import Collector
from tests.api.server import serve

pytestmark = pytest.mark.integration

FOREIGN = "tangerang"  # the first city: nothing of it may leak into the second
PASSWORD = "correct-horse-battery"

CITY_YAML = """\
name: Tepian
display_name: Kota Tepian
government: Pemerintah Kota Tepian
cap_sender: pantau@tepian.example.id
time_zone: Asia/Makassar   # WITA, UTC+8
map: {lat: -0.50, lon: 117.12, zoom: 13}
"""

# Two kecamatan of two kelurahan each, 0.02 degree squares; Hulu (upstream) south of
# Hilir. The properties are those pantau.zones reads from the BPS/HDX layer.
KELURAHAN = {
    ("Hilir", "id6499020"): [("Hilir Satu", 117.10, -0.50), ("Hilir Dua", 117.12, -0.50)],
    ("Hulu", "id6499010"): [("Hulu Satu", 117.10, -0.52), ("Hulu Dua", 117.12, -0.52)],
}

AGENCIES_YAML = """\
hazards:
  flood: bencana
  heavy_rain: bencana
  pump_failure: sda
  road_damage: sda
  traffic_jam: sda
  sensor_offline: kominfo
  sensor_stuck: kominfo
  battery_low: kominfo
  data_quality: kominfo
  camera_fault: kominfo
agencies:
  bencana:
    name: Badan Penanggulangan Bencana Daerah Kota Tepian
    short: BPBD Tepian
    responsibilities: Flood response and rain monitoring.
  sda:
    name: Dinas Sumber Daya Air
    short: Dinas SDA
    responsibilities: Drains, canals and their level stations.
  kominfo:
    name: Dinas Komunikasi dan Informatika
    short: Kominfo
    responsibilities: The sensor network.
"""

CREWS_YAML = """\
shifts:   # WITA
  pagi: {start: "07:00", end: "15:00"}
  siang: {start: "15:00", end: "23:00"}
  malam: {start: "23:00", end: "07:00"}
supervisors:
  bencana: {id: bencana-piket, name: Pusdalops (piket)}
  sda: {id: sda-piket, name: Kepala Bidang SDA (piket)}
  kominfo: {id: kominfo-piket, name: Ruang kendali (piket)}
crews:
  - {id: bencana-hulu-pagi, agency: bencana, shift: pagi, kecamatan: [kec-hulu]}
  - {id: bencana-hulu-siang, agency: bencana, shift: siang, kecamatan: [kec-hulu]}
  - {id: bencana-hulu-malam, agency: bencana, shift: malam, kecamatan: [kec-hulu]}
  - {id: bencana-hilir-pagi, agency: bencana, shift: pagi, kecamatan: [kec-hilir]}
  - {id: bencana-hilir-siang, agency: bencana, shift: siang, kecamatan: [kec-hilir]}
  - {id: bencana-hilir-malam, agency: bencana, shift: malam, kecamatan: [kec-hilir]}
  - {id: sda-pagi, agency: sda, shift: pagi, kecamatan: [kec-hulu, kec-hilir]}
  - {id: sda-siang, agency: sda, shift: siang, kecamatan: [kec-hulu, kec-hilir]}
"""

CATALOGUE_YAML = """\
metrics:
  water_level: {unit: cm, also_accepts: {m: 100}, valid: [0, 1500], description: Drain level.}
  rainfall_rate: {unit: mm/h, valid: [0, 300], description: Rain intensity.}
  battery: {unit: "%", valid: [0, 100], description: Battery charge.}
  rssi: {unit: dBm, valid: [-140, 0], description: Uplink signal.}
device_kinds:
  water_level_station:
    metrics: [water_level, battery, rssi]
    report_every_s: 60
    description: Level sensor over a drain.
  rain_gauge:
    metrics: [rainfall_rate, battery, rssi]
    report_every_s: 60
    description: Tipping-bucket rain gauge.
"""

RULES_YAML = """\
lateness: 2m
rules:
  - id: banjir
    kind: threshold
    hazard: flood
    description: Drain level at or above the station's alert level.
    applies_to: {kinds: [water_level_station]}
    zone_level: kelurahan
    metric: water_level
    direction: above
    raise: levels.alert_cm
    clear: levels.alert_cm - 10
    raise_for: 2m
    clear_for: 15m
    severity: waspada
    steps:
      - {severity: awas, at: levels.danger_cm, clear: levels.danger_cm - 10}
  - id: hujan-lebat
    kind: threshold
    hazard: heavy_rain
    description: Hourly rain of 10 mm/h or more.
    applies_to: {kinds: [rain_gauge]}
    zone_level: kecamatan
    metric: rainfall_rate
    mean_over: 60m
    raise: 10
    clear: 5
    raise_for: 0s
    clear_for: 10m
    severity: waspada
    steps:
      - {severity: siaga, at: 20, clear: 15}
  - id: sensor-diam
    kind: absence
    hazard: sensor_offline
    description: No reading for 10 minutes.
    applies_to: {kinds: [water_level_station, rain_gauge]}
    zone_level: kelurahan
    severity: info
    after: 10m
"""

SLA_YAML = """\
default: {ack_minutes: 30, resolve_minutes: 720}
hazards:
  flood:
    awas: {ack_minutes: 5, resolve_minutes: 90}
    siaga: {ack_minutes: 10, resolve_minutes: 180}
    waspada: {ack_minutes: 15, resolve_minutes: 240}
"""

CAP_YAML = """\
hazards:
  flood: {instruction: Jauhi genangan dan ikuti arahan petugas., expires_hours: 6}
  heavy_rain: {instruction: Kurangi aktivitas di luar ruangan., expires_hours: 3}
  pump_failure: {instruction: Waspadai kenaikan air di sekitar rumah pompa., expires_hours: 6}
  road_damage: {instruction: Hindari ruas jalan yang rusak., expires_hours: 24}
  traffic_jam: {instruction: Gunakan jalur alternatif., expires_hours: 2}
"""

KPI_YAML = """\
availability_bucket_minutes: 10
targets:
  ack_minutes_mean: {target: 20, weight: 1, better: lower}
  sla_compliance_pct: {target: 90, weight: 2, better: higher}
  sensor_availability_pct: {target: 95, weight: 1, better: higher}
"""

# 15:00 WITA (07:00 UTC; 14:00 WIB): the storm's first hour is the afternoon shift in
# Tepian but still the morning one on a WIB clock.
SCENARIO_YAML = """\
name: hujan-tepian
description: A storm over Kota Tepian on a weekday afternoon.
start: 2026-03-11T07:00:00Z
duration: 90m
seed: 11
senml_fraction: 0.3
malformed_rate: 0
storm_cells:
  - {name: core, over: kec-hulu, at: 30m, heading_deg: 10, speed_kmh: 4, radius_km: 4,
     peak_mm_h: 110, begins: 5m, ends: 80m}
  - {name: shield, over: kec-hulu, at: 40m, heading_deg: 10, speed_kmh: 4, radius_km: 10,
     peak_mm_h: 10, begins: 0s, ends: 90m}
faults:
  # A gateway outage in Hilir: its rain gauge goes silent for half an hour.
  - {kind: dropout, kinds: [rain_gauge], zone: kec-hilir, from: 30m, until: 60m}
"""


def _square(lon: float, lat: float, side: float = 0.02) -> list[list[list[float]]]:
    ring = [[lon, lat], [lon + side, lat], [lon + side, lat + side], [lon, lat + side]]
    return [[*ring, ring[0]]]


def write_config(config: Path) -> Path:
    (config / "zones").mkdir(parents=True)
    features = [
        {
            "type": "Feature",
            "properties": {
                "district": district,
                "district_code": district_code,
                "village": village,
                "village_code": f"{district_code}{n:03d}",
            },
            "geometry": {"type": "Polygon", "coordinates": _square(lon, lat)},
        }
        for (district, district_code), villages in KELURAHAN.items()
        for n, (village, lon, lat) in enumerate(villages, start=1)
    ]
    doc = {"type": "FeatureCollection", "features": features}
    (config / "zones" / "kelurahan.geojson").write_text(json.dumps(doc), encoding="utf-8")
    for name, text in {
        "city.yaml": CITY_YAML,
        "agencies.yaml": AGENCIES_YAML,
        "crews.yaml": CREWS_YAML,
        "catalogue.yaml": CATALOGUE_YAML,
        "rules.yaml": RULES_YAML,
        "sla.yaml": SLA_YAML,
        "kpi.yaml": KPI_YAML,
        "cap.yaml": CAP_YAML,
    }.items():
        (config / name).write_text(text, encoding="utf-8")
    # Devices placed in the city's own kelurahan by the placement tool.
    zones = city_zones(config, load_city_facts(config / "city.yaml"))
    plan = FleetPlan(
        per_kelurahan=(("water_level_station", 2),),
        every_other_kelurahan=(("rain_gauge", 1),),
        per_kecamatan=(),
    )
    owners = {"water_level_station": "sda", "rain_gauge": "bencana"}
    devices = place_fleet(zones, seed=5, plan=plan, agency_of_kind=owners)
    (config / "devices.yaml").write_text(yaml.safe_dump({"devices": devices}), encoding="utf-8")
    scenario = config.parent / "hujan-tepian.yaml"
    scenario.write_text(SCENARIO_YAML, encoding="utf-8")
    return scenario


def assert_clean(what: str, text: str) -> None:
    assert FOREIGN not in text.lower(), f"{what} names the other city: {text[:2000]}"


@pytest.fixture
def tepian(tmp_path: Path, settings: Settings) -> Iterator[tuple[Settings, City, Path]]:
    config = tmp_path / "config"
    scenario = write_config(config)
    city_settings = settings.model_copy(
        update={
            "config_dir": config,
            "database_url": f"sqlite:///{tmp_path / 'incidents.db'}",
            "rules": RulesSettings(tick_interval_s=0),  # the storm's time is past
            "api": ApiSettings(
                jwt_secret=SecretStr(secrets.token_urlsafe(32)),
                argon2_memory_kib=1024,
                argon2_time_cost=1,
            ),
        }
    )
    yield city_settings, load_city(config), scenario


def _sse(url: str, headers: dict[str, str], out: queue.Queue[str]) -> None:
    try:
        with httpx.stream("GET", url, headers=headers, timeout=30) as r:
            for line in r.iter_lines():
                if line.startswith("data: "):
                    out.put(line[6:])
    except httpx.RemoteProtocolError:
        pass  # the server stopped under the open stream: the test has what it read


def served(base: str, incidents: list[Incident], month: str, *, active: bool) -> dict[str, str]:
    """Every GET the API answers (and the pages), by path, as the operator sees it;
    `active`: the incidents are still active (each has its CAP alert)."""
    with httpx.Client(base_url=base, timeout=30) as client:
        token = client.post("/auth/token", data={"username": "ops", "password": PASSWORD})
        assert token.status_code == 200, token.text
        ops = {"Authorization": f"Bearer {token.json()['access_token']}"}
        paths = [
            "/auth/me",
            "/audit",
            "/incidents?limit=500",
            "/zones?level=kelurahan",
            "/zones?level=kecamatan",
            "/zones?level=kota",
            "/agencies",
            "/crews",
            "/devices",
            "/feeds/incidents.geojson",
            "/feeds/cap.xml",
            f"/kpi?month={month}",
            f"/kpi?scope=agency&id=bencana&month={month}",
            f"/kpi/report?month={month}",
            f"/kpi/report?month={month}&format=csv",
            "/openapi.json",
            "/docs",
            "/app/ops",
            "/app/crew",
        ]
        for i in incidents:
            paths += [f"/incidents/{i.id}", f"/incidents/{i.id}/reports"]
            paths += [f"/feeds/cap/{i.id}.xml"] if active and i.key.hazard is Hazard.FLOOD else []
        bodies = {}
        for path in paths:
            r = client.get(path, headers=ops)
            assert r.status_code == 200, (path, r.status_code, r.text)
            bodies[path] = r.text
    # The live stream, replayed from the start: one event per timeline entry.
    events: queue.Queue[str] = queue.Queue()
    url = f"{base}/stream/incidents?since=0"
    threading.Thread(target=_sse, args=(url, ops, events), daemon=True).start()
    bodies["/stream/incidents"] = "\n".join(events.get(timeout=10) for _ in range(10))
    return bodies


def stored_sql(database_url: str) -> dict[str, str]:
    engine = create_engine(database_url)
    meta = MetaData()
    meta.reflect(engine)
    with engine.connect() as conn:
        tables = {t.name: repr(conn.execute(select(t)).all()) for t in meta.sorted_tables}
    engine.dispose()
    return tables


def stored_influx(settings: Settings) -> dict[str, str]:
    with InfluxQL.from_settings(settings.influx) as influx:
        names = [str(r["name"]) for r in influx.rows("SHOW MEASUREMENTS")]
        out = {"series": repr(influx.rows("SHOW SERIES"))}
        for name in names:
            out[name] = repr(influx.rows(f'SELECT * FROM "{name}"'))
    return out


def test_a_second_city_runs_from_its_config_alone(
    tepian: tuple[Settings, City, Path],
) -> None:
    settings, city, scenario_path = tepian
    assert (city.zones.kota.id, city.zones.kota.name) == ("kota-tepian", "Kota Tepian")
    assert sorted(z.id for z in city.zones.kecamatan) == ["kec-hilir", "kec-hulu"]
    zones = ZoneIndex.for_city(city)
    scenario = load_scenario(scenario_path, city)
    root = settings.mqtt.root
    mqtt = Collector(settings.mqtt, f"{root}/#")
    try:
        played = play(settings, city, zones, scenario)
        assert played is not None and played.judged
        assert played.stored == len(played.report.reading_keys)
        start, end = played.report.start, played.report.end
        incidents = _check_incidents(played.store, city, start)
        played.store.close()
        month = city.facts.local(start).strftime("%Y-%m")

        # Serve the API on the incidents: every read, the feeds, the stream, the pages.
        ctx = build_context(settings, city=city, zones=zones)
        try:
            ctx.accounts.create_user("ops", PASSWORD, Role.OPERATOR)
            app = create_app(ctx)
            with serve(app) as base:
                inside = (117.11, -0.51)
                report = httpx.post(
                    f"{base}/reports",
                    data={"lon": inside[0], "lat": inside[1], "category": "jalan_rusak"},
                )
                assert report.status_code == 201, report.text
                assert report.json()["outcome"] == "opened"  # a road_damage incident
                outside = httpx.post(
                    f"{base}/reports", data={"lon": 106.63, "lat": -6.18, "category": "banjir"}
                )
                assert outside.status_code == 422
                assert "outside Kota Tepian" in outside.text
                before = served(base, incidents, month, active=True)
        finally:
            ctx.close()
        assert "<sender>pantau@tepian.example.id</sender>" in before["/feeds/cap.xml"]
        assert "Pantau Kota Tepian: peringatan aktif" in before["/feeds/cap.xml"]
        assert "Pusat Komando Kota Tepian" in before["/app/ops"]
        assert 'content="Asia/Makassar"' in before["/app/crew"]
        assert "Pantau's API for Kota Tepian" in before["/openapi.json"]

        # The crews answer every incident through the API; then the KPIs are evaluated.
        result = answer_and_evaluate(settings, city, zones, start, end)
        table = kpi_table(result, start, end)
        assert "Kota Tepian" in table and "BPBD Tepian" in table
        ctx = build_context(settings, city=city, zones=zones)
        try:
            with serve(create_app(ctx)) as base:
                after = served(base, incidents, month, active=False)
                token = httpx.post(
                    f"{base}/auth/token", data={"username": "ops", "password": PASSWORD}
                ).json()["access_token"]
                published = httpx.post(
                    f"{base}/kpi/publish",
                    params={"month": month},
                    headers={"Authorization": f"Bearer {token}"},
                )
                assert published.status_code == 200, published.text
        finally:
            ctx.close()
        report_rows = json.loads(after[f"/kpi/report?month={month}"])["data"]
        (kota,) = [r for r in report_rows if r["scope"] == "kota"]
        assert (kota["id"], kota["name"]) == ("kota-tepian", "Kota Tepian")
        # The storm's incidents, and the citizen's if it was opened in the same local month.
        reported = datetime.now(city.facts.time_zone).strftime("%Y-%m") == month
        assert kota["incidents"] == len(incidents) + reported
        answered = [i for i in json.loads(after["/incidents?limit=500"])["data"]]
        # The crews resolve what has cleared and stay on site where it is still active.
        states = {
            (i["condition_state"] == "active", i["workflow_state"])
            for i in answered
            if i["routed_crew_id"]
        }
        assert states <= {(False, "resolved"), (True, "on_site")}, states
        assert (False, "resolved") in states
    finally:
        mqtt.close()
    messages = mqtt.snapshot()
    alerts = [m for m in messages if "/alerts/crews/" in m.topic]
    assert alerts, "the rules sent no crew alert"

    for path, body in {**before, **after}.items():
        assert_clean(f"GET {path}", body)
    assert_clean("the e-Kinerja table", table)
    for m in messages:
        assert_clean(f"MQTT {m.topic}", m.topic + m.payload.decode("utf-8", "replace"))
    sql = stored_sql(settings.database_url)
    assert "kota-tepian" in sql["incidents"] or "kec-hulu" in sql["incidents"]
    for table_name, rows in sql.items():
        assert_clean(f"SQL table {table_name}", rows)
    influx = stored_influx(settings)
    assert "kecamatan=kec-hulu" in influx["series"] and "kpi" in influx
    for measurement, rows in influx.items():
        assert_clean(f"InfluxDB {measurement}", rows)


def _check_incidents(store: IncidentStore, city: City, start: datetime) -> list[Incident]:
    """The storm's incidents carry Tepian's agencies and went to Tepian's crews on the
    WITA clock."""
    incidents = store.active()
    hazards = {i.key.hazard for i in incidents}
    assert {Hazard.FLOOD, Hazard.HEAVY_RAIN, Hazard.SENSOR_OFFLINE} <= hazards, incidents
    for i in incidents:
        assert i.agency == city.hazard_agency[i.key.hazard], i
        assert i.key.zone_id in city.zones.by_id(), i
    # 15:00-16:00 WITA is the afternoon shift (on a WIB clock, still the morning one).
    first_hour = [
        i
        for i in incidents
        if i.key.hazard in {Hazard.FLOOD, Hazard.HEAVY_RAIN}
        and i.opened_at < start + timedelta(hours=1)
    ]
    assert first_hour, "the storm's first hour opened no flood or rain incident"
    for i in first_hour:
        assert city.facts.local(i.opened_at).hour == 15
        assert i.routed_crew_id is not None and i.routed_crew_id.endswith("-siang"), i
    offline = [i for i in incidents if i.key.hazard is Hazard.SENSOR_OFFLINE]
    assert {i.routed_crew_id for i in offline} == {"kominfo-piket"}  # no crew: supervisor
    return incidents
