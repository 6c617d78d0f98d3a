"""The demo's last act end to end on the storm's first hour: the fleet through Mosquitto
into ingest (InfluxDB) and the rules service (incidents in SQLite, routed to crews),
then the simulated crews answering through the API and the printed e-Kinerja table,
which must say what the crews did (about 25 s)."""

from __future__ import annotations

import math
import secrets
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from statistics import mean

from pydantic import SecretStr

from api.context import build_context
from api.kpi import p90
from demo.crews import Answer, all_incidents
from demo.ekinerja import FOLLOW, answer_and_evaluate, kpi_table
from demo.run import play
from pantau.city import load_city
from pantau.incidents import ConditionState
from pantau.settings import ApiSettings, RulesSettings, Settings
from pantau.store.types import Incident
from pantau.zoneindex import ZoneIndex
from simulators.scenario import find_scenario, load_scenario


def _cell(v: float | None) -> str:
    return "–" if v is None else f"{v:.1f}"  # noqa: RUF001 - the table's dash


def _expected_row(
    incidents: list[Incident], answers: dict[int, Answer], as_of: datetime
) -> list[str]:
    """incidents, ack mean/p90, resolve mean/p90, SLA % as the table prints them, from
    what the crews did (a crew whose incident's condition is still active stays)."""
    acks = [answers[i.id].ack_after.total_seconds() / 60 for i in incidents]
    resolves = [
        r.total_seconds() / 60 for i in incidents if (r := answers[i.id].resolve_after) is not None
    ]
    met = missed = 0
    for i in incidents:
        a = answers[i.id]
        checks = [(a.acknowledged_at, i.sla_ack_due), (a.resolved_at, i.sla_resolve_due)]
        for done, due in checks:
            if done is not None:
                met, missed = (met + 1, missed) if done <= due else (met, missed + 1)
            elif due < as_of:
                missed += 1
    return [
        str(len(incidents)),
        _cell(mean(acks) if acks else None),
        _cell(p90(acks)),
        _cell(mean(resolves) if resolves else None),
        _cell(p90(resolves)),
        _cell(100.0 * met / (met + missed) if met + missed else None),
    ]


def test_the_printed_kpis_are_what_the_crews_did(settings: Settings, tmp_path: Path) -> None:
    city = load_city()
    zones = ZoneIndex.for_city(city)
    storm = load_scenario(find_scenario("storm-karawaci"), city)
    scenario = replace(storm, duration_s=3600.0)
    demo_settings = settings.model_copy(
        update={
            "database_url": f"sqlite:///{tmp_path / 'incidents.db'}",
            "rules": RulesSettings(tick_interval_s=0),
            "api": ApiSettings(jwt_secret=SecretStr(secrets.token_urlsafe(32))),
        }
    )
    played = play(demo_settings, city, zones, scenario)
    assert played is not None and played.judged
    assert played.stored == len(played.report.reading_keys)
    start, end = played.report.start, played.report.end
    played.store.close()

    result = answer_and_evaluate(demo_settings, city, zones, start, end)
    table = kpi_table(result, start, end)

    ctx = build_context(demo_settings, city=city, zones=zones, use_influx=False)
    try:
        incidents = [i for i in all_incidents(ctx) if start <= i.opened_at < end]
        names = {a: ctx.city.agencies[a].short for a in ctx.city.agencies}
        kota = ctx.geo.name(ctx.geo.index.zones.kota.id)
    finally:
        ctx.close()
    assert len(incidents) >= 5, "the storm's first hour should raise several incidents"
    answers = {a.incident_id: a for a in result.answers}
    # Every incident was routed (to a crew or a supervisor) and answered.
    assert set(answers) == {i.id for i in incidents}
    assert all(a.resolved_at is None or a.resolved_at < end + FOLLOW for a in answers.values())
    # Crews resolve only what the data has cleared; the rest stays on site.
    cleared = {i.id for i in incidents if i.condition_state is not ConditionState.ACTIVE}
    assert {a.incident_id for a in answers.values() if a.resolved_at is not None} == cleared

    printed = {}
    for line in table.splitlines():
        for name in [kota, *names.values()]:
            if line.startswith(f"  {name} "):
                printed[name] = line[2 + len(name) :].split()
    assert set(printed) == {kota, *names.values()}, table
    as_of = end + FOLLOW
    assert printed[kota][:6] == _expected_row(incidents, answers, as_of), table
    for agency, name in names.items():
        mine = [i for i in incidents if i.agency == agency]
        assert printed[name][:6] == _expected_row(mine, answers, as_of), (name, table)
    # Sensor availability came from InfluxDB: the fleet reported all hour.
    availability = float(printed[kota][6])
    assert 90.0 <= availability <= 100.0, table
    # The table is the API's: the same numbers as GET /kpi's JSON, row by row.
    for row in result.rows:
        k = row.kpi
        assert printed[row.name][6:] == [
            _cell(k["sensor_availability_pct"]),
            _cell(k["camera_availability_pct"]),
            _cell(k["score"]),
        ], table
    assert not math.isnan(float(printed[kota][8]))
