"""Query pieces every dashboard shares: the zone/agency filter on InfluxDB tags, and the
city's zones as a SQL table for the incident panels.

Readings carry `agency, device, kecamatan, kelurahan, kind` tags (pantau/influx/lineprotocol.py).
Incidents in SQL only carry a `zone_id` (kota, kecamatan or kelurahan) and `agency`, and
the incident store has no zones table, so the generated SQL brings the hierarchy from
config as a VALUES list: the committed JSON is rebuilt (and checked stale) when config
changes.
"""

from __future__ import annotations

from dashboards.model import InfluxQuery
from pantau.city import City
from pantau.store.models import ACTIVE_WHERE
from pantau.zones import ZoneLevel

# Template variables (dashboards/variables.py) used in regexes: Grafana turns a
# multi-value or All selection into (a|b|c).
ZONE_TAGS = '"kecamatan" =~ /^$kecamatan$/ AND "kelurahan" =~ /^$kelurahan$/'
TAGS = f'{ZONE_TAGS} AND "agency" =~ /^$agency$/'

ACTIVE = ACTIVE_WHERE  # incidents not yet resolved or closed


def series(
    measurement: str,
    *,
    by: str | tuple[str, ...] = "device",
    agg: str = "mean",
    where: str = TAGS,
    fill: str = "none",
    ref_id: str = "A",
    field: str = "value",
) -> InfluxQuery:
    """One series per `by` tag of `measurement`, aggregated per Grafana interval."""
    tags = (by,) if isinstance(by, str) else by
    group = ", ".join(f'"{t}"' for t in tags)
    query = (
        f'SELECT {agg}("{field}") FROM "{measurement}" WHERE $timeFilter AND {where} '
        f"GROUP BY time($__interval), {group} fill({fill})"
    )
    return InfluxQuery(ref_id=ref_id, query=query, alias=" ".join(f"$tag_{t}" for t in tags))


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


def incidents_sql(city: City, select: str, *, where: str = "", tail: str = "") -> str:
    """SELECT `select` over incidents `i` joined to their zone `z`, filtered by the
    template variables (and `where`), then `tail` (GROUP BY / ORDER BY / LIMIT)."""
    extra = f" AND {where}" if where else ""
    return (
        f"{zones_cte(city)}SELECT {select}\nFROM incidents i JOIN zones z ON z.id = i.zone_id\n"
        f"WHERE {INCIDENT_FILTER}{extra}\n{tail}"
    ).rstrip()


def _sql_literal(value: str | float) -> str:
    if isinstance(value, float):
        return f"{value:.6f}"
    return "'" + value.replace("'", "''") + "'"
