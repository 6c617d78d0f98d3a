"""What the public transparency page shows, computed once per change and minute and
served from a cache: the kelurahan's flood and road state, recent incidents coarsened
to kelurahan and hour, and each agency's response over the last 30 days.

Only public hazards (api.cap.PUBLIC_HAZARDS); an incident opened by citizen reports
only once a person verified it (acknowledged). Nothing finer than a kelurahan and an
hour, no device, camera, crew, person or comment; satisfaction as an agency's mean.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from statistics import median
from typing import Any

from sqlalchemy import select

from pantau.incidents import Hazard, Severity
from pantau.store import INACTIVE_WORKFLOW
from pantau.store.models import IncidentRow

from .cap import PUBLIC_HAZARDS
from .context import ApiContext
from .incident_queries import CITIZEN_RULE
from .kpi import IncidentFacts, compute
from .kpi_queries import Scope, ScopeKind, facts
from .principal import Principal, Role

RECENT = timedelta(hours=48)
RESPONSE_WINDOW = timedelta(days=30)
FLOOD = frozenset({Hazard.FLOOD})
ROAD = frozenset({Hazard.ROAD_DAMAGE, Hazard.TRAFFIC_JAM})
PUBLIC = Principal(subject="public-page", role=Role.SERVICE)  # sees all, changes nothing


def _public(row: IncidentRow) -> bool:
    return row.hazard in PUBLIC_HAZARDS and (
        row.rule_id != CITIZEN_RULE or row.acknowledged_at is not None
    )


def _hour(at: datetime, ctx: ApiContext) -> str:
    local = at.astimezone(ctx.city.facts.time_zone)
    return local.replace(minute=0, second=0, microsecond=0).isoformat()


def _kelurahan_of(ctx: ApiContext, zone_id: str) -> list[str]:
    """The kelurahan a zone covers: itself, or a kecamatan's (or the kota's) all."""
    if not ctx.geo.known(zone_id):
        return []
    level = ctx.geo.index.zone(zone_id).level.value
    if level == "kelurahan":
        return [zone_id]
    zs = ctx.geo.index.zones
    if level == "kecamatan":
        return [k.id for k in zs.kelurahan if k.parent_id == zone_id]
    return [k.id for k in zs.kelurahan]


def _states(ctx: ApiContext, now: datetime) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    since = now - RECENT
    with ctx.readers() as session:
        active = [
            r
            for r in session.scalars(
                select(IncidentRow).where(IncidentRow.workflow_state.not_in(INACTIVE_WORKFLOW))
            )
            if _public(r)
        ]
        recent = [
            r
            for r in session.scalars(
                select(IncidentRow)
                .where(IncidentRow.opened_at >= since)
                .order_by(IncidentRow.opened_at.desc(), IncidentRow.id.desc())
                .limit(500)
            )
            if _public(r) and r.workflow_state.value != "suppressed"
        ]
    worst: dict[tuple[str, str], Severity] = {}
    for r in active:
        layer = "flood" if r.hazard in FLOOD else "road" if r.hazard in ROAD else None
        if layer is None:
            continue
        for kel in _kelurahan_of(ctx, r.zone_id):
            key = (kel, layer)
            worst[key] = max(worst.get(key, Severity.INFO), r.severity_current)
    kelurahan = [
        {
            "id": k.id,
            "name": k.name,
            "kecamatan": ctx.geo.name(k.parent_id or ""),
            **{
                layer: (worst[(k.id, layer)].name.lower() if (k.id, layer) in worst else "normal")
                for layer in ("flood", "road")
            },
        }
        for k in ctx.geo.index.zones.kelurahan
    ]
    incidents = [
        {
            "hour": _hour(r.opened_at, ctx),
            "zone_id": r.zone_id,
            "zone": ctx.geo.name(r.zone_id),
            "hazard": r.hazard.value,
            "severity": r.severity_max.name.lower(),
            "status": "active" if r.workflow_state not in INACTIVE_WORKFLOW else "resolved",
        }
        for r in recent
    ]
    return kelurahan, incidents


def _minutes(values: list[float]) -> float | None:
    return round(median(values), 1) if values else None


def _agency(ctx: ApiContext, agency: str, now: datetime) -> dict[str, Any]:
    start = now - RESPONSE_WINDOW
    fs: list[IncidentFacts] = facts(ctx, PUBLIC, Scope(ScopeKind.AGENCY, agency), start, now)
    k = compute(fs, start, now, now)
    period = [f for f in fs if start <= f.opened_at < now]
    acks = [
        (f.acknowledged_at - f.opened_at).total_seconds() / 60
        for f in period
        if f.acknowledged_at is not None
    ]
    fixes = [
        (f.resolved_at - f.opened_at).total_seconds() / 60
        for f in period
        if f.resolved_at is not None
    ]
    a = ctx.city.agencies[agency]
    return {
        "id": agency,
        "short": a.short,
        "name": a.name,
        "incidents": k.incidents,
        "ack_median_minutes": _minutes(acks),
        "resolve_median_minutes": _minutes(fixes),
        "sla_pct": None if k.sla_compliance_pct is None else round(k.sla_compliance_pct, 1),
        "satisfaction_mean": None if k.satisfaction_mean is None else round(k.satisfaction_mean, 2),
        "satisfaction_ratings": k.satisfaction_ratings,
    }


def overview(ctx: ApiContext) -> bytes:
    """The page's data as JSON bytes, from the cache while no incident changed and the
    minute is the same (the 30-day window and the 48 hours move on)."""
    now = ctx.clock.now()
    version = (ctx.version(), now.replace(second=0, microsecond=0))
    cache = ctx.caches.get("public-overview")
    if isinstance(cache, tuple) and cache[0] == version:
        body: bytes = cache[1]
        return body
    kelurahan, incidents = _states(ctx, now)
    doc = {
        "city": ctx.city.facts.display_name,
        "time_zone": ctx.city.facts.time_zone.key,
        "generated_at": now.replace(second=0, microsecond=0).isoformat(),
        "kelurahan": kelurahan,
        "recent_incidents": incidents,
        "recent_hours": int(RECENT.total_seconds() // 3600),
        "agencies": [_agency(ctx, a, now) for a in sorted(ctx.city.agencies)],
        "response_days": RESPONSE_WINDOW.days,
    }
    body = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    ctx.caches["public-overview"] = (version, body)
    return body


def zones_geojson(ctx: ApiContext) -> bytes:
    """The kelurahan outlines (simplified), once per process."""
    cached = ctx.caches.get("public-zones")
    if isinstance(cached, bytes):
        return cached
    features = [
        {
            "type": "Feature",
            "id": k.id,
            "geometry": ctx.geo.outline(k.id),
            "properties": {
                "id": k.id,
                "name": k.name,
                "kecamatan": ctx.geo.name(k.parent_id or ""),
            },
        }
        for k in ctx.geo.index.zones.kelurahan
    ]
    body = json.dumps({"type": "FeatureCollection", "features": features}).encode("utf-8")
    ctx.caches["public-zones"] = body
    return body
