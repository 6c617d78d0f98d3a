"""Query pieces every dashboard shares: the zone/agency filter on InfluxDB tags, and the
city's zones as a SQL table for the incident panels.

Readings carry `agency, device, kecamatan, kelurahan, kind` tags (pantau/influx/lineprotocol.py).
Incidents in SQL only carry a `zone_id` (kota, kecamatan or kelurahan) and `agency`, and
the incident store has no zones table, so the generated SQL brings the hierarchy from
config as a VALUES list: the committed JSON is rebuilt (and checked stale) when config
changes.
"""

from __future__ import annotations

from collections.abc import Mapping

from dashboards import labels
from dashboards.model import Annotation, InfluxQuery, SqlQuery
from pantau.cameras import load_cameras
from pantau.city import City
from pantau.store.models import ACTIVE_WHERE
from pantau.zones import ZoneLevel

# Template variables (dashboards/variables.py) used in regexes: Grafana turns a
# multi-value or All selection into (a|b|c).
ZONE_TAGS = '"kecamatan" =~ /^$kecamatan$/ AND "kelurahan" =~ /^$kelurahan$/'
TAGS = f'{ZONE_TAGS} AND "agency" =~ /^$agency$/'

ACTIVE = ACTIVE_WHERE  # incidents not yet resolved or closed


# The level a panel reads (pantau/influx/level_table.py): hidden variables resolved from
# the dashboard's range. Panels that read `series` set `interval=WINDOW` (or BUCKET).
RP = "$rp"
WINDOW = "$rp_window"  # the level's window: a bucket is never finer than the data
BUCKET = "$rp_bucket"  # 5 minutes or the level's window: an empty bucket means silence
# Raw aggregate -> the same over aggregate points (fields min, max, mean, count, sum).
# A mean is weighted by count; `last` of aggregates is the last window's mean.
FROM_AGGREGATES = {
    "mean": 'sum("sum") / sum("count")',
    "max": 'max("max")',
    "min": 'min("min")',
    "count": 'sum("count")',
    "sum": 'sum("sum")',
    "last": 'last("mean")',
}
AGG_SUFFIX = "_agg"  # ref id of a target's aggregate twin: "A" and "A_agg"


def series(
    measurement: str,
    *,
    by: str | tuple[str, ...] = "device",
    agg: str = "mean",
    where: str = TAGS,
    fill: str = "none",
    ref_id: str = "A",
) -> tuple[InfluxQuery, InfluxQuery]:
    """One series per `by` tag of `measurement`, aggregated per Grafana interval, from the
    level `$rp` the range picks: two targets of one alias, the raw one (field `value`) and
    its aggregate twin (fields min/max/...); only the one that matches `$rp` has data."""
    tags = (by,) if isinstance(by, str) else by
    group = ", ".join(f'"{t}"' for t in tags)
    alias = " ".join(f"$tag_{t}" for t in tags)

    def target(select: str, ref: str) -> InfluxQuery:
        query = (
            f'SELECT {select} FROM "{RP}"."{measurement}" WHERE $timeFilter AND {where} '
            f"GROUP BY time($__interval), {group} fill({fill})"
        )
        return InfluxQuery(ref_id=ref, query=query, alias=alias)

    return (
        target(f'{agg}("value")', ref_id),
        target(FROM_AGGREGATES[agg], ref_id + AGG_SUFFIX),
    )


def zones_cte(city: City) -> str:
    """`zones(id, name, level, kecamatan, kecamatan_name, kelurahan, lat, lon)`: every
    zone of the city with its place in the hierarchy and a point inside it for the map.
    Kota-level rows have an empty kecamatan, kecamatan rows an empty kelurahan."""
    zs = city.zones
    by_id = zs.by_id()
    rows: list[tuple[str, str, str, str, str, str, float, float]] = []
    for zone in (*zs.kelurahan, *zs.kecamatan, zs.kota):
        if zone.level is ZoneLevel.KELURAHAN:
            kec = by_id[zone.parent_id] if zone.parent_id else None
            kec_id, kec_name, kel_id = (kec.id, kec.name, zone.id) if kec else ("", "", "")
        elif zone.level is ZoneLevel.KECAMATAN:
            kec_id, kec_name, kel_id = zone.id, zone.name, ""
        else:
            kec_id, kec_name, kel_id = "", "", ""
        point = zone.geometry.representative_point()
        rows.append(
            (zone.id, zone.name, zone.level.value, kec_id, kec_name, kel_id, point.y, point.x)
        )
    values = ",\n    ".join("({})".format(", ".join(_sql_literal(v) for v in row)) for row in rows)
    return (
        "WITH zones(id, name, level, kecamatan, kecamatan_name, kelurahan, lat, lon) AS "
        f"(VALUES\n    {values})\n"
    )


# Incidents of the selected zones and agencies; kota-wide incidents always show, and
# kecamatan-wide ones whatever kelurahan is selected.
INCIDENT_FILTER = (
    "(z.kecamatan IN ($kecamatan) OR z.kecamatan = '')"
    " AND (z.kelurahan IN ($kelurahan) OR z.kelurahan = '')"
    " AND i.agency IN ($agency)"
)


def incidents_sql(
    city: City, select: str, *, where: str = "", tail: str = "", join: str = ""
) -> str:
    """SELECT `select` over incidents `i` joined to their zone `z` (and `join`), filtered
    by the template variables (and `where`), then `tail` (GROUP BY / ORDER BY / LIMIT)."""
    extra = f" AND {where}" if where else ""
    also = f" {join}" if join else ""
    return (
        f"{zones_cte(city)}SELECT {select}\nFROM incidents i JOIN zones z ON z.id = i.zone_id"
        f"{also}\nWHERE {INCIDENT_FILTER}{extra}\n{tail}"
    ).rstrip()


# Devices in the selected zones and agencies (the registry CTEs below carry the same ids).
DEVICE_FILTER = (
    "d.kecamatan IN ($kecamatan) AND d.kelurahan IN ($kelurahan) AND d.agency IN ($agency)"
)

# How recent a reading must be to count as "now": five report intervals of the 60 s
# kinds (config/catalogue.yaml), so one lost message does not turn a device grey.
FRESH = "10m"
# InfluxQL: the freshness window ending at the dashboard's end (now, on a live wall).
NOW_WINDOW = f"time > ${{__to}}ms - {FRESH} AND time <= ${{__to}}ms"


def stations_cte(city: City) -> str:
    """`stations(device, name, kecamatan, kecamatan_name, kelurahan, agency, lat, lon,
    alert_cm, danger_cm, inv_band, offset)`: every water-level station with Siaga levels.

    The levels live in the registry (config/devices.yaml), not in InfluxDB. A panel joins
    these rows to the stations' readings and computes the *Siaga index*
    `(level - alert) / (danger - alert)` = `level * inv_band + offset`: below 0 normal,
    0 at Siaga II (Waspada), 1 at Siaga I (Awas), whatever the station's own levels."""
    kecamatan = {z.id: z.name for z in city.zones.kecamatan}
    rows = []
    for d in sorted(city.devices.values(), key=lambda d: d.id):
        if d.levels is None:
            continue
        band = d.levels.danger_cm - d.levels.alert_cm
        row = (
            d.id,
            d.name,
            d.kecamatan_id,
            kecamatan.get(d.kecamatan_id, ""),
            d.kelurahan_id,
            d.agency,
            d.lat,
            d.lon,
            d.levels.alert_cm,
            d.levels.danger_cm,
            1.0 / band,
            -d.levels.alert_cm / band,
        )
        rows.append("(" + ", ".join(_sql_literal(v) for v in row) + ")")
    return (
        "WITH stations(device, name, kecamatan, kecamatan_name, kelurahan, agency, lat, lon,"
        ' alert_cm, danger_cm, inv_band, "offset") AS (VALUES\n    ' + ",\n    ".join(rows) + ")\n"
    )


def devices_cte(city: City, kinds: Mapping[str, str]) -> str:
    """`devices(device, name, kind, kecamatan, kecamatan_name, kelurahan, agency)`: the
    registered devices of `kinds` (a device kind, or "camera" for config/cameras.yaml),
    each kind shown by its label."""
    kecamatan = {z.id: z.name for z in city.zones.kecamatan}
    found = [
        (d.id, d.name, kinds[d.kind], d.kecamatan_id, d.kelurahan_id, d.agency)
        for d in city.devices.values()
        if d.kind in kinds
    ]
    if "camera" in kinds:
        found += [
            (c.id, c.name, kinds["camera"], c.kecamatan_id, c.kelurahan_id, c.agency)
            for c in load_cameras(city).values()
        ]
    rows = [
        "("
        + ", ".join(_sql_literal(v) for v in (dev, name, kind, kec, kecamatan[kec], kel, agency))
        + ")"
        for dev, name, kind, kec, kel, agency in sorted(found)
    ]
    return (
        "WITH devices(device, name, kind, kecamatan, kecamatan_name, kelurahan, agency) AS"
        " (VALUES\n    " + ",\n    ".join(rows) + ")\n"
    )


def _sql_literal(value: str | float) -> str:
    if isinstance(value, float):
        return f"{value:.6f}"
    return "'" + value.replace("'", "''") + "'"


def incident_annotations(
    city: City, hazards: tuple[str, ...] = (), *, zones: str = INCIDENT_FILTER
) -> Annotation:
    """Incidents (at Waspada or worse) that overlap the time range, from opening to
    resolution, on every time series of a dashboard. `zones`: the filter on the
    dashboard's variables (INCIDENT_FILTER: kecamatan, kelurahan, agency; "TRUE": all)."""
    where = (
        "i.severity_max >= 2 AND i.opened_at <= $__timeTo()"
        " AND COALESCE(i.resolved_at, i.closed_at, $__timeTo()) >= $__timeFrom()"
    )
    if hazards:
        where += " AND i.hazard IN ({})".format(", ".join(_sql_literal(h) for h in hazards))
    sql = incidents_sql(
        city,
        "i.opened_at AS time, COALESCE(i.resolved_at, i.closed_at) AS timeend,"
        f" '#' || i.id || ' ' || {labels.HAZARD_SQL} || ' ' || {labels.SEVERITY_SQL}"
        " || ' - ' || z.name AS text, i.hazard AS tags",
        where=where,
        tail="ORDER BY i.opened_at",
    )
    if zones != INCIDENT_FILTER:
        sql = sql.replace(f"WHERE {INCIDENT_FILTER}", f"WHERE {zones}")
    return Annotation(name="Insiden", query=SqlQuery(ref_id="Anno", sql=sql), color="red")
