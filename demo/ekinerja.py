"""The demo's last act: simulated crews answer the storm's incidents through the API,
then the demo asks the API for the storm's e-Kinerja (GET /kpi) per agency and for the
kota, and prints what it answered: one e-Kinerja, the API's.

Period: the incidents *opened during the storm* [start, end), followed until every
crew has answered (`followed_to` = end + FOLLOW, so their resolutions count); sensor
and camera availability over the storm itself [start, end), while the fleet played.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from api.context import ApiContext, build_context
from api.principal import Principal, Role
from pantau.city import City
from pantau.clock import ManualClock
from pantau.settings import Settings
from pantau.zoneindex import ZoneIndex

from .apiserver import HttpApi, serve
from .crews import Answer, all_incidents, answer, plan_answers, token_for

# Resolutions come at most 150 min after opening; opening at most at the storm's end.
FOLLOW = timedelta(hours=3)
EVALUATOR = Principal(subject="e-kinerja", role=Role.OPERATOR)


@dataclass(frozen=True, slots=True)
class KpiRow:
    name: str
    kpi: dict[str, Any]  # GET /kpi, as the API answered


@dataclass(frozen=True, slots=True)
class CrewsResult:
    answers: list[Answer]
    calls: int
    rows: list[KpiRow]
    wall_s: float
    calls_per_api: tuple[int, ...] = ()  # with several API replicas: each one's share


def storm_kpis(api: HttpApi, ctx: ApiContext, start: datetime, end: datetime) -> list[KpiRow]:
    """The kota, then every agency: GET /kpi for the incidents opened in [start, end),
    followed to end + FOLLOW."""
    token = token_for(ctx, EVALUATOR)
    scopes = [("kota", ctx.geo.index.zones.kota.id)] + [
        ("agency", a) for a in sorted(ctx.city.agencies)
    ]
    rows = []
    for kind, scope_id in scopes:
        params = {
            "scope": kind,
            "id": scope_id,
            "start": start.isoformat(),
            "end": end.isoformat(),
            "followed_to": (end + FOLLOW).isoformat(),
        }
        k = api.get("/kpi", token, params)
        rows.append(KpiRow(str(k["name"]), k))
    return rows


def answer_and_evaluate(
    settings: Settings,
    city: City,
    zones: ZoneIndex,
    start: datetime,
    end: datetime,
    *,
    use_influx: bool = True,
    api_replicas: int = 1,
) -> CrewsResult:
    """Serve the API on the incident database (its clock following simulated time), let
    the crews answer every incident routed to someone, then ask it for the storm's KPIs.

    With `api_replicas` > 1, that many API instances, each with its own context (store
    connections, caches, limits), on their own ports and one database, as replicas
    behind a load balancer; the calls alternate between them (RoundRobinApi). They share
    this process only for the crews' simulated clock."""
    t0 = time.monotonic()
    clock = ManualClock(start)
    with ExitStack() as running:
        contexts = []
        for _ in range(api_replicas):
            ctx = build_context(
                settings, clock=clock, city=city, zones=zones, use_influx=use_influx
            )
            running.callback(ctx.close)
            contexts.append(ctx)
        ctx = contexts[0]
        answers = plan_answers(
            all_incidents(ctx),
            lambda i: i.routed_crew_id,
            supervisors=frozenset(ctx.roster.supervisors.values()),
        )
        api = RoundRobinApi([running.enter_context(serve(c)) for c in contexts])
        calls = answer(api, ctx, clock, answers)
        shares = tuple(api.calls)
        # Evaluate once every answer is in: after the followed period.
        clock.set(end + FOLLOW + timedelta(days=1))
        rows = storm_kpis(api, ctx, start, end)
    return CrewsResult(
        answers, calls, rows, time.monotonic() - t0, shares if api_replicas > 1 else ()
    )


class RoundRobinApi(HttpApi):
    """HttpApi over several API replicas: each call goes to the next one in turn, so
    what a crew does through one must be seen by the other (a list, an incident's
    state, the KPIs)."""

    def __init__(self, base_urls: list[str]) -> None:
        super().__init__(base_urls[0])
        self._urls = [u.rstrip("/") for u in base_urls]
        self.calls = [0] * len(base_urls)
        self._next = 0

    def _call(self, method: str, path: str, token: str, data: bytes | None) -> Any:
        i, self._next = self._next, (self._next + 1) % len(self._urls)
        self.base_url = self._urls[i]
        self.calls[i] += 1
        return super()._call(method, path, token, data)


def _num(v: object, fmt: str = "{:.1f}") -> str:
    return "–" if v is None else fmt.format(v)  # noqa: RUF001 - a dash: no value, not 0


def kpi_table(result: CrewsResult, start: datetime, end: datetime) -> str:
    crews = {a.crew for a in result.answers}
    resolved = sum(1 for a in result.answers if a.resolved_at is not None)
    lines = [
        "",
        f"Crews        {len(crews)} crews and supervisors answered {len(result.answers)} "
        f"incidents through the API ({result.calls} calls: acknowledge, dispatch, on site, "
        f"resolve) in {result.wall_s:.1f} s; {resolved} resolved once their condition "
        f"cleared, {len(result.answers) - resolved} still active"
        + (
            f"; calls alternated over {len(result.calls_per_api)} API replicas "
            f"({' + '.join(str(n) for n in result.calls_per_api)})"
            if result.calls_per_api
            else ""
        ),
        "",
        f"e-Kinerja from the API (GET /kpi), incidents opened {start:%Y-%m-%d %H:%M}.."
        f"{end:%H:%M} UTC followed to {end + FOLLOW:%H:%M}; availability over the storm; "
        "minutes:",
        f"  {'scope':<15}{'incidents':>9}{'ack mean':>10}{'ack p90':>9}{'res mean':>10}"
        f"{'res p90':>9}{'SLA %':>8}{'sensors %':>11}{'cameras %':>11}{'score':>7}",
    ]
    for r in result.rows:
        k = r.kpi
        ack, res = k["ack_minutes"], k["resolve_minutes"]
        lines.append(
            f"  {r.name:<15}{k['incidents']:>9}{_num(ack['mean']):>10}"
            f"{_num(ack['p90']):>9}{_num(res['mean']):>10}"
            f"{_num(res['p90']):>9}{_num(k['sla_compliance_pct']):>8}"
            f"{_num(k['sensor_availability_pct']):>11}{_num(k['camera_availability_pct']):>11}"
            f"{_num(k['score']):>7}"
        )
    return "\n".join(lines)
