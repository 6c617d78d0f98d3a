"""/kpi: e-Kinerja KPIs per zone / agency / crew / period, JSON and CSV, the monthly
report, and publishing the series to InfluxDB. Formulas: api/kpi.py. A month is the
city's calendar month, on its clock (config/city.yaml `time_zone`), not UTC's."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Annotated, Any, Literal, NoReturn

from fastapi import APIRouter, HTTPException, Query, Response, status
from pydantic import BaseModel, ConfigDict

from api.audit import Outcome
from api.context import ApiContext
from api.deps import Ctx, CurrentPrincipal, unprocessable
from api.kpi import Kpis
from api.kpi_queries import (
    Scope,
    ScopeError,
    ScopeKind,
    check_scope,
    kpis_for,
    month_bounds,
    publish,
    report_scopes,
)
from api.principal import Principal, Role
from api.schemas import Message
from pantau.incidents import Hazard, Severity
from pantau.influx.query import InfluxQLError

# 2000-2099: InfluxDB keeps times between 1677 and 2262, and e-Kinerja starts well after 2000.
MONTH = r"^20\d\d-(0[1-9]|1[0-2])$"
router = APIRouter(prefix="/kpi", tags=["performance (e-Kinerja)"])
CSV_OR_JSON: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/csv": {"schema": {"type": "string"}}}, "description": "format=csv"}
}
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Message},
    404: {"model": Message, "description": "scope outside the caller's"},
}


@dataclass(frozen=True, slots=True, kw_only=True)
class KpiOut(Kpis):
    """One scope's KPIs as the API answers them (JSON, CSV, the monthly report): the
    `Kpis` of api/kpi.py, written once, plus which scope they are of."""

    scope: ScopeKind
    id: str
    name: str


class KpiReport(BaseModel):
    model_config = ConfigDict(frozen=True)
    month: str
    data: list[KpiOut]


class Published(BaseModel):
    model_config = ConfigDict(frozen=True)
    points: int


def kpi_out(ctx: ApiContext, scope: Scope, k: Kpis) -> KpiOut:
    if scope.kind in {ScopeKind.AGENCY}:
        name = ctx.city.agencies[scope.id].short
    elif scope.kind is ScopeKind.CREW:
        name = scope.id
    else:
        name = ctx.geo.name(scope.id)
    values: dict[str, Any] = {f.name: getattr(k, f.name) for f in fields(k)}
    return KpiOut(scope=scope.kind, id=scope.id, name=name, **values)


def period(
    ctx: ApiContext, month: str | None, start: datetime | None, end: datetime | None
) -> tuple[datetime, datetime]:
    try:
        if month is not None:
            return month_bounds(month, ctx.city.facts.time_zone)
    except ScopeError as err:
        raise unprocessable(("query", "month"), str(err)) from err
    if start is None or end is None:
        raise unprocessable(("query", "month"), "give month=YYYY-MM, or start and end")
    if start.tzinfo is None or end.tzinfo is None:
        raise unprocessable(
            ("query", "start"), "times need a UTC offset, e.g. 2026-11-01T00:00:00Z"
        )
    if end <= start:
        raise unprocessable(("query", "end"), "end must be after start")
    return start, end


def _scope(ctx: ApiContext, who: Principal, kind: ScopeKind, id_: str | None) -> Scope:
    """The scope asked for, if the caller may see it; else 404 (audited), the same for
    a scope outside the caller's as for one that does not exist."""
    scope = Scope(kind, id_ or (ctx.geo.index.zones.kota.id if kind is ScopeKind.KOTA else ""))
    try:
        check_scope(ctx, scope)
    except ScopeError as err:
        _deny(ctx, who, scope, str(err))
    crew = next((c for c in ctx.roster.crews if c.id == scope.id), None)
    outside = (
        (kind is ScopeKind.AGENCY and who.agency not in {None, scope.id})
        or (kind is ScopeKind.KOTA and who.kecamatan is not None)
        or (
            kind in {ScopeKind.KECAMATAN, ScopeKind.KELURAHAN}
            and not who.sees(who.agency, ctx.geo.kecamatan_of(scope.id))
        )
        # A crew sees its own KPIs only; a supervisor those of its agency's crews.
        or (kind is ScopeKind.CREW and who.crew_id is not None and scope.id != who.crew_id)
        or (
            kind is ScopeKind.CREW
            and who.agency is not None
            and (crew is None or crew.agency != who.agency)
        )
    )
    if outside:
        _deny(ctx, who, scope, f"{scope} is outside your scope")
    return scope


def _deny(ctx: ApiContext, who: Principal, scope: Scope, why: str) -> NoReturn:
    ctx.audit.record(who, "read:kpi", Outcome.DENIED, why)
    raise HTTPException(404, f"{scope} is outside your scope or does not exist")


CSV_COLUMNS = [
    "scope", "id", "name", "start", "end", "incidents",
    *(f"incidents_{h.value}" for h in Hazard),
    *(f"incidents_{s.name.lower()}" for s in Severity),
    "ack_minutes_mean", "ack_minutes_p90", "resolve_minutes_mean", "resolve_minutes_p90",
    "sla_compliance_pct", "sla_met", "sla_missed", "sla_pending", "backlog", "reopened",
    "reopen_rate_pct", "detection_delay_minutes_mean", "detection_delay_minutes_p90",
    "sensor_availability_pct", "camera_availability_pct", "score",
    "satisfaction_mean", "satisfaction_ratings",
]  # fmt: skip


def _csv_row(o: KpiOut) -> list[str]:
    def num(v: float | int | None) -> str:
        return "" if v is None else f"{v:.2f}" if isinstance(v, float) else str(v)

    return [
        o.scope.value, o.id, o.name, o.start.isoformat(), o.end.isoformat(), str(o.incidents),
        *(str(o.by_hazard.get(h.value, 0)) for h in Hazard),
        *(str(o.by_severity.get(s.name.lower(), 0)) for s in Severity),
        num(o.ack_minutes.mean), num(o.ack_minutes.p90),
        num(o.resolve_minutes.mean), num(o.resolve_minutes.p90),
        num(o.sla_compliance_pct), str(o.sla_met), str(o.sla_missed), str(o.sla_pending),
        str(o.backlog), str(o.reopened), num(o.reopen_rate_pct),
        num(o.detection_delay_minutes.mean), num(o.detection_delay_minutes.p90),
        num(o.sensor_availability_pct), num(o.camera_availability_pct), num(o.score),
        num(o.satisfaction_mean), str(o.satisfaction_ratings),
    ]  # fmt: skip


def to_csv(rows: list[KpiOut]) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    w.writerows(_csv_row(r) for r in rows)
    return out.getvalue()


@router.get(
    "",
    response_model=KpiOut,
    responses={**ERRORS, **CSV_OR_JSON},
    summary="KPIs of one scope and period",
)
def kpi(
    ctx: Ctx,
    who: CurrentPrincipal,
    *,
    scope: ScopeKind = ScopeKind.KOTA,
    id: Annotated[str | None, Query(description="zone, agency or crew id")] = None,
    month: Annotated[str | None, Query(pattern=MONTH)] = None,
    start: datetime | None = None,
    end: datetime | None = None,
    followed_to: Annotated[
        datetime | None,
        Query(
            description="count what people did about the period's incidents up to this "
            "time (>= end; default end), e.g. a storm's incidents until every crew answered"
        ),
    ] = None,
    format: Literal["json", "csv"] = "json",
) -> Any:
    s = _scope(ctx, who, scope, id)
    begin, finish = period(ctx, month, start, end)
    if followed_to is not None and (followed_to.tzinfo is None or followed_to < finish):
        raise unprocessable(("query", "followed_to"), "a time with a UTC offset, >= end")
    out = kpi_out(ctx, s, kpis_for(ctx, who, s, begin, finish, followed_to=followed_to))
    if format == "csv":
        return Response(to_csv([out]), media_type="text/csv")
    return out


@router.get(
    "/report",
    response_model=KpiReport,
    responses={**ERRORS, **CSV_OR_JSON},
    summary="Monthly e-Kinerja report: the kota, every agency and kecamatan in scope",
)
def report(
    ctx: Ctx,
    who: CurrentPrincipal,
    month: Annotated[str, Query(pattern=MONTH)],
    format: Literal["json", "csv"] = "json",
) -> Any:
    begin, finish = period(ctx, month, None, None)
    rows = [kpi_out(ctx, s, kpis_for(ctx, who, s, begin, finish)) for s in report_scopes(ctx, who)]
    if format == "csv":
        return Response(
            to_csv(rows),
            media_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="e-kinerja-{month}.csv"'},
        )
    return KpiReport(month=month, data=rows)


@router.post(
    "/publish",
    response_model=Published,
    responses={**ERRORS, 403: {"model": Message}, 503: {"model": Message}},
    summary="Write the month's KPI series to InfluxDB (measurement `kpi`) for Grafana",
)
def publish_month(
    ctx: Ctx,
    who: CurrentPrincipal,
    month: Annotated[str, Query(pattern=MONTH)],
) -> Published:
    if who.role not in {Role.OPERATOR, Role.SUPERVISOR} or who.agency is not None:
        ctx.audit.record(who, "kpi:publish", Outcome.DENIED, f"role {who.role} may not publish")
        raise HTTPException(status.HTTP_403_FORBIDDEN, "operators and city supervisors publish")
    begin, finish = period(ctx, month, None, None)
    rows = [(s, "month", kpis_for(ctx, who, s, begin, finish)) for s in report_scopes(ctx, who)]
    try:
        return Published(points=publish(ctx, rows))
    except InfluxQLError as err:
        raise HTTPException(503, f"InfluxDB unavailable: {err}") from err
