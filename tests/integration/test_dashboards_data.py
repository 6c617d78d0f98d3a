"""Every panel of the committed dashboards returns data after a storm run.

A slice of the Karawaci storm goes through the real broker into ingest (InfluxDB) and
the rules service (incidents in PostgreSQL), both writing their own metrics; crews
acknowledge and resolve some incidents through the store; the API's KPI code publishes
the month's e-Kinerja series. Then each template variable and each panel query of
dashboards/generated/*.json (what Grafana loads) is expanded as Grafana would
(dashboards.expand) and run: a variable or panel that returns nothing fails.

Two registered cameras publish an hour of FrameAnalysis messages (a fault raised
halfway, with its evidence frame) and their stream state, through the broker into
ingest, as vision workers do. The camera and traffic incidents a storm does not raise
are opened through the incident store.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import Engine

from api.app import create_app
from api.context import ApiContext, build_context
from api.kpi_queries import Scope, ScopeKind, kpis_for, month_bounds, publish, report_scopes
from api.principal import Principal, Role
from api.routes.reports import Category, NewReport, file_report
from api.schemas import ReportOut
from dashboards import expand
from dashboards.build import GENERATED
from dashboards.model import INFLUX, POSTGRES
from dashboards.queries import AGG_SUFFIX
from ingest.service import IngestService
from pantau.cameras import load_cameras
from pantau.city import City, load_city
from pantau.clock import ManualClock
from pantau.frame_analysis import (
    ANALYSIS_CONTENT_TYPE,
    MEASURE_UNITS,
    CameraState,
    FrameAnalysis,
    Measure,
    encode_analysis,
    encode_status,
)
from pantau.incidents import (
    ConditionChange,
    ConditionState,
    DedupKey,
    Evidence,
    Hazard,
    Severity,
    WorkflowState,
)
from pantau.influx import level_table
from pantau.influx.downsample import Downsampler
from pantau.influx.query import InfluxQL
from pantau.influx.retention import ensure_retention
from pantau.influx.writers import make_writer
from pantau.roster import load_roster
from pantau.settings import ApiSettings, MetricsSettings, RulesSettings, Settings
from pantau.store import Incident, IncidentStore
from pantau.topics import Topics
from pantau.zoneindex import ZoneIndex
from rules.routing import Router
from rules.service import RulesService, make_store
from simulators.publisher import run_scenario
from simulators.report import SimReport
from simulators.scenario import find_scenario, load_scenario
from testkit.grafana import Frame, GrafanaData
from testkit.mqtt import Publisher, wait_for
from tests.integration.dashboard_variables import resolve

pytestmark = pytest.mark.integration

SLICE_S = 60 * 60  # the storm's first hour: Karawaci's drains pass Siaga II


@dataclass
class Run:
    city: City
    settings: Settings
    report: SimReport
    store: IncidentStore
    influx: InfluxQL
    rejected: int


@pytest.fixture
def run(settings: Settings, postgres_url: str, topic_root: str) -> Iterator[Run]:
    settings = settings.model_copy(
        update={
            "database_url": postgres_url,
            "rules": RulesSettings(
                client_id=f"rules-{topic_root}", tick_interval_s=0, rebuild_window_s=3 * 86400
            ),
            "metrics": MetricsSettings(influx_interval_s=0.5),
            "api": ApiSettings(
                jwt_secret=SecretStr("dashboards-test-0123456789abcdefghijklmnop"),
                argon2_memory_kib=1024,
                argon2_time_cost=1,
            ),
        }
    )
    city = load_city()
    zones = ZoneIndex.for_city(city)
    store = make_store(settings, zones)
    influx = InfluxQL.from_settings(settings.influx)
    ingest = IngestService(settings, city, make_writer(settings.influx), cameras=load_cameras(city))
    rules = RulesService(
        settings, city, store, Router(load_roster(city), zones), zones, influx=influx
    )
    scenario = load_scenario(find_scenario("storm-karawaci"), city)
    scenario = replace(scenario, duration_s=SLICE_S)
    ensure_retention(settings.influx, settings.retention)  # as ingest does at start
    ingest.start()
    rules.start()
    try:
        assert ingest.wait_subscribed(10) and rules.wait_subscribed(10)
        report = run_scenario(city, scenario, settings.mqtt, speed=None)
        assert report.completed and report.failed == 0
        wait_for(lambda: ingest.stats.messages >= report.messages, 120, "ingest has it all")
        wait_for(lambda: rules.stats.messages >= report.messages, 120, "rules have it all")
        assert rules.advance_to(report.end, 60)
        frames = _publish_camera_analyses(settings, report.start)
        wait_for(lambda: _stored(influx, "camera_sharpness") == frames, 30, "every analysis")
        wait_for(lambda: _has_latency(influx), 10, "a metrics report with latencies")
    finally:
        rules.stop()
        ingest.stop()  # its last metrics report goes out here
    # What ingest's downsampler does every few minutes: long ranges read aggregates.
    downsampler = Downsampler.from_settings(settings)
    try:
        end = max(report.end, datetime.now(UTC)) + timedelta(minutes=5)
        downsampler.run(report.start - timedelta(minutes=5), end)
    finally:
        downsampler.close()
    level_table.write(settings.influx, settings.retention, datetime.now(UTC))
    yield Run(city, settings, report, store, influx, sum(ingest.stats.rejected.values()))
    store.close()
    influx.close()


CAMERAS = {"cam-flood-babakan": ("channel",), "cam-traffic-sudirman": ("lane-east", "lane-west")}


def _publish_camera_analyses(settings: Settings, start: datetime) -> int:
    """What two vision workers publish over an hour: an analysis every 5 minutes, the
    picture frozen from minute 40 (a fault with its evidence frame), and the state."""
    topics = Topics(settings.mqtt.root)
    publisher = Publisher(settings.mqtt)
    frames = 0
    for camera, regions in CAMERAS.items():
        state = encode_status(camera, CameraState.ONLINE, start)
        publisher.publish(topics.camera_status(camera), state, ANALYSIS_CONTENT_TYPE)
        for seq, minute in enumerate(range(0, 60, 5)):
            frozen = minute >= 40
            values = {
                "camera_brightness": 0.41,
                "camera_sharpness": 0.95,
                "camera_frozen": 30.0 if frozen else 0.0,
                "camera_occlusion": 0.02,
                "camera_shift": 0.01,
                "camera_fault": 1.0 if frozen else 0.0,
                "water_depth": 10.0 + minute,
            }
            per_region = {"region_motion": 0.3, "region_occupancy": 0.4, "stopped_traffic": 6.0}
            measures = [Measure(n, v, MEASURE_UNITS[n], 0.9) for n, v in values.items()]
            measures += [
                Measure(n, v * (seq + 1), MEASURE_UNITS[n], 0.8, region)
                for n, v in per_region.items()
                for region in regions
            ]
            analysis = FrameAnalysis(
                camera_id=camera,
                time=start + timedelta(minutes=minute),
                seq=seq,
                width=640,
                height=360,
                measures=tuple(measures),
                faults=("frozen",) if frozen else (),
                evidence=f"run/evidence/{camera}-{seq}.jpg" if minute == 40 else None,
            )
            publisher.publish(
                topics.camera_analysis(camera), encode_analysis(analysis), ANALYSIS_CONTENT_TYPE
            )
            frames += 1
    publisher.close()
    return frames


def _stored(influx: InfluxQL, measurement: str) -> int:
    rows = influx.rows(f'SELECT count("value") FROM "{measurement}"')
    return int(str(rows[0]["count"])) if rows else 0


def _has_latency(influx: InfluxQL) -> bool:
    rows = influx.rows('SELECT count("p95_s") FROM "pantau_latency" GROUP BY "service"')
    return {str(r["service"]) for r in rows} >= {"ingest", "rules"}


def test_every_variable_and_panel_returns_data_after_a_storm(run: Run) -> None:
    """...the annotations too; Grafana's own transformations (@grafana/data) turn the
    wall's frames into what it shows; a kecamatan chosen narrows what a panel shows."""
    assert run.store.active(), "the storm slice opened no incident"
    assert run.rejected > 0, "the storm injects malformed payloads: rejects by reason"
    _add_cameras_incidents_and_crews(run)
    month = run.report.start.strftime("%Y-%m")
    _rate_a_resolved_report(run)
    _publish_kpis(run, month)
    _file_citizen_report(run)

    month_start = month_bounds(month, run.city.facts.time_zone)[0]
    start = min(month_start, run.report.start) - timedelta(minutes=1)
    # The wall as it looked just after the storm slice ("now" panels judge the last 10
    # minutes before the range's end); Pantau's own metrics are stamped on the wall clock.
    storm = expand.TimeRange(start, run.report.end + timedelta(minutes=2))
    wall_clock = expand.TimeRange(start, datetime.now(UTC) + timedelta(minutes=1))
    engine = run.store.engine
    grafana = GrafanaData()
    empty: list[str] = []
    shown: dict[str, list[Frame]] = {}
    ran = 0
    for path in sorted(GENERATED.glob("*.json")):
        model: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        when = wall_clock if path.name == "pipeline.json" else storm
        # A variable that finds nothing is listed (a later one that reads it fails to
        # expand: expand.ExpandError names it).
        values = resolve(model, when, run.influx, engine)
        for name, found in values.items():
            if not found:
                empty.append(f"{path.name}: variable ${name}")
                values[name] = ["(none)"]
        for annotation in model["annotations"]["list"]:
            ran += 1
            rows = _sql_rows(engine, expand.sql(annotation["target"]["rawSql"], when, values))
            if not rows:
                empty.append(f"{path.name}: annotation {annotation['name']}")
        for panel in model["panels"]:
            frames: list[Frame] = []
            answered: dict[str, bool] = {}
            for target in panel["targets"]:
                ran += 1
                if target["datasource"]["uid"] == INFLUX.uid:
                    query = expand.influxql(
                        target["query"], when, values, min_interval=panel.get("interval")
                    )
                    rows = _influx_rows(run.influx, query)
                    frames.append(_influx_frame(run.influx, query, target["refId"]))
                else:
                    assert target["datasource"]["uid"] == POSTGRES.uid
                    sql = expand.sql(target["rawSql"], when, values)
                    rows = _sql_rows(engine, sql)
                    frames.append(_sql_frame(engine, sql, target["refId"]))
                answered[target["refId"]] = any(_has_data(row) for row in rows)
            empty += _empty_targets(f"{path.name}: {panel['title']}", answered)
            if panel.get("transformations"):
                out = grafana.transform(frames, panel["transformations"])
                if not any(f.length for f in out):
                    empty.append(f"{path.name}: {panel['title']} (after its transformations)")
                shown[f"{path.name}: {panel['title']}"] = out
    assert ran >= 60
    assert not empty, "no data for:\n" + "\n".join(empty)
    _check_the_wall_shows_the_storm(run, grafana, shown)
    _check_a_kecamatan_narrows_a_panel(run, storm)
    _check_the_alert_rules(run, storm.end)


ALERTS = Path(__file__).resolve().parents[2] / "deploy/grafana/provisioning/alerting/pantau.yaml"


def _alert_query(uid: str) -> tuple[dict[str, Any], int]:
    doc = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    rule = next(r for g in doc["groups"] for r in g["rules"] if r["uid"] == uid)
    query = next(d for d in rule["data"] if d["refId"] == "A")
    return query["model"], int(query["relativeTimeRange"]["from"])


def _check_the_alert_rules(run: Run, storm_end: datetime) -> None:
    """ "Data stopped" counts readings while the storm flows and finds none a day later
    (no data: the rule fires); "crew alerts failing" counts a webhook given up on."""
    model, seconds = _alert_query("pantau-data-stopped")

    def readings(end: datetime) -> list[tuple[object, ...]]:
        when = expand.TimeRange(end - timedelta(seconds=seconds), end)
        return _influx_rows(run.influx, expand.influxql(model["query"], when, {}))

    flowing = readings(storm_end)
    assert flowing and sum(int(str(r[0])) for r in flowing) > 0
    assert not readings(storm_end + timedelta(days=1))

    model, seconds = _alert_query("pantau-crew-alerts-failing")
    now = datetime.now(UTC)
    when = expand.TimeRange(now - timedelta(seconds=seconds), now + timedelta(minutes=1))
    sql = expand.sql(model["rawSql"], when, {})

    def failing() -> int:
        (row,) = _sql_rows(run.store.engine, sql)
        return int(str(row[0]))

    before = failing()
    with run.store.engine.begin() as conn:
        alert = conn.exec_driver_sql(
            "SELECT id FROM outbox WHERE kind = 'alert' AND published_at IS NOT NULL"
            " AND notify_state IS DISTINCT FROM 'failed' ORDER BY id DESC LIMIT 1"
        ).scalar_one()
        conn.exec_driver_sql(
            "UPDATE outbox SET notify_state = 'failed', notify_error = 'HTTP 500',"
            f" created_at = '{now.isoformat()}' WHERE id = {int(alert)}"
        )
    assert failing() == before + 1


def _check_the_wall_shows_the_storm(
    run: Run, grafana: GrafanaData, shown: dict[str, list[Frame]]
) -> None:
    """The wall's station table has every registered station, a Karawaci station at
    Waspada or worse on top (Grafana's own display of the index), and sorted worst
    first; its device table has every pump, gate and camera, the silent ones first."""
    wall = json.loads((GENERATED / "city-overview.json").read_text(encoding="utf-8"))
    table = next(p for p in wall["panels"] if p["title"].startswith("Stasiun vs Siaga"))
    (stations,) = [f for f in shown[f"city-overview.json: {table['title']}"] if f.length]
    rows = stations.rows()
    assert len(rows) == sum(1 for d in run.city.devices.values() if d.levels is not None)
    index = [r["siaga"] for r in rows]
    numbers = [float("-inf") if v == "-inf" else float(v) for v in index]
    assert numbers == sorted(numbers, reverse=True)
    top = rows[0]
    assert run.city.devices[top["device"]].kecamatan_id == "kec-karawaci"
    siaga = next(o for o in table["fieldConfig"]["overrides"] if o["matcher"]["options"] == "siaga")
    config = {p["id"]: p["value"] for p in siaga["properties"]}
    (display,) = grafana.display(
        {"thresholds": config["thresholds"], "mappings": config["mappings"]}, [top["siaga"]]
    )
    assert display["text"] in {"Waspada (Siaga II)", "Awas (Siaga I)"}, display
    level = top["level_cm"]
    levels = run.city.devices[top["device"]].levels
    assert levels is not None and level >= levels.alert_cm

    devices = next(p for p in wall["panels"] if p["title"].startswith("Pompa, pintu air"))
    (table_rows,) = [f for f in shown[f"city-overview.json: {devices['title']}"] if f.length]
    kinds = {"pump_station", "flood_gate"}
    registered = sum(1 for d in run.city.devices.values() if d.kind in kinds)
    registered += len(load_cameras(run.city))
    states = table_rows.fields["state"]
    assert len(states) == registered
    # the cameras that sent nothing are silent: no value, listed first
    silent = len(load_cameras(run.city)) - len(CAMERAS)
    assert states[:silent] == [None] * silent and None not in states[silent:]
    assert set(states[silent:]) <= {10, 11, 20, 21, 30, 31}


def _check_a_kecamatan_narrows_a_panel(run: Run, when: expand.TimeRange) -> None:
    """Choosing Ciledug, far from the storm, shows Ciledug's stations and no others."""
    drainage = json.loads((GENERATED / "drainage.json").read_text(encoding="utf-8"))
    panel = next(p for p in drainage["panels"] if p["title"] == "Tinggi air stasiun")
    every = {
        "kecamatan": [z.id for z in run.city.zones.kecamatan],
        "kelurahan": [z.id for z in run.city.zones.kelurahan],
        "agency": list(run.city.agencies),
    }
    levels = {
        name: found
        for name, found in resolve(drainage, when, run.influx, run.store.engine).items()
        if name in level_table.VARIABLES
    }
    every |= levels
    ciledug = {**every, "kecamatan": ["kec-ciledug"]}

    def devices(values: dict[str, list[str]]) -> set[str]:
        found = set()
        for target in panel["targets"]:  # the raw readings and the aggregates
            query = expand.influxql(target["query"], when, values, min_interval=panel["interval"])
            found |= {str(s.tags["device"]) for s in run.influx.query(query)}
        return found

    in_ciledug = devices(ciledug)
    expected = {d.id for d in run.city.devices.values() if d.kecamatan_id == "kec-ciledug"}
    assert in_ciledug and in_ciledug <= expected
    assert len(devices(every)) > 3 * len(in_ciledug)


def _empty_targets(where: str, found: dict[str, bool]) -> list[str]:
    """Targets without data; a raw target and its aggregate twin (the level the range
    picks, `$rp`) count as one, and exactly one of them may have data."""
    out = []
    for ref, has in found.items():
        if ref.endswith(AGG_SUFFIX):
            continue
        twin = found.get(ref + AGG_SUFFIX)
        if twin is not None:
            assert not (has and twin), f"{where} [{ref}]: raw and aggregates both answer"
        if not has and not twin:
            out.append(f"{where} [{ref}]")
    return out


def _influx_rows(influx: InfluxQL, query: str) -> list[tuple[object, ...]]:
    return [
        row
        for series in influx.query(query)
        for row in _without_time(series.columns, series.values)
    ]


def _influx_frame(influx: InfluxQL, query: str, ref_id: str) -> Frame:
    """The frame Grafana's InfluxQL table format makes: Time, the tags, the columns."""
    fields: dict[str, list[Any]] = {}
    for series in influx.query(query):
        for values in series.values:
            row = dict(zip(series.columns, values, strict=True))
            cells = {"Time": row.pop("time", None), **dict(series.tags), **row}
            for name, value in cells.items():
                fields.setdefault(name, []).append(value)
    return Frame(ref_id, fields)


def _sql_frame(engine: Engine, sql: str, ref_id: str) -> Frame:
    with engine.connect() as conn:
        result = conn.exec_driver_sql(sql)
        columns = list(result.keys())
        rows = result.all()
    return Frame(ref_id, {c: [_plain(r[i]) for r in rows] for i, c in enumerate(columns)})


def _plain(value: object) -> object:
    """A value as JSON carries it into Grafana: times as epoch ms, numbers as floats."""
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    if isinstance(value, Decimal):
        return float(value)
    return value


def _without_time(
    columns: tuple[str, ...], values: tuple[tuple[object, ...], ...]
) -> list[tuple[object, ...]]:
    keep = [i for i, c in enumerate(columns) if c != "time"]
    return [tuple(v[i] for i in keep) for v in values]


def _sql_rows(engine: Engine, sql: str) -> list[tuple[object, ...]]:
    with engine.connect() as conn:
        result = conn.exec_driver_sql(sql)
        columns = list(result.keys())
        return _without_time(tuple(columns), tuple(tuple(r) for r in result.all()))


def _has_data(row: tuple[object, ...]) -> bool:
    """Something other than nulls and zeros (a count of 0 is no data to show)."""
    return any(v is not None and v != 0 and v != "" for v in row)


def _add_cameras_incidents_and_crews(run: Run) -> None:
    start = run.report.start
    camera_zone = run.city.devices["wl-babakan-002"].kelurahan_id  # cam-flood-babakan's
    raised = {i.key.hazard for i in run.store.active()}
    extra = [
        (Hazard.CAMERA_FAULT, "camera-frozen", camera_zone, "cam-flood-babakan"),
        (Hazard.TRAFFIC_JAM, "traffic-jam", "kel-karawaci", "tc-karawaci-baru-020"),
        (Hazard.ROAD_DAMAGE, "road-damage", "kel-karawaci", "tc-karawaci-baru-020"),
    ]
    for hazard, rule, zone, device in extra:
        if hazard in raised:
            continue
        at = start + timedelta(minutes=45)
        run.store.apply(
            ConditionChange(
                key=DedupKey(rule, zone, hazard),
                state=ConditionState.ACTIVE,
                severity=Severity.WASPADA,
                at=at,
                evidence=Evidence(
                    device_ids=(device,),
                    metric="camera_fault",
                    peak_value=1.0,
                    first_at=at,
                    last_at=at,
                ),
                reason="opened by the dashboard test",
            )
        )
    # crews take half of the incidents through to resolved, for the KPIs
    for n, incident in enumerate(sorted(run.store.active(), key=lambda i: i.id)):
        if n % 2:
            continue
        acked = incident.opened_at + timedelta(minutes=8)
        resolved = min(acked + timedelta(minutes=40), datetime.now(UTC))
        run.store.transition(incident.id, WorkflowState.ACKNOWLEDGED, "crew:test", "on it", acked)
        run.store.transition(incident.id, WorkflowState.RESOLVED, "crew:test", "fixed", resolved)


def _report_a_kelurahan_flood(
    run: Run, ctx: ApiContext, description: str
) -> tuple[Incident, ReportOut]:
    """A resident's flood report at a station of the first kelurahan the sensors'
    flood incidents name; the incident and what filing the report gave."""
    flood = next(
        i
        for i in run.store.active()
        if i.key.hazard is Hazard.FLOOD and i.key.zone_id.startswith("kel-")
    )
    device = next(d for d in run.city.devices.values() if d.kelurahan_id == flood.key.zone_id)
    report = NewReport(
        lon=device.lon,
        lat=device.lat,
        category=Category.FLOOD,
        description=description,
        photo=None,
        photo_type=None,
        kelurahan_id=flood.key.zone_id,
    )
    return flood, file_report(ctx, report)


def _rate_a_resolved_report(run: Run) -> None:
    """A resident reports a flood the crews then resolve, and rates the response through
    the public tracking endpoint: the satisfaction KPI the e-Kinerja dashboard draws."""
    at = run.report.start + timedelta(minutes=45)
    ctx = build_context(run.settings, city=run.city, clock=ManualClock(at))
    try:
        flood, out = _report_a_kelurahan_flood(run, ctx, "jalan tergenang")
        assert out.incident_id == flood.id
        acked = flood.opened_at + timedelta(minutes=5)
        run.store.transition(flood.id, WorkflowState.ACKNOWLEDGED, "crew:test", "on it", acked)
        run.store.transition(
            flood.id, WorkflowState.RESOLVED, "crew:test", "drained", acked + timedelta(minutes=30)
        )
        answer = TestClient(create_app(ctx)).post(
            "/reports/track/rating", json={"token": out.tracking_token, "rating": 4}
        )
        assert answer.status_code == 201, answer.text
    finally:
        ctx.close()


def _file_citizen_report(run: Run) -> None:
    """A resident reports flooding in Karawaci during the storm: it backs the flood
    incident the sensors opened there (a verified report, on the wall's map)."""
    at = run.report.start + timedelta(minutes=50)
    ctx = build_context(run.settings, city=run.city, clock=ManualClock(at))
    try:
        flood, out = _report_a_kelurahan_flood(run, ctx, "air masuk rumah")
        assert (out.outcome, out.incident_id) == ("corroborated", flood.id)
    finally:
        ctx.close()


def _publish_kpis(run: Run, month: str) -> None:
    ctx = build_context(run.settings, city=run.city)
    try:
        who = Principal(subject="ops", role=Role.OPERATOR)
        begin, end = month_bounds(month, run.city.facts.time_zone)
        scopes = report_scopes(ctx, who) + [Scope(ScopeKind.CREW, c.id) for c in ctx.roster.crews]
        rows = [(s, "month", kpis_for(ctx, who, s, begin, end)) for s in scopes]
        assert publish(ctx, rows) == len(scopes)
    finally:
        ctx.close()
