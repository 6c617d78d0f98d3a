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
