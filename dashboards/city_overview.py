"""City overview: the map of the city with active incidents, incidents per kecamatan,
rainfall and drain levels. The map's centre and the city's name are config/city.yaml's."""

from __future__ import annotations

from dashboards.model import Dashboard, Panel, SqlQuery
from dashboards.queries import ACTIVE, incidents_sql, series
from dashboards.variables import zone_variables
from pantau.city import City

# Served by Grafana itself: docker-compose mounts config/zones/kelurahan.geojson here.
KELURAHAN_GEOJSON = "public/maps/pantau-kelurahan.geojson"

SEVERITY_COLOURS = (
    (None, "blue"),  # 1 info
    (2.0, "yellow"),  # waspada
    (3.0, "orange"),  # siaga
    (4.0, "red"),  # awas
)


def active_incident_rows(city: City) -> SqlQuery:
    return SqlQuery(
        sql=incidents_sql(
            city,
            "i.id, i.hazard, i.severity_current AS severity, i.workflow_state AS workflow,"
            " z.name AS zone, z.kecamatan_name AS kecamatan, i.agency, i.opened_at,"
            " z.lat, z.lon",
            where=ACTIVE,
            tail="ORDER BY i.severity_current DESC, i.opened_at DESC",
        )
    )


def build(city: City) -> Dashboard:
    incident_map = Panel(
        title="Kelurahan and active incidents",
        type="geomap",
        targets=(active_incident_rows(city),),
        width=14,
        height=16,
        thresholds=SEVERITY_COLOURS,
        options={
            "view": {"id": "coords", **city.facts.map.model_dump()},
            "controls": {"showZoom": True, "mouseWheelZoom": True, "showScale": True},
            "basemap": {"type": "default", "name": "Basemap"},
            "layers": [
                {
                    "type": "geojson",
                    "name": "Kelurahan",
                    "config": {
                        "src": KELURAHAN_GEOJSON,
                        "style": {"color": {"fixed": "#5794F2"}, "opacity": 0.15},
                        "rules": [],
                    },
                },
                {
                    "type": "markers",
                    "name": "Active incidents",
                    "location": {"mode": "coords", "latitude": "lat", "longitude": "lon"},
                    "config": {
                        "showLegend": True,
                        "style": {
                            "size": {"field": "severity", "fixed": 8, "min": 6, "max": 18},
                            "color": {"field": "severity", "fixed": "red"},
                            "symbol": {"fixed": "img/icons/marker/circle.svg", "mode": "fixed"},
                        },
                    },
                    "tooltip": True,
                },
            ],
        },
    )
    active = Panel(
        title="Active incidents",
        type="stat",
        targets=(SqlQuery(sql=incidents_sql(city, "count(*) AS active", where=ACTIVE)),),
        width=5,
        height=4,
        thresholds=((None, "green"), (1.0, "orange"), (10.0, "red")),
    )
    awas = Panel(
        title="Active at Awas / Siaga",
        type="stat",
        targets=(
            SqlQuery(
                sql=incidents_sql(
                    city,
                    "count(*) FILTER (WHERE i.severity_current = 4) AS awas,"
                    " count(*) FILTER (WHERE i.severity_current = 3) AS siaga",
                    where=ACTIVE,
                )
            ),
        ),
        width=5,
        height=4,
        thresholds=((None, "green"), (1.0, "red")),
    )
    per_kecamatan = Panel(
        title="Incidents opened per kecamatan",
        type="barchart",
        targets=(
            SqlQuery(
                sql=incidents_sql(
                    city,
                    "COALESCE(NULLIF(z.kecamatan_name, ''), 'Kota (city-wide)') AS kecamatan,"
                    " count(*) AS incidents",
                    where="$__timeFilter(i.opened_at)",
                    tail="GROUP BY 1 ORDER BY 2 DESC",
                )
            ),
        ),
        width=10,
        height=12,
        options={
            "orientation": "horizontal",
            "xField": "kecamatan",
            "legend": {"showLegend": False},
        },
    )
    table = Panel(
        title="Active incidents (most severe first)",
        type="table",
        targets=(active_incident_rows(city),),
        width=24,
        height=8,
    )
    rain = Panel(
        title="Rainfall per kecamatan (mean)",
        type="timeseries",
        targets=(series("rainfall_rate", by="kecamatan"),),
        unit="suffix: mm/h",
        custom={"fillOpacity": 10},
    )
    drains = Panel(
        title="Drain water level per kecamatan (highest station)",
        type="timeseries",
        targets=(series("water_level", by="kecamatan", agg="max"),),
        unit="lengthcm",
    )
    return Dashboard(
        uid="pantau-city-overview",
        title="Pantau · City overview",
        description=f"{city.facts.display_name}: active incidents on the map, "
        "incidents per kecamatan, "
        "rainfall and drain levels.",
        panels=(incident_map, active, awas, per_kecamatan, table, rain, drains),
        variables=zone_variables(city),
        tags=("pantau", "overview"),
    )
