"""KPI inputs from the stores: incident facts from SQL for a scope and period, data
presence from InfluxDB for availability; and the KPI series written back to InfluxDB."""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from enum import StrEnum
from typing import Protocol, TypeVar

from sqlalchemy import or_, select

from pantau.cameras import Camera
from pantau.devices import Device
from pantau.influx.lineprotocol import tag_value
from pantau.influx.query import InfluxQLError, quote_ident
from pantau.influx.retention import RAW, Level, level_holding, raw_level, source
from pantau.influx.writers import WriteRejected, WriteUnavailable, make_writer
from pantau.store.api_tables import CitizenReportRow
from pantau.store.models import IncidentRow

from .context import ApiContext
from .incident_queries import scope_filter
from .kpi import IncidentFacts, Kpis, compute, score, scored_values
from .principal import Principal

logger = logging.getLogger(__name__)
MAX_BUCKETS = 2000  # per device; longer periods get wider buckets


class ScopeKind(StrEnum):
    KOTA = "kota"
    KECAMATAN = "kecamatan"
    KELURAHAN = "kelurahan"
    AGENCY = "agency"
    CREW = "crew"


@dataclass(frozen=True, slots=True)
class Scope:
    kind: ScopeKind
    id: str

    def __str__(self) -> str:
        return f"{self.kind.value}:{self.id}"


class ScopeError(ValueError):
    pass


def month_bounds(month: str, tz: tzinfo) -> tuple[datetime, datetime]:
    """'2026-11' -> [2026-11-01 00:00, 2026-12-01 00:00) on the city's clock `tz`, as UTC:
    e-Kinerja months are the city's calendar months, not UTC's."""
    try:
        year, mon = (int(p) for p in month.split("-"))
        start = datetime(year, mon, 1, tzinfo=tz)
    except ValueError as err:
        raise ScopeError(f"month {month!r} is not YYYY-MM") from err
    next_year, next_mon = (year + 1, 1) if mon == 12 else (year, mon + 1)
    end = datetime(next_year, next_mon, 1, tzinfo=tz)
    return start.astimezone(UTC), end.astimezone(UTC)


def check_scope(ctx: ApiContext, scope: Scope) -> None:
    if scope.kind is ScopeKind.AGENCY and scope.id not in ctx.city.agencies:
        raise ScopeError(f"unknown agency {scope.id!r}")
    if scope.kind is ScopeKind.CREW and scope.id not in ctx.roster.addresses:
        raise ScopeError(f"unknown crew {scope.id!r}")
    zonal = scope.kind in {ScopeKind.KOTA, ScopeKind.KECAMATAN, ScopeKind.KELURAHAN}
    if zonal and (
        not ctx.geo.known(scope.id) or ctx.geo.index.zone(scope.id).level != scope.kind.value
    ):
        raise ScopeError(f"unknown {scope.kind.value} {scope.id!r}")


def facts(
    ctx: ApiContext, who: Principal, scope: Scope, start: datetime, end: datetime
) -> list[IncidentFacts]:
    """Incidents in scope that bear on [start, end): opened before end and not resolved
    before start (the backlog needs those opened earlier)."""
    where = [
        *scope_filter(who, ctx.geo),
        IncidentRow.opened_at < end,
        or_(IncidentRow.resolved_at.is_(None), IncidentRow.resolved_at >= start),
    ]
    if scope.kind is ScopeKind.AGENCY:
        where.append(IncidentRow.agency == scope.id)
    elif scope.kind is ScopeKind.CREW:
        where.append(
            or_(IncidentRow.assignee_crew_id == scope.id, IncidentRow.routed_crew_id == scope.id)
        )
    elif scope.kind is ScopeKind.KECAMATAN:
        where.append(IncidentRow.zone_id.in_(ctx.geo.zone_ids_in([scope.id])))
    elif scope.kind is ScopeKind.KELURAHAN:
        where.append(IncidentRow.zone_id == scope.id)
    query = select(
        IncidentRow.id,
        IncidentRow.hazard,
        IncidentRow.severity_max,
        IncidentRow.workflow_state,
        IncidentRow.opened_at,
        IncidentRow.acknowledged_at,
        IncidentRow.resolved_at,
        IncidentRow.sla_ack_due,
        IncidentRow.sla_resolve_due,
        IncidentRow.reopen_count,
        IncidentRow.evidence_first_at,
        IncidentRow.evidence_device_ids,
        IncidentRow.zone_id,
        IncidentRow.agency,
    ).where(*where)
    with ctx.readers() as session:
        ratings: dict[int, list[int]] = defaultdict(list)
        rated = (
            select(CitizenReportRow.incident_id, CitizenReportRow.rating)
            .join(IncidentRow, IncidentRow.id == CitizenReportRow.incident_id)
            .where(*where, CitizenReportRow.rating.is_not(None))
            .order_by(CitizenReportRow.id)
        )
        for incident_id, rating in session.execute(rated):
            if rating is not None:
                ratings[incident_id].append(rating)
        return [
            IncidentFacts(
                id=r.id,
                hazard=r.hazard,
                severity_max=r.severity_max,
                workflow_state=r.workflow_state,
                opened_at=r.opened_at,
                acknowledged_at=r.acknowledged_at,
                resolved_at=r.resolved_at,
                sla_ack_due=r.sla_ack_due,
                sla_resolve_due=r.sla_resolve_due,
                reopen_count=r.reopen_count,
                evidence_first_at=r.evidence_first_at if r.evidence_device_ids else None,
                zone_id=r.zone_id,
                agency=r.agency,
                ratings=tuple(ratings.get(r.id, ())),
            )
            for r in session.execute(query)
        ]


class Placed(Protocol):
    """A device or a camera: what scoping needs to know of it."""

    @property
    def agency(self) -> str: ...
    @property
    def kecamatan_id(self) -> str: ...
    @property
    def kelurahan_id(self) -> str: ...


P = TypeVar("P", bound=Placed)


def in_scope(ctx: ApiContext, who: Principal, scope: Scope, things: Iterable[P]) -> list[P]:
    """The devices (or cameras) of `scope` that the caller may see."""
    chosen = [t for t in things if who.sees(t.agency, t.kecamatan_id)]
    if scope.kind is ScopeKind.AGENCY:
        return [t for t in chosen if t.agency == scope.id]
    if scope.kind is ScopeKind.KECAMATAN:
        return [t for t in chosen if t.kecamatan_id == scope.id]
    if scope.kind is ScopeKind.KELURAHAN:
        return [t for t in chosen if t.kelurahan_id == scope.id]
    if scope.kind is ScopeKind.CREW:
        crew = next((c for c in ctx.roster.crews if c.id == scope.id), None)
        if crew is None:
            return []
        return [t for t in chosen if t.agency == crew.agency and t.kecamatan_id in crew.kecamatan]
    return chosen


def _buckets(ctx: ApiContext, start: datetime, as_of: datetime) -> tuple[int, int]:
    """(bucket seconds, number of buckets) of an availability period. Wide buckets are
    whole 5 minutes (whole hours from an hour up), so that once the raw readings have
    aged out the 5-minute or hourly aggregates fill exactly the same buckets."""
    span_s = (as_of - start).total_seconds()
    bucket_s = max(ctx.kpi.availability_bucket_minutes * 60, math.ceil(span_s / MAX_BUCKETS))
    unit = 60 if bucket_s <= 600 else 300 if bucket_s < 3600 else 3600
    bucket_s = int(math.ceil(bucket_s / unit) * unit)
    return bucket_s, math.ceil(span_s / bucket_s)


def _level(ctx: ApiContext, start: datetime) -> Level:
    """Raw readings while InfluxDB keeps them from `start`, else their aggregates."""
    assert ctx.influx is not None
    influx = ctx.settings.influx
    return level_holding(
        ctx.influx,
        influx.database,
        start,
        ctx.clock.now(),
        ctx.settings.retention,
        raw_rp=raw_level(influx).rp,
    )


class InService(Protocol):
    """A device or a camera: what availability needs to know of it."""

    @property
    def id(self) -> str: ...
    @property
    def in_service_from(self) -> datetime | None: ...


def _expected_buckets(
    things: Sequence[InService], start: datetime, buckets: int, bucket_s: int
) -> dict[str, int]:
    """Per thing in service during the period: the index of its first bucket (the one
    it was commissioned in). Things commissioned after the period are left out."""
    first: dict[str, int] = {}
    for t in things:
        since = t.in_service_from
        k = (
            0
            if since is None or since <= start
            else int((since - start).total_seconds()) // bucket_s
        )
        if k < buckets:
            first[t.id] = k
    return first


def _present(
    ctx: ApiContext,
    measurement: str,
    *,
    tag: str,
    first: dict[str, int],
    start: datetime,
    as_of: datetime,
    bucket_s: int,
    level: Level = RAW,
    zero_only: bool = False,
) -> int:
    """(id, bucket) pairs in service in [start, as_of) with at least one point of
    `measurement` (`zero_only`: a point whose value is 0), from raw readings or from
    their aggregates (a window's count, its min for zero_only: values are >= 0).
    Buckets start at `start` (the GROUP BY offset), not at the epoch."""
    assert ctx.influx is not None
    offset = int(start.timestamp()) % bucket_s
    if level.aggregated:
        src = source(measurement, level, ctx.settings.influx.database)
        what = f'sum("count") AS "count" FROM {src}'
        condition = 'AND "min" = 0 ' if zero_only else ""
    else:
        what = f"count(value) FROM {quote_ident(measurement)}"
        condition = "AND value = 0 " if zero_only else ""
    q = (
        f"SELECT {what} "
        f"WHERE time >= $start AND time < $end {condition}"
        f"GROUP BY time({bucket_s}s, {offset}s), {quote_ident(tag)} fill(none)"
    )
    params: dict[str, str | int | float | bool] = {
        "start": start.isoformat(),
        "end": as_of.isoformat(),
    }
    rows = ctx.influx.rows(q, params=params, epoch="s")
    t0 = int(start.timestamp())
    present = 0
    for r in rows:
        who, at = r.get(tag), r.get("time")
        if not isinstance(who, str) or who not in first or not isinstance(at, int):
            continue
        if not isinstance(r.get("count"), int | float):
            continue
        if (at - t0) // bucket_s >= first[who]:
            present += 1
    return present


def _share(present: int, first: dict[str, int], buckets: int) -> float | None:
    expected = sum(buckets - k for k in first.values())
    return 100.0 * min(present, expected) / expected if expected > 0 else None


def sensor_availability(
    ctx: ApiContext, devices: Sequence[Device], start: datetime, as_of: datetime
) -> float | None:
    """Share of (device, bucket) pairs in [start, as_of) while the device was in service
    with at least one reading of its first metric; None without InfluxDB, time, or a
    device in service (no device is not a device down)."""
    if ctx.influx is None or not devices or as_of <= start:
        return None
    bucket_s, buckets = _buckets(ctx, start, as_of)
    first = _expected_buckets([d for d in devices if d.metrics], start, buckets, bucket_s)
    if not first:
        return None
    by_metric: defaultdict[str, dict[str, int]] = defaultdict(dict)
    for d in devices:
        if d.id in first:
            by_metric[d.metrics[0]][d.id] = first[d.id]
    try:
        level = _level(ctx, start)
        present = sum(
            _present(
                ctx,
                metric,
                tag="device",
                first=ids,
                start=start,
                as_of=as_of,
                bucket_s=bucket_s,
                level=level,
            )
            for metric, ids in sorted(by_metric.items())
        )
    except InfluxQLError as err:
        logger.warning("sensor availability unavailable: %s", err)
        return None
    return _share(present, first, buckets)


def camera_availability(
    ctx: ApiContext, cameras: Sequence[Camera], start: datetime, as_of: datetime
) -> float | None:
    """Share of (camera, bucket) pairs in [start, as_of) while the camera was in service
    with at least one analysis that found no camera fault (`camera_fault` = 0); None
    without InfluxDB, time, or a camera in service."""
    if ctx.influx is None or not cameras or as_of <= start:
        return None
    bucket_s, buckets = _buckets(ctx, start, as_of)
    first = _expected_buckets(cameras, start, buckets, bucket_s)
    if not first:
        return None
    try:
        present = _present(
            ctx,
            "camera_fault",
            level=_level(ctx, start),
            tag="camera",
            first=first,
            start=start,
            as_of=as_of,
            bucket_s=bucket_s,
            zero_only=True,
        )
    except InfluxQLError as err:
        logger.warning("camera availability unavailable: %s", err)
        return None
    return _share(present, first, buckets)


def kpis_for(
    ctx: ApiContext,
    who: Principal,
    scope: Scope,
    start: datetime,
    end: datetime,
    *,
    followed_to: datetime | None = None,
) -> Kpis:
    """The scored KPIs, from a cache while no timeline event is newer and the minute of
    `as_of` is the same (a period still running ages: pending checks become missed)."""
    now = ctx.clock.now()
    as_of_minute = min(max(end, followed_to or end), now).replace(second=0, microsecond=0)
    key = ("kpi", who.agency, who.kecamatan, scope, start, end, followed_to)
    version = (ctx.version(), as_of_minute)
    cached = ctx.kpi_cache.get(key, version)
    if cached is not None:
        return cached
    k = _kpis_for(ctx, who, scope, start, end, now=now, followed_to=followed_to)
    ctx.kpi_cache.put(key, version, k)
    return k


def _kpis_for(
    ctx: ApiContext,
    who: Principal,
    scope: Scope,
    start: datetime,
    end: datetime,
    *,
    now: datetime,
    followed_to: datetime | None = None,
) -> Kpis:
    present_until = min(end, now)  # data presence: over the period itself
    devices = in_scope(ctx, who, scope, ctx.city.devices.values())
    cameras = in_scope(ctx, who, scope, ctx.cameras.values())
    # Incidents opened in [start, end); what people did about them, up to followed_to.
    k = compute(
        facts(ctx, who, scope, start, end),
        start,
        end,
        now,
        availability_pct=sensor_availability(ctx, devices, start, present_until),
        camera_availability_pct=camera_availability(ctx, cameras, start, present_until),
        followed_to=followed_to,
    )
    return score(k, ctx.kpi)


def report_scopes(ctx: ApiContext, who: Principal) -> list[Scope]:
    """Every agency and kecamatan (and the kota) the caller may see, for the monthly report."""
    scopes = [Scope(ScopeKind.KOTA, ctx.geo.index.zones.kota.id)] if who.kecamatan is None else []
    scopes += [
        Scope(ScopeKind.AGENCY, a)
        for a in sorted(ctx.city.agencies)
        if who.agency is None or who.agency == a
    ]
    scopes += [
        Scope(ScopeKind.KECAMATAN, k.id)
        for k in ctx.geo.index.zones.kecamatan
        if who.kecamatan is None or k.id in who.kecamatan
    ]
    return scopes


def kpi_lines(rows: Iterable[tuple[Scope, str, Kpis]]) -> list[str]:
    """Line protocol: measurement `kpi`, tags scope/id/period, one field per KPI,
    timestamped at the period's start (a re-run overwrites the same point)."""
    lines = []
    for scope, period, k in rows:
        fields: dict[str, float] = {
            "incidents": k.incidents,
            "backlog": k.backlog,
            "sla_met": k.sla_met,
            "sla_missed": k.sla_missed,
            "satisfaction_ratings": k.satisfaction_ratings,
        }
        fields.update({n: v for n, v in scored_values(k).items() if v is not None})
        if k.score is not None:
            fields["score"] = k.score
        for stat_name, s in (
            ("ack_minutes_p90", k.ack_minutes.p90),
            ("resolve_minutes_p90", k.resolve_minutes.p90),
            ("detection_delay_minutes_p90", k.detection_delay_minutes.p90),
        ):
            if s is not None:
                fields[stat_name] = s
        body = ",".join(f"{n}={float(v)!r}" for n, v in sorted(fields.items()))
        tags = f"id={tag_value(scope.id)},period={tag_value(period)},scope={scope.kind.value}"
        lines.append(f"kpi,{tags} {body} {int(k.start.timestamp() * 1000)}")
    return lines


def publish(ctx: ApiContext, rows: Sequence[tuple[Scope, str, Kpis]]) -> int:
    """Write the KPI series to InfluxDB; the number of points."""
    lines = kpi_lines(rows)
    writer = make_writer(ctx.settings.influx)
    try:
        writer.write(lines)
    except (WriteRejected, WriteUnavailable) as err:
        raise InfluxQLError("write kpi", str(err)) from err
    finally:
        writer.close()
    return len(lines)
