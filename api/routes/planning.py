"""/planning: flood hotspots from the incident history, for infrastructure planning
(api.planning): JSON, CSV and GeoJSON for QGIS, a PNG choropleth, and the season
report (HTML) to hand to Bappeda. Staff (not crews) and service keys."""

from __future__ import annotations

from datetime import datetime, time
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, HTTPException, Query, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse

from api import planning, planning_map, season_report
from api.audit import Outcome
from api.context import ApiContext
from api.deps import Ctx, CurrentPrincipal, unprocessable
from api.principal import Principal, Role
from api.schemas import Message

router = APIRouter(prefix="/planning", tags=["planning"])
ERRORS: dict[int | str, dict[str, Any]] = {401: {"model": Message}, 403: {"model": Message}}
FORMATS: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {
            "text/csv": {},
            "application/geo+json": {},
            "image/png": {},
        },
        "description": "format=json (default), csv, geojson or png",
    }
}
DAY = r"^\d{4}-\d{2}-\d{2}(T.*)?$"


def _when(ctx: ApiContext, value: str, name: str) -> datetime:
    """A date (the city's midnight) or a time with its UTC offset."""
    try:
        if len(value) == 10:
            day = datetime.fromisoformat(value).date()
            return datetime.combine(day, time(), tzinfo=ctx.city.facts.time_zone)
        at = datetime.fromisoformat(value)
    except ValueError as err:
        raise unprocessable(("query", name), f"{value!r}: not YYYY-MM-DD or ISO 8601") from err
    if at.tzinfo is None:
        raise unprocessable(("query", name), "a time needs a UTC offset, e.g. Z or +07:00")
    return at


def _period(ctx: ApiContext, who: Principal, start: str, end: str) -> tuple[datetime, datetime]:
    if who.role is Role.CREW:
        ctx.audit.record(who, "read:planning", Outcome.DENIED, "crews do not read planning")
        raise HTTPException(status.HTTP_403_FORBIDDEN, "planning data is for staff and services")
    a, b = _when(ctx, start, "from"), _when(ctx, end, "to")
    if b <= a:
        raise unprocessable(("query", "to"), "to must be after from")
    if (b - a).days > 3 * 366:
        raise unprocessable(("query", "to"), "at most three years at once")
    return a, b


From = Annotated[str, Query(alias="from", pattern=DAY, description="date or time, inclusive")]
To = Annotated[str, Query(alias="to", pattern=DAY, description="date or time, exclusive")]


@router.get(
    "/flood-hotspots",
    responses={**ERRORS, **FORMATS},
    summary="Kelurahan ranked by flood hours, incidents, peak depth and recurrence",
)
async def flood_hotspots(
    ctx: Ctx,
    who: CurrentPrincipal,
    start: From,
    end: To,
    format: Literal["json", "csv", "geojson", "png"] = "json",
) -> Any:
    a, b = _period(ctx, who, start, end)
    spots = await run_in_threadpool(planning.hotspots, ctx, a, b)
    stem = f"flood-hotspots-{a.date()}-{b.date()}"
    if format == "csv":
        return _file(planning.to_csv(spots).encode(), "text/csv", f"{stem}.csv")
    if format == "geojson":
        body = planning.to_geojson(ctx, spots, a, b).encode()
        return _file(body, "application/geo+json", f"{stem}.geojson")
    if format == "png":
        png = await run_in_threadpool(
            planning_map.draw, ctx, spots, _title(ctx), f"{a.date()} to {b.date()}"
        )
        return Response(png, media_type="image/png")
    return {"from": a, "to": b, "data": [_dict(s) for s in spots]}


def _dict(spot: planning.Hotspot) -> dict[str, Any]:
    return {f: getattr(spot, f) for f in planning.CSV_COLUMNS}


def _title(ctx: ApiContext) -> str:
    return f"Flood hotspots - {ctx.city.facts.display_name}"


def _file(body: bytes, media: str, name: str) -> Response:
    return Response(
        body, media_type=media, headers={"Content-Disposition": f'attachment; filename="{name}"'}
    )


@router.get(
    "/season-report",
    response_class=Response,
    responses={**ERRORS, 200: {"content": {"text/html": {}}, "description": "the report"}},
    summary="The flood season report (HTML, map inline) for a period",
)
async def season(ctx: Ctx, who: CurrentPrincipal, start: From, end: To) -> HTMLResponse:
    a, b = _period(ctx, who, start, end)
    spots = await run_in_threadpool(planning.hotspots, ctx, a, b)
    png = await run_in_threadpool(
        planning_map.draw, ctx, spots, _title(ctx), f"{a.date()} to {b.date()}"
    )
    query = urlencode({"from": start, "to": end})
    links = {
        f"{fmt.upper()}": f"/planning/flood-hotspots?{query}&format={fmt}"
        for fmt in ("csv", "geojson", "png")
    }
    page = season_report.render(ctx, spots, start=a, end=b, png=png, links=links)
    ctx.audit.record(who, "read:season-report", Outcome.ALLOWED, f"{a.date()}..{b.date()}")
    return HTMLResponse(page)
