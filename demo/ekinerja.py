"""The demo's last act: simulated crews answer the storm's incidents through the API,
then the API's KPI code evaluates the storm (e-Kinerja) per agency and for the kota.

Period: the incidents *opened during the storm* [start, end), followed until every
crew has answered (`end + FOLLOW`, so their resolutions count), and sensor
availability over the storm itself [start, end) (after it the simulator is silent).
Cameras are not simulated by the demo, so camera availability is left out of the score.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from api.context import ApiContext, build_context
from api.kpi import Kpis, compute, score
from api.kpi_queries import Scope, ScopeKind, facts, in_scope, sensor_availability
from api.principal import Principal, Role
from pantau.city import City
from pantau.clock import ManualClock
from pantau.settings import Settings
from pantau.zoneindex import ZoneIndex

from .apiserver import HttpApi, serve
from .crews import Answer, all_incidents, answer, plan_answers

# Resolutions come at most 150 min after opening; opening at most at the storm's end.
FOLLOW = timedelta(hours=3)
EVALUATOR = Principal(subject="e-kinerja", role=Role.OPERATOR)


@dataclass(frozen=True, slots=True)
class KpiRow:
    scope: Scope
    name: str
    kpis: Kpis


@dataclass(frozen=True, slots=True)
class CrewsResult:
    answers: list[Answer]
    calls: int
    rows: list[KpiRow]
    wall_s: float


def storm_kpis(ctx: ApiContext, start: datetime, end: datetime) -> list[KpiRow]:
    """The kota, then every agency: KPIs of the incidents opened in [start, end),
    followed to end + FOLLOW, with sensor availability over [start, end)."""
    kota = ctx.geo.index.zones.kota.id
    scopes = [Scope(ScopeKind.KOTA, kota)] + [
        Scope(ScopeKind.AGENCY, a) for a in sorted(ctx.city.agencies)
    ]
    rows = []
    follow_end = end + FOLLOW
    for s in scopes:
        devices = in_scope(ctx, EVALUATOR, s, ctx.city.devices.values())
        k = compute(
            facts(ctx, EVALUATOR, s, start, follow_end),
            start,
            follow_end,
            ctx.clock.now(),
            availability_pct=sensor_availability(ctx, devices, start, end),
        )
        name = ctx.geo.name(kota) if s.kind is ScopeKind.KOTA else ctx.city.agencies[s.id].short
        rows.append(KpiRow(s, name, score(k, ctx.kpi)))
    return rows


def answer_and_evaluate(
    settings: Settings,
    city: City,
    zones: ZoneIndex,
    start: datetime,
    end: datetime,
    *,
    use_influx: bool = True,
) -> CrewsResult:
    """Serve the API on the incident database (its clock following simulated time), let
    the crews answer every incident routed to someone, then evaluate the storm."""
    t0 = time.monotonic()
    clock = ManualClock(start)
    ctx = build_context(settings, clock=clock, city=city, zones=zones, use_influx=use_influx)
    try:
        answers = plan_answers(
            all_incidents(ctx),
            lambda i: i.routed_crew_id,
            supervisors=frozenset(ctx.roster.supervisors.values()),
        )
        with serve(ctx) as url:
            calls = answer(HttpApi(url), ctx, clock, answers)
        # Evaluate once every answer is in: as of the end of the followed period.
        clock.set(end + FOLLOW + timedelta(days=1))
        rows = storm_kpis(ctx, start, end)
    finally:
        ctx.close()
    return CrewsResult(answers, calls, rows, time.monotonic() - t0)


def _num(v: float | None, fmt: str = "{:.1f}") -> str:
    return "-" if v is None else fmt.format(v)


def kpi_table(result: CrewsResult, start: datetime, end: datetime) -> str:
    crews = {a.crew for a in result.answers}
    lines = [
        "",
        f"Crews        {len(crews)} crews and supervisors answered {len(result.answers)} "
        f"incidents through the API ({result.calls} calls: acknowledge, dispatch, on site, "
        f"resolve) in {result.wall_s:.1f} s",
        "",
        f"e-Kinerja, incidents opened {start:%Y-%m-%d %H:%M}..{end:%H:%M} UTC followed to "
        f"{end + FOLLOW:%H:%M}; sensor availability over the storm; minutes:",
        f"  {'scope':<15}{'incidents':>9}{'ack mean':>10}{'ack p90':>9}{'res mean':>10}"
        f"{'res p90':>9}{'SLA %':>8}{'sensors %':>11}{'score':>7}",
    ]
    for r in result.rows:
        k = r.kpis
        lines.append(
            f"  {r.name:<15}{k.incidents:>9}{_num(k.ack_minutes.mean):>10}"
            f"{_num(k.ack_minutes.p90):>9}{_num(k.resolve_minutes.mean):>10}"
            f"{_num(k.resolve_minutes.p90):>9}{_num(k.sla_compliance_pct):>8}"
            f"{_num(k.sensor_availability_pct):>11}{_num(k.score):>7}"
        )
    return "\n".join(lines)
