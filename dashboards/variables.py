"""The template variables every zoned Pantau dashboard offers: kecamatan, kelurahan
(within the chosen kecamatan), agency.

Kecamatan and agencies are custom lists from config (names shown, ids sent), so an
agency that owns no sensor (Diskominfo: cameras) is still there; kelurahan come from
the zone table in SQL so they follow the kecamatan chosen. The ids are the ones
readings carry as tags and incidents carry in SQL.
"""

from __future__ import annotations

from dashboards.model import POSTGRES, Variable
from dashboards.queries import zones_cte
from pantau.city import City
from pantau.influx import level_table


def kecamatan(city: City) -> Variable:
    options = tuple(sorted((z.name, z.id) for z in city.zones.kecamatan))
    return Variable(name="kecamatan", label="Kecamatan", options=options)


def kelurahan(city: City) -> Variable:
    return Variable(
        name="kelurahan",
        label="Kelurahan",
        datasource=POSTGRES,
        query=f"{zones_cte(city)}SELECT kelurahan AS __value, name AS __text FROM zones\n"
        "WHERE level = 'kelurahan' AND kecamatan IN ($kecamatan) ORDER BY name",
    )


def agency(city: City) -> Variable:
    options = tuple(sorted((a.short, a.id) for a in city.agencies.values()))
    return Variable(name="agency", label="Dinas", options=options)


def zone_variables(city: City) -> tuple[Variable, Variable, Variable]:
    return kecamatan(city), kelurahan(city), agency(city)


def level_variables(*names: str) -> tuple[Variable, ...]:
    """Hidden variables naming the level (raw, 5-minute, hourly) that fits the range,
    from Pantau's level table (pantau/influx/level_table.py): `rp` and `rp_window` by
    default; `rp_bucket` for the "no data" timelines.
    Refreshed on every change of the time range."""
    return tuple(
        Variable(
            name=name,
            label=name,
            query=level_table.variable_query(name),
            multi=False,
            include_all=False,
            hidden=True,
        )
        for name in names or ("rp", "rp_window")
    )
