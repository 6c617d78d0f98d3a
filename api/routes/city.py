"""/zones (GeoJSON with live status), /devices (with health), /crews, /agencies."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from sqlalchemy import select

from api.context import ApiContext
from api.deps import Ctx, CurrentPrincipal
from api.incident_queries import scope_filter, severity_name
from api.principal import Principal
from api.schemas import AgencyOut, CrewOut, DeviceHealth, DeviceList, GeoJson, Message
from pantau.incidents import Hazard, Severity
from pantau.influx.query import InfluxQLError
from pantau.store import INACTIVE_WORKFLOW
from pantau.store.models import IncidentRow

logger = logging.getLogger(__name__)
router = APIRouter(tags=["city"])
AUTH: dict[int | str, dict[str, Any]] = {401: {"model": Message}}

DEVICE_HAZARDS = (
    Hazard.SENSOR_OFFLINE,
    Hazard.SENSOR_STUCK,
    Hazard.BATTERY_LOW,
    Hazard.DATA_QUALITY,
    Hazard.CAMERA_FAULT,
)
HEALTH_TTL_S = 15.0  # device health is read from InfluxDB at most this often


def zone_status(ctx: ApiContext, who: Principal) -> dict[str, tuple[Severity, int]]:
    """Worst current severity and count of active incidents per zone id, in scope."""
    query = select(IncidentRow.zone_id, IncidentRow.severity_current).where(
        IncidentRow.workflow_state.not_in(INACTIVE_WORKFLOW), *scope_filter(who, ctx.geo)
    )
    status: dict[str, tuple[Severity, int]] = {}
    with ctx.readers() as session:
        for zone_id, severity in session.execute(query):
            worst, n = status.get(zone_id, (Severity.INFO, 0))
            status[zone_id] = (max(worst, severity), n + 1)
    return status


@router.get(
    "/zones",
    response_model=GeoJson,
    responses=AUTH,
    summary="Zones as GeoJSON, each with its worst active incident",
)
def zones(
    ctx: Ctx,
    who: CurrentPrincipal,
    level: Literal["kelurahan", "kecamatan", "kota"] = "kelurahan",
) -> GeoJson:
    """`status` is the worst current severity of the zone's active incidents (those of
    its kelurahan too, for a kecamatan or the kota) or "normal"."""
    status = zone_status(ctx, who)
    zs = ctx.geo.index.zones
    chosen = {"kelurahan": zs.kelurahan, "kecamatan": zs.kecamatan, "kota": (zs.kota,)}[level]
    features = []
    for zone in chosen:
        hits = [
            v
            for zid, v in status.items()
            if zid == zone.id
            or level == "kota"
            or (level == "kecamatan" and ctx.geo.kecamatan_of(zid) == zone.id)
        ]
        worst = max((s for s, _ in hits), default=None)
        features.append(
            {
                "type": "Feature",
                "id": zone.id,
                "geometry": ctx.geo.outline(zone.id),
                "properties": {
                    "id": zone.id,
                    "name": zone.name,
                    "level": zone.level.value,
                    "parent_id": zone.parent_id,
                    "status": "normal" if worst is None else severity_name(worst),
                    "active_incidents": sum(n for _, n in hits),
                },
            }
        )
    return GeoJson(type="FeatureCollection", features=features)


@router.get("/agencies", response_model=list[AgencyOut], responses=AUTH)
def agencies(ctx: Ctx, who: CurrentPrincipal) -> list[AgencyOut]:
    return [
        AgencyOut(id=a.id, name=a.name, short=a.short, responsibilities=a.responsibilities)
        for a in ctx.city.agencies.values()
    ]


@router.get("/crews", response_model=list[CrewOut], responses=AUTH)
def crews(ctx: Ctx, who: CurrentPrincipal, agency: str | None = None) -> list[CrewOut]:
    local = ctx.roster.local_time(ctx.clock.now())
    return [
        CrewOut(
            id=c.id,
            agency=c.agency,
            shift=c.shift.name,
            shift_start=c.shift.start.strftime("%H:%M"),
            shift_end=c.shift.end.strftime("%H:%M"),
            kecamatan=sorted(c.kecamatan),
            on_shift=c.shift.covers(local),
        )
        for c in ctx.roster.crews
        if agency is None or c.agency == agency
    ]


@dataclass
class _HealthCache:
    at: float = -1e9
    last_seen: dict[str, datetime] = field(default_factory=dict)
    battery: dict[str, float] = field(default_factory=dict)
    ok: bool = False


def _health(ctx: ApiContext) -> _HealthCache:
    cache = ctx.caches.get("device_health")
    if isinstance(cache, _HealthCache) and time.monotonic() - cache.at < HEALTH_TTL_S:
        return cache
    fresh = _HealthCache(at=time.monotonic())
    if ctx.influx is not None:
        try:
            for row in ctx.influx.rows(
                'SELECT last(value) FROM /.*/ WHERE time > now() - 7d GROUP BY "device"',
                epoch="ms",
            ):
                device, t = str(row.get("device", "")), row.get("time")
                if isinstance(t, int):
                    seen = datetime.fromtimestamp(t / 1000, UTC)
                    fresh.last_seen[device] = max(seen, fresh.last_seen.get(device, seen))
            for row in ctx.influx.rows(
                'SELECT last(value) FROM "battery" WHERE time > now() - 7d GROUP BY "device"'
            ):
                v = row.get("last")
                if isinstance(v, int | float):
                    fresh.battery[str(row.get("device", ""))] = float(v)
            fresh.ok = True
        except InfluxQLError as err:
            logger.warning("device health unavailable: %s", err)
    ctx.caches["device_health"] = fresh
    return fresh


@router.get("/devices", response_model=DeviceList, responses=AUTH)
def devices(
    ctx: Ctx,
    who: CurrentPrincipal,
    *,
    kecamatan: str | None = None,
    kelurahan: str | None = None,
    agency: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 1000,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> DeviceList:
    """Registered devices with last reading time, battery and active device faults.
    A crew sees its agency's devices in its kecamatan."""
    health = _health(ctx)
    faults: dict[str, list[str]] = {}
    with ctx.readers() as session:
        rows = session.execute(
            select(IncidentRow.hazard, IncidentRow.evidence_device_ids).where(
                IncidentRow.workflow_state.not_in(INACTIVE_WORKFLOW),
                IncidentRow.hazard.in_(DEVICE_HAZARDS),
            )
        )
        for hazard, ids in rows:
            for d in filter(None, ids.split(",")):
                faults.setdefault(d, []).append(hazard.value)
    chosen = [
        d
        for d in ctx.city.devices.values()
        if who.sees(d.agency, d.kecamatan_id)
        and (kecamatan is None or d.kecamatan_id == kecamatan)
        and (kelurahan is None or d.kelurahan_id == kelurahan)
        and (agency is None or d.agency == agency)
    ]
    page = chosen[offset : offset + limit]
    return DeviceList(
        data=[
            DeviceHealth(
                id=d.id,
                name=d.name,
                kind=d.kind,
                agency=d.agency,
                kelurahan_id=d.kelurahan_id,
                kecamatan_id=d.kecamatan_id,
                lon=d.lon,
                lat=d.lat,
                last_seen=health.last_seen.get(d.id),
                battery_pct=health.battery.get(d.id),
                faults=sorted(set(faults.get(d.id, []))),
                health_source="influxdb" if health.ok else "unavailable",
            )
            for d in page
        ],
        count=len(chosen),
    )
