"""Traffic and roads: flow, speed and occupancy on the counters, road-surface condition,
and the traffic and road-damage incidents."""

from __future__ import annotations

from dashboards import labels, links
from dashboards.model import Dashboard, InfluxQuery, Panel, SqlQuery
from dashboards.queries import (
    ACTIVE,
    NOW_WINDOW,
    TAGS,
    WINDOW,
    incident_annotations,
    incidents_sql,
    series,
)
from dashboards.variables import level_variables, zone_variables
from pantau.city import City


def build(city: City) -> Dashboard:
    flow = Panel(
        title="Arus lalu lintas per kecamatan (rata-rata penghitungnya)",
        type="timeseries",
        targets=series("traffic_flow", by="kecamatan", agg="mean"),
        interval=WINDOW,
        unit="suffix:kend/jam",
        description="Rata-rata kendaraan per jam dari penghitung di tiap kecamatan.",
    )
    speed = Panel(
        title="Kecepatan rata-rata per penghitung",
        type="timeseries",
        targets=series("speed"),
        interval=WINDOW,
        unit="velocitykmh",
        thresholds=((None, "red"), (15.0, "orange"), (30.0, "green")),
        custom={"thresholdsStyle": {"mode": "dashed"}},
    )
    slowest = Panel(
        title="15 penghitung paling lambat sekarang",
        type="bargauge",
        targets=(
            InfluxQuery(
                query='SELECT last("value") AS "speed" FROM "speed" '
                f'WHERE {NOW_WINDOW} AND {TAGS} GROUP BY "device"',
                result_format="table",
            ),
        ),
        # Grafana keeps rows in query order; sort by speed, then keep the first 15.
        transformations=(
            {"id": "sortBy", "options": {"sort": [{"field": "speed", "desc": False}]}},
            {"id": "limit", "options": {"limitField": 15}},
        ),
        unit="velocitykmh",
        min=0,
        max=80,
        thresholds=((None, "red"), (15.0, "orange"), (30.0, "green")),
        options={
            "reduceOptions": {"values": True, "calcs": [], "fields": "/^speed$/"},
            "orientation": "horizontal",
            "displayMode": "basic",
        },
        description="Kecepatan terakhir (10 menit) tiap penghitung, yang paling lambat di atas.",
    )
    occupancy = Panel(
        title="Okupansi detektor",
        type="timeseries",
        targets=series("occupancy"),
        interval=WINDOW,
        unit="percent",
        min=0,
        max=100,
    )
    roughness = Panel(
        title="Kekasaran jalan (IRI, m/km)",
        type="timeseries",
        targets=series("road_roughness"),
        interval=WINDOW,
        thresholds=((None, "green"), (8.0, "orange"), (12.0, "red")),
    )
    potholes = Panel(
        title="Indeks lubang jalan",
        type="timeseries",
        targets=series("pothole_index"),
        interval=WINDOW,
        unit="percentunit",
        min=0,
        max=1,
    )
    incidents = Panel(
        title="Insiden lalu lintas dan jalan",
        type="table",
        targets=(
            SqlQuery(
                sql=incidents_sql(
                    city,
                    "i.id, i.hazard, i.severity_current AS severity, z.name AS zone,"
                    " i.evidence_peak_value AS peak, i.opened_at, i.workflow_state AS workflow,"
                    f" ({ACTIVE}) AS active",
                    where="i.hazard IN ('traffic_jam', 'road_damage')"
                    " AND $__timeFilter(i.opened_at)",
                    tail="ORDER BY i.opened_at DESC",
                )
            ),
        ),
        overrides=(*labels.incident_columns(), labels.column("active", "Aktif")),
        width=24,
    )
    return Dashboard(
        uid="pantau-traffic",
        title="Pantau · Lalu lintas dan jalan",
        description="Arus, kecepatan dan okupansi penghitung; kondisi permukaan jalan.",
        panels=(flow, speed, slowest, occupancy, roughness, potholes, incidents),
        timezone=city.facts.time_zone.key,
        variables=(*zone_variables(city), links.API, *level_variables()),
        annotations=(incident_annotations(city, ("traffic_jam", "road_damage")),),
        tags=("pantau", "traffic"),
    )
