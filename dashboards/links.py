"""Drill-down links: from a map marker or a table row to the station, the zone and the
incident, keeping the time range and the zone variables.

The incident opens on the API's operations page (`/app/ops/incidents/{id}`); where the
API lives is the hidden text variable `api`, whose default suits docker-compose
(Grafana on :3000, the API on :8000 of the same host). A deployment sets its own by
changing the default in Grafana or with `?var-api=https://...` in the wall's URL.
"""

from __future__ import annotations

from typing import Any

from dashboards.model import TextVariable

API = TextVariable(name="api", label="Alamat API Pantau", default="http://localhost:8000")

# Grafana's link macros: the dashboard's time range and a variable as ?var-x=... pairs.
TIME = "${__url_time_range}"
ZONES = "${kecamatan:queryparam}&${kelurahan:queryparam}&${agency:queryparam}"


def incident(field: str = "id") -> dict[str, Any]:
    return {
        "title": "Buka insiden #${__data.fields." + field + "} (halaman operasi)",
        "url": "${api}/app/ops/incidents/${__data.fields." + field + "}",
        "targetBlank": True,
    }


def station(field: str = "device") -> dict[str, Any]:
    return {
        "title": "Stasiun ${__data.fields." + field + "}: tinggi air dan batas Siaga",
        "url": f"/d/pantau-drainage/?var-station=${{__data.fields.{field}}}&{ZONES}&{TIME}",
    }


def kecamatan(field: str = "kecamatan") -> dict[str, Any]:
    """The wall narrowed to the row's kecamatan (its id is in `field`)."""
    return {
        "title": "Kecamatan ini di layar kota",
        "url": f"/d/pantau-city-overview/?var-kecamatan=${{__data.fields.{field}}}&{TIME}",
    }
