"""Traffic and roads: flow, speed and occupancy on the counters, road-surface condition,
and the traffic and road-damage incidents."""

from __future__ import annotations

from dashboards.model import Dashboard, Panel, SqlQuery
from dashboards.queries import ACTIVE, incidents_sql, series
from dashboards.variables import zone_variables
from pantau.city import City


def build(city: City) -> Dashboard:
    flow = Panel(
        title="Traffic flow per kecamatan (mean of its counters)",
        type="timeseries",
        targets=(series("traffic_flow", by="kecamatan", agg="mean"),),
        unit="suffix: veh/h",
        description="Mean vehicles per hour of the counters in each kecamatan.",
    )
    speed = Panel(
        title="Mean speed per counter",
        type="timeseries",
        targets=(series("speed"),),
        unit="velocitykmh",
        thresholds=((None, "red"), (15.0, "orange"), (30.0, "green")),
        custom={"thresholdsStyle": {"mode": "dashed"}},
    )
    slowest = Panel(
        title="Slowest counters now",
        type="bargauge",
        targets=(series("speed", agg="last", fill="none"),),
        unit="velocitykmh",
        min=0,
        max=80,
        thresholds=((None, "red"), (15.0, "orange"), (30.0, "green")),
        options={
            "reduceOptions": {"calcs": ["lastNotNull"], "limit": 15},
            "orientation": "horizontal",
        },
    )
    occupancy = Panel(
        title="Detector occupancy",
        type="timeseries",
        targets=(series("occupancy"),),
        unit="percent",
        min=0,
        max=100,
    )
    roughness = Panel(
        title="Road roughness (IRI, m/km)",
        type="timeseries",
        targets=(series("road_roughness"),),
        thresholds=((None, "green"), (8.0, "orange"), (12.0, "red")),
    )
    potholes = Panel(
        title="Pothole index",
        type="timeseries",
        targets=(series("pothole_index"),),
        unit="percentunit",
        min=0,
        max=1,
    )
    incidents = Panel(
        title="Traffic and road incidents",
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
        width=24,
    )
    return Dashboard(
        uid="pantau-traffic",
        title="Pantau · Traffic and roads",
        description="Flow, speed and occupancy on the counters; road-surface condition.",
        panels=(flow, speed, slowest, occupancy, roughness, potholes, incidents),
        variables=zone_variables(city),
        tags=("pantau", "traffic"),
    )
