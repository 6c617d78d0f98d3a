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
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import Engine

from api.context import build_context
from api.kpi_queries import Scope, ScopeKind, kpis_for, month_bounds, publish, report_scopes
from api.principal import Principal, Role
from dashboards import expand
from dashboards.build import GENERATED
from dashboards.model import INFLUX, POSTGRES
from ingest.service import IngestService
from pantau.cameras import load_cameras
from pantau.city import City, load_city
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
from pantau.influx.query import InfluxQL
from pantau.influx.writers import make_writer
from pantau.roster import load_roster
from pantau.settings import ApiSettings, MetricsSettings, RulesSettings, Settings
from pantau.store import IncidentStore
from pantau.topics import Topics
from pantau.zoneindex import ZoneIndex
from rules.routing import Router
from rules.service import RulesService, make_store
from simulators.publisher import run_scenario
from simulators.report import SimReport
from simulators.scenario import find_scenario, load_scenario
from testkit.mqtt import Publisher, wait_for

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
    """...and a kecamatan chosen narrows what a panel shows."""
    assert run.store.active(), "the storm slice opened no incident"
    assert run.rejected > 0, "the storm injects malformed payloads: rejects by reason"
    _add_cameras_incidents_and_crews(run)
    month = run.report.start.strftime("%Y-%m")
    _publish_kpis(run, month)

    month_start = month_bounds(month, run.city.facts.time_zone)[0]
    start = min(month_start, run.report.start) - timedelta(minutes=1)
    when = expand.TimeRange(start, datetime.now(UTC) + timedelta(minutes=1))
    engine = run.store.engine
    empty: list[str] = []
    ran = 0
    for path in sorted(GENERATED.glob("*.json")):
        model: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        values: dict[str, list[str]] = {}
        for var in model["templating"]["list"]:
            found = _variable_values(run, var, when, values)
            if not found:
                empty.append(f"{path.name}: variable ${var['name']}")
                found = ["(none)"]
            # All selects every value; a single-value variable starts at the first
            values[var["name"]] = found if var["includeAll"] else found[:1]
        for panel in model["panels"]:
            for target in panel["targets"]:
                ran += 1
                where = f"{path.name}: {panel['title']} [{target['refId']}]"
                if target["datasource"]["uid"] == INFLUX.uid:
                    rows = _influx_rows(run.influx, expand.influxql(target["query"], when, values))
                else:
                    assert target["datasource"]["uid"] == POSTGRES.uid
                    rows = _sql_rows(engine, expand.sql(target["rawSql"], when, values))
                if not any(_has_data(row) for row in rows):
                    empty.append(where)
    assert ran >= 40
    assert not empty, "no data for:\n" + "\n".join(empty)
    _check_a_kecamatan_narrows_a_panel(run, when)


def _check_a_kecamatan_narrows_a_panel(run: Run, when: expand.TimeRange) -> None:
    """Choosing Ciledug, far from the storm, shows Ciledug's stations and no others."""
    drainage = json.loads((GENERATED / "drainage.json").read_text(encoding="utf-8"))
    panel = next(p for p in drainage["panels"] if p["title"] == "Water level per station")
    every = {
        "kecamatan": [z.id for z in run.city.zones.kecamatan],
        "kelurahan": [z.id for z in run.city.zones.kelurahan],
        "agency": list(run.city.agencies),
    }
    ciledug = {**every, "kecamatan": ["kec-ciledug"]}

    def devices(values: dict[str, list[str]]) -> set[str]:
        query = expand.influxql(panel["targets"][0]["query"], when, values)
        return {str(s.tags["device"]) for s in run.influx.query(query)}

    in_ciledug = devices(ciledug)
    expected = {d.id for d in run.city.devices.values() if d.kecamatan_id == "kec-ciledug"}
    assert in_ciledug and in_ciledug <= expected
    assert len(devices(every)) > 3 * len(in_ciledug)


def _variable_values(
    run: Run, var: dict[str, Any], when: expand.TimeRange, values: dict[str, list[str]]
) -> list[str]:
    if var["type"] == "custom":
        return [str(o["value"]) for o in var["options"]]
    if var["datasource"]["uid"] == INFLUX.uid:
        return [
            str(r["value"]) for r in run.influx.rows(expand.influxql(var["query"], when, values))
        ]
    with run.store.engine.connect() as conn:
        result = conn.exec_driver_sql(expand.sql(var["query"], when, values))
        return [str(row._mapping["__value"]) for row in result]


def _influx_rows(influx: InfluxQL, query: str) -> list[tuple[object, ...]]:
    return [
        row
        for series in influx.query(query)
        for row in _without_time(series.columns, series.values)
    ]


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
