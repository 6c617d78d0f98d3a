"""Every panel of the committed dashboards returns data after a storm run.

A slice of the Karawaci storm goes through the real broker into ingest (InfluxDB) and
the rules service (incidents in PostgreSQL), both writing their own metrics; crews
acknowledge and resolve some incidents through the store; the API's KPI code publishes
the month's e-Kinerja series. Then each template variable and each panel query of
dashboards/generated/*.json (what Grafana loads) is expanded as Grafana would
(dashboards.expand) and run: a variable or panel that returns nothing fails.

Camera analyses are not in the pipeline yet (ingest stores sensor readings only), so
the test writes a few FrameAnalysis measures in the documented schema
(dashboards/cameras.py) itself; likewise it opens the camera and traffic incidents a
storm does not raise, through the incident store.
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
from ingest.writers import make_writer
from pantau.city import City, load_city
from pantau.incidents import (
    ConditionChange,
    ConditionState,
    DedupKey,
    Evidence,
    Hazard,
    Severity,
    WorkflowState,
)
from pantau.influxql import InfluxQL
from pantau.settings import ApiSettings, MetricsSettings, RulesSettings, Settings
from rules.routing import Router, load_roster
from rules.service import RulesService, make_store
from rules.store import IncidentStore
from rules.zoneindex import ZoneIndex
from simulators.publisher import run_scenario
from simulators.report import SimReport
from simulators.scenario import find_scenario, load_scenario
from tests.integration.mqtt_tools import wait_for

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
    ingest = IngestService(settings, city, make_writer(settings.influx))
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
        wait_for(lambda: _has_latency(influx), 10, "a metrics report with latencies")
    finally:
        rules.stop()
        ingest.stop()  # its last metrics report goes out here
    yield Run(city, settings, report, store, influx, sum(ingest.stats.rejected.values()))
    store.close()
    influx.close()


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

    start = min(month_bounds(month)[0], run.report.start) - timedelta(minutes=1)
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
    station = run.city.devices["wl-babakan-002"]
    tags = (
        f",agency=bpbd,device=cam-flood-babakan,kecamatan={station.kecamatan_id}"
        f",kelurahan={station.kelurahan_id},kind=camera_flood"
    )
    lines = []
    for minute in range(0, 60, 5):
        ms = int((start + timedelta(minutes=minute)).timestamp() * 1000)
        lines += [
            f"camera_sharpness{tags} value=0.95 {ms}",
            f"camera_brightness{tags} value=0.41 {ms}",
            f"camera_frozen{tags} value={30.0 if minute >= 40 else 0.0} {ms}",
            f"camera_occlusion{tags} value=0.02 {ms}",
            f"camera_shift{tags} value=0.01 {ms}",
            f"camera_fault{tags} value={1.0 if minute >= 40 else 0.0} {ms}",
            f"water_depth{tags} value={10.0 + minute} {ms}",
            f"region_motion{tags},region=channel value=0.3 {ms}",
            f"region_occupancy{tags},region=channel value=0.4 {ms}",
            f"stopped_traffic{tags},region=channel value={minute * 6.0} {ms}",
        ]
    writer = make_writer(run.settings.influx)
    writer.write(lines)
    writer.close()

    raised = {i.key.hazard for i in run.store.active()}
    extra = [
        (Hazard.CAMERA_FAULT, "camera-frozen", station.kelurahan_id, "cam-flood-babakan"),
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
        begin, end = month_bounds(month)
        scopes = report_scopes(ctx, who) + [Scope(ScopeKind.CREW, c.id) for c in ctx.roster.crews]
        rows = [(s, "month", kpis_for(ctx, who, s, begin, end)) for s in scopes]
        assert publish(ctx, rows) == len(scopes)
    finally:
        ctx.close()
