"""Drainase dan banjir: each water-level station against its own Siaga levels, the
stations now (worst first), rain as the rules judge it, flow, pumps and gates with
silence shown as such, and the flood incidents."""

from __future__ import annotations

from dataclasses import replace

from dashboards import labels, links, rain, siaga
from dashboards.model import Dashboard, Panel, SqlQuery, Variable
from dashboards.queries import (
    ACTIVE,
    BUCKET,
    WINDOW,
    ZONE_TAGS,
    incident_annotations,
    incidents_sql,
    series,
)
from dashboards.variables import level_variables, zone_variables
from pantau.city import City
from pantau.incidents import Severity

FLOOD_HAZARDS = ("flood", "pump_failure", "heavy_rain")
STATION_ONLY = "\"kind\" = 'water_level_station'"

STATION = Variable(
    name="station",
    label="Stasiun tinggi air",
    # Pumps and gates report a water level too, but only stations have Siaga levels.
    query='SHOW TAG VALUES FROM "water_level" WITH KEY = "device" '
    f"WHERE {STATION_ONLY} AND {ZONE_TAGS}",
    include_all=False,
)

SIAGA_II = "Siaga II (Waspada)"
SIAGA_I = "Siaga I (Awas)"

# Pumps and gates report every 60 s: a 5-minute bucket without a report means silence
# (BUCKET: 5 minutes, or the window of the level a long range reads).


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
        f'SELECT t.time, s.alert_cm AS "{SIAGA_II}", s.danger_cm AS "{SIAGA_I}"\n'
        f"FROM (VALUES\n    {values}) AS s(device, alert_cm, danger_cm)\n"
        "CROSS JOIN (VALUES ($__timeFrom()::timestamptz), ($__timeTo()::timestamptz))"
        " AS t(time)\n"
        "WHERE s.device IN ($station)\nORDER BY t.time"
    )
    return SqlQuery(ref_id="B", sql=sql, format="time_series")


def _line(name: str, severity: Severity) -> labels.JSON:
    colour = labels.SEVERITY[severity][1]
    return labels.by_name(
        name,
        ("color", {"mode": "fixed", "fixedColor": colour}),
        ("custom.lineStyle", {"fill": "dash", "dash": [10, 10]}),
    )


def _timeline(title: str, measurement: str, states: dict[str, tuple[str, str]]) -> Panel:
    """Per device, its state per 5-minute bucket; an empty bucket is grey "no data"."""
    return Panel(
        title=title,
        type="state-timeline",
        targets=series(measurement, agg="max", fill="null"),
        interval=BUCKET,
        mappings=(labels.value_map(states), labels.NO_DATA),
        options={"showValue": "never", "mergeValues": True, "rowHeight": 0.8},
        width=12,
        height=8,
    )


def build(city: City) -> Dashboard:
    station = Panel(
        title="$station: tinggi air terhadap batas Siaga-nya",
        type="timeseries",
        targets=(
            *series("water_level", where='"device" =~ /^$station$/', fill="none"),
            siaga_lines(city),
        ),
        width=24,
        height=9,
        unit="lengthcm",
        interval=WINDOW,
        repeat="station",
        custom={"lineWidth": 2},
        overrides=(_line(SIAGA_II, Severity.WASPADA), _line(SIAGA_I, Severity.AWAS)),
    )
    now = replace(siaga.stations_table(city), width=8, height=12)
    levels = Panel(
        title="Tinggi air stasiun",
        type="timeseries",
        targets=series("water_level", where=f"{STATION_ONLY} AND {ZONE_TAGS}"),
        interval=WINDOW,
        unit="lengthcm",
        width=16,
        height=12,
        options={"legend": {"showLegend": False}, "tooltip": {"mode": "multi", "sort": "desc"}},
        description="Stasiun tinggi air di zona terpilih (cm di atas dasar saluran); pilih "
        "satu kecamatan untuk sedikit garis, atau lihat tabel Stasiun vs Siaga.",
    )
    rain_now = rain.panel("device", legend=False)
    flow = Panel(
        title="Debit per alat ukur",
        type="timeseries",
        targets=series("flow"),
        interval=WINDOW,
        unit="flowcms",  # m3/s
        options={"legend": {"showLegend": False}},
    )
    pumps = _timeline(
        "Pompa (per 5 menit; abu-abu: tidak ada data)",
        "pump_running",
        {"0": ("Berhenti", "blue"), "1": ("Jalan", "green")},
    )
    gates = Panel(
        title="Bukaan pintu air (per 5 menit; putus: tidak ada data)",
        type="timeseries",
        targets=series("gate_opening", agg="last", fill="null"),
        interval=BUCKET,
        unit="percent",
        min=0,
        max=100,
        custom={"spanNulls": False},
        options={"legend": {"showLegend": False}},
    )
    incidents = Panel(
        title="Insiden banjir, hujan dan pompa (aktif)",
        type="table",
        targets=(
            SqlQuery(
                sql=incidents_sql(
                    city,
                    "i.id, i.severity_current AS severity, i.hazard, z.name AS zone,"
                    " i.evidence_device_ids AS devices, i.evidence_peak_value AS peak,"
                    " i.opened_at, i.workflow_state AS workflow",
                    where=f"i.hazard IN ('flood', 'pump_failure', 'heavy_rain') AND {ACTIVE}",
                    tail="ORDER BY i.severity_current DESC, i.opened_at",
                )
            ),
        ),
        overrides=labels.incident_columns(),
        width=24,
    )
    return Dashboard(
        uid="pantau-drainage",
        title="Pantau · Drainase dan banjir",
        description="Tinggi air terhadap batas Siaga tiap stasiun, hujan, debit, pompa dan "
        "pintu air, insiden banjir.",
        panels=(station, now, levels, rain_now, flow, pumps, gates, incidents),
        timezone=city.facts.time_zone.key,
        variables=(
            *zone_variables(city),
            STATION,
            links.API,
            *level_variables("rp", "rp_window", "rp_bucket"),
        ),
        annotations=(incident_annotations(city, FLOOD_HAZARDS),),
        tags=("pantau", "drainage", "flood"),
    )
