"""Flood hotspots for planning: each kelurahan ranked by what the incident history says
of its floods over a period, for Bappeda and the agencies' infrastructure plans.

Per kelurahan, from its kelurahan-level flood incidents (kecamatan-wide alerts say
nothing about which kelurahan) in [from, to):
- flood hours: the union of the intervals in which one of them was ACTIVE (timeline
  condition events, event time), clipped to the period; overlapping incidents of two
  rules count once.
- incidents: how many opened in the period.
- peak depth (cm): the highest water reading in their evidence (station gauge: cm
  above the channel bed; flood camera: cm on its staff gauge).
- recurrence: distinct days (city calendar) with a flood incident active.
Rank: flood hours, then incidents, then peak depth, then recurrence (all descending).
"""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import select

from pantau.incidents import ConditionState, Hazard
from pantau.store.models import IncidentEventRow, IncidentRow
from pantau.store.types import EventKind

from .context import ApiContext

DEPTH_METRICS = frozenset({"water_level", "water_depth"})


@dataclass(frozen=True, slots=True)
class Hotspot:
    rank: int
    kelurahan_id: str
    kelurahan: str
    kecamatan_id: str
    kecamatan: str
    flood_hours: float
    incidents: int
    peak_depth_cm: float | None
    recurrence_days: int


def _union_hours(spans: list[tuple[datetime, datetime]]) -> float:
    total = 0.0
    end: datetime | None = None
    start: datetime | None = None
    for a, b in sorted(spans):
        if end is None or a > end:
            if start is not None and end is not None:
                total += (end - start).total_seconds()
            start, end = a, b
        else:
            end = max(end, b)
    if start is not None and end is not None:
        total += (end - start).total_seconds()
    return total / 3600.0


def _days(spans: list[tuple[datetime, datetime]], ctx: ApiContext) -> set[date]:
    tz = ctx.city.facts.time_zone
    out: set[date] = set()
    for a, b in spans:
        day, last = a.astimezone(tz).date(), b.astimezone(tz).date()
        while day <= last:
            out.add(day)
            day += timedelta(days=1)
    return out


def hotspots(ctx: ApiContext, start: datetime, end: datetime) -> list[Hotspot]:
    """Every kelurahan, ranked (a kelurahan without floods ranks last, by name)."""
    until = min(end, ctx.clock.now())
    kelurahan = {k.id: k for k in ctx.geo.index.zones.kelurahan}
    incidents = (
        select(IncidentRow)
        .where(
            IncidentRow.hazard == Hazard.FLOOD,
            IncidentRow.zone_id.in_(kelurahan),
            IncidentRow.opened_at < end,
            # an incident still active before `start` can reach into the period
            (IncidentRow.resolved_at.is_(None)) | (IncidentRow.resolved_at >= start)
            | (IncidentRow.condition_at >= start),
        )
    )  # fmt: skip
    spans: dict[str, list[tuple[datetime, datetime]]] = defaultdict(list)
    counts: dict[str, int] = defaultdict(int)
    peaks: dict[str, float] = {}
    with ctx.readers() as session:
        rows = {r.id: r for r in session.scalars(incidents)}
        events = session.execute(
            select(IncidentEventRow.incident_id, IncidentEventRow.at, IncidentEventRow.to_state)
            .where(
                IncidentEventRow.incident_id.in_(rows),
                IncidentEventRow.kind == EventKind.CONDITION,
            )
            .order_by(IncidentEventRow.incident_id, IncidentEventRow.seq)
        ).all()
    since: dict[int, datetime] = {}
    for incident_id, at, to_state in events:
        zone = rows[incident_id].zone_id
        if to_state == ConditionState.ACTIVE.value:
            since.setdefault(incident_id, at)
        elif incident_id in since:
            spans[zone].append((since.pop(incident_id), at))
    for incident_id, at in since.items():  # still active
        spans[rows[incident_id].zone_id].append((at, until))
    for r in rows.values():
        if start <= r.opened_at < end:
            counts[r.zone_id] += 1
        if r.evidence_metric in DEPTH_METRICS:
            peaks[r.zone_id] = max(
                peaks.get(r.zone_id, r.evidence_peak_value), r.evidence_peak_value
            )
    clipped = {
        z: [(max(a, start), min(b, until)) for a, b in s if b > start and a < until]
        for z, s in spans.items()
    }
    scored = []
    for kid, k in kelurahan.items():
        s = clipped.get(kid, [])
        kec = k.parent_id or ""
        scored.append(
            Hotspot(
                rank=0,
                kelurahan_id=kid,
                kelurahan=k.name,
                kecamatan_id=kec,
                kecamatan=ctx.geo.name(kec),
                flood_hours=round(_union_hours(s), 2),
                incidents=counts.get(kid, 0),
                peak_depth_cm=None if kid not in peaks else round(peaks[kid], 1),
                recurrence_days=len(_days(s, ctx)),
            )
        )
    scored.sort(
        key=lambda h: (
            -h.flood_hours, -h.incidents, -(h.peak_depth_cm or 0.0), -h.recurrence_days,
            h.kelurahan,
        )
    )  # fmt: skip
    return [Hotspot(**{**asdict(h), "rank": i}) for i, h in enumerate(scored, start=1)]


CSV_COLUMNS = [
    "rank", "kelurahan_id", "kelurahan", "kecamatan_id", "kecamatan", "flood_hours",
    "incidents", "peak_depth_cm", "recurrence_days",
]  # fmt: skip


def to_csv(spots: list[Hotspot]) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for h in spots:
        w.writerow(["" if v is None else v for v in (getattr(h, c) for c in CSV_COLUMNS)])
    return out.getvalue()


def to_geojson(ctx: ApiContext, spots: list[Hotspot], start: datetime, end: datetime) -> str:
    """Kelurahan polygons with the figures as properties (QGIS opens it as a layer)."""
    features: list[dict[str, Any]] = [
        {
            "type": "Feature",
            "id": h.kelurahan_id,
            "geometry": ctx.geo.outline(h.kelurahan_id),
            "properties": asdict(h),
        }
        for h in spots
    ]
    return json.dumps(
        {
            "type": "FeatureCollection",
            "name": f"pantau-flood-hotspots-{start.date()}-{end.date()}",
            "period": {"from": start.isoformat(), "to": end.isoformat()},
            "features": features,
        },
        ensure_ascii=False,
    )
