"""Drainage and flood: water level per station against its Siaga levels, rainfall, flow,
pumps and gates, and the flood incidents."""

from __future__ import annotations

from dashboards.model import Dashboard, Panel, SqlQuery, Variable
from dashboards.queries import ACTIVE, ZONE_TAGS, incidents_sql, series
from dashboards.variables import zone_variables
from pantau.city import City

STATION = Variable(
    name="station",
    label="Water-level station",
    # Pumps and gates report a water level too, but only stations have Siaga levels.
    query='SHOW TAG VALUES FROM "water_level" WITH KEY = "device" '
    f"WHERE \"kind\" = 'water_level_station' AND {ZONE_TAGS}",
    include_all=False,
)


def siaga_lines(city: City) -> SqlQuery:
    """The selected station's Siaga levels as two flat lines across the time range.

    The levels live in the device registry (config/devices.yaml), not in InfluxDB, so
    they come into the generated SQL as a VALUES list; the panel mixes them with the
    station's readings."""
    values = ",\n    ".join(
        f"('{d.id}', {d.levels.alert_cm:.1f}, {d.levels.danger_cm:.1f})"
        for d in sorted(city.devices.values(), key=lambda d: d.id)
        if d.levels is not None
    )
    sql = (
        'SELECT t.time, s.alert_cm AS "Siaga II (waspada)", s.danger_cm AS "Siaga I (awas)"\n'
        f"FROM (VALUES\n    {values}) AS s(device, alert_cm, danger_cm)\n"
        "CROSS JOIN (VALUES ($__timeFrom()::timestamptz), ($__timeTo()::timestamptz))"
        " AS t(time)\n"
        "WHERE s.device IN ($station)\nORDER BY t.time"
    )
    return SqlQuery(ref_id="B", sql=sql, format="time_series")


def build(city: City) -> Dashboard:
    station = Panel(
        title="$station: water level against its Siaga levels",
        type="timeseries",
        targets=(
            series("water_level", where='"device" =~ /^$station$/', fill="none"),
            siaga_lines(city),
        ),
        width=24,
        height=9,
        unit="lengthcm",
        repeat="station",
        custom={"lineWidth": 2},
    )
    levels = Panel(
        title="Water level per station",
        type="timeseries",
        targets=(series("water_level"),),
        unit="lengthcm",
        description="Each water-level station in the selected zones (cm above channel bed).",
    )
    rain = Panel(
        title="Rainfall per gauge",
        type="timeseries",
        targets=(series("rainfall_rate"),),
        unit="suffix: mm/h",
        custom={"drawStyle": "bars", "fillOpacity": 60},
    )
    flow = Panel(
        title="Flow per meter",
        type="timeseries",
        targets=(series("flow"),),
        unit="flowcms",  # m3/s
    )
    pumps = Panel(
        title="Pumps running",
        type="state-timeline",
        targets=(series("pump_running", agg="last", fill="previous"),),
        mappings=(
            {
                "type": "value",
                "options": {
                    "0": {"text": "stopped", "color": "red"},
                    "1": {"text": "running", "color": "green"},
                },
            },
        ),
        options={"showValue": "never", "mergeValues": True},
    )
    gates = Panel(
        title="Flood gate opening",
        type="timeseries",
        targets=(series("gate_opening", agg="last", fill="previous"),),
        unit="percent",
        min=0,
        max=100,
    )
    incidents = Panel(
        title="Flood and pump incidents (active)",
        type="table",
        targets=(
            SqlQuery(
                sql=incidents_sql(
                    city,
                    "i.id, i.hazard, i.severity_current AS severity, z.name AS zone,"
                    " i.evidence_device_ids AS devices, i.evidence_peak_value AS peak,"
                    " i.opened_at, i.workflow_state AS workflow",
                    where=f"i.hazard IN ('flood', 'pump_failure', 'heavy_rain') AND {ACTIVE}",
                    tail="ORDER BY i.severity_current DESC, i.opened_at",
                )
            ),
        ),
    )
    return Dashboard(
        uid="pantau-drainage",
        title="Pantau · Drainage and flood",
        description="Water levels against Siaga levels, rainfall, flow, pumps and gates.",
        panels=(station, levels, rain, flow, pumps, gates, incidents),
        variables=(*zone_variables(city), STATION),
        tags=("pantau", "drainage", "flood"),
    )
