"""Layar kota: the wall view of the operations centre (Grafana's home dashboard).

One 1080p screen (24 x 26 grid rows, every panel placed), readable from 3 m: what is
open and late, where the water stands against each station's own Siaga levels, which
pumps, gates and cameras are silent, and the rain as the rules judge it. Every row
and marker links on: station -> drainage dashboard, kecamatan -> this wall narrowed,
incident -> the operations page.
"""

from __future__ import annotations

from typing import Any

from dashboards import labels, links, rain, siaga
from dashboards.model import Dashboard, InfluxQuery, Panel, SqlQuery, at
from dashboards.queries import (
    ACTIVE,
    DEVICE_FILTER,
    NOW_WINDOW,
    TAGS,
    devices_cte,
    incident_annotations,
    incidents_sql,
)
from dashboards.variables import level_variables, zone_variables
from pantau.city import City
from pantau.incidents import Severity

# Served by Grafana itself: docker-compose mounts config/zones/kelurahan.geojson here.
KELURAHAN_GEOJSON = "public/maps/pantau-kelurahan.geojson"
WALL_ROWS = 26  # a 1080p screen holds about 27 grid rows below Grafana's header

# An incident that waits for acknowledgement past its SLA due time (the wall's "now" is
# the end of the time range).
ACK_OVERDUE = "i.acknowledged_at IS NULL AND i.sla_ack_due < $__timeTo()"
UNASSIGNED = "i.assignee_crew_id IS NULL"


def open_incidents(city: City) -> SqlQuery:
    """Active incidents, late ones first, then by severity: with the minutes left to
    acknowledge (negative: overdue), the crew and the escalation."""
    return SqlQuery(
        ref_id="C",
        sql=incidents_sql(
            city,
            "i.id, i.severity_current AS severity, i.hazard, z.name AS zone,"
            " NULLIF(z.kecamatan, '') AS kecamatan, i.workflow_state AS workflow,"
            " i.assignee_crew_id AS crew, i.escalation_level AS escalation,"
            " CASE WHEN i.acknowledged_at IS NULL THEN"
            " EXTRACT(EPOCH FROM (i.sla_ack_due - $__timeTo()::timestamptz)) / 60 END"
            " AS ack_left_min, i.opened_at, z.lat, z.lon",
            where=ACTIVE,
            tail=f"ORDER BY ({ACK_OVERDUE}) DESC, i.severity_current DESC, i.opened_at",
        ),
    )


def verified_reports(city: City) -> SqlQuery:
    """Citizen reports of the time range that back a sensor incident (corroborated) or
    whose incident staff have acknowledged: the unverified stay off the wall."""
    return SqlQuery(
        ref_id="D",
        sql=incidents_sql(
            city,
            "r.id AS report, r.category, r.received_at, r.lat, r.lon, i.id",
            where="$__timeFilter(r.received_at) AND (r.outcome = 'corroborated'"
            " OR i.workflow_state NOT IN ('open', 'suppressed'))",
            tail="ORDER BY r.received_at DESC",
            join="JOIN citizen_reports r ON r.incident_id = i.id",
        ),
    )


def _count_stat(title: str, city: City, where: str, colour: str) -> Panel:
    return Panel(
        title=title,
        type="stat",
        targets=(SqlQuery(sql=incidents_sql(city, "count(*) AS n", where=where)),),
        thresholds=((None, "green"), (1.0, colour)),
        options={"colorMode": "background", "graphMode": "none", "textMode": "value"},
    )


def _severity_stat(city: City) -> Panel:
    counts = ", ".join(
        f'count(*) FILTER (WHERE i.severity_current = {int(s)}) AS "{text}"'
        for s, (text, _) in reversed(labels.SEVERITY.items())
        if s >= Severity.WASPADA
    )
    overrides = tuple(
        labels.by_name(
            text,
            (
                "thresholds",
                {
                    "mode": "absolute",
                    "steps": [{"value": None, "color": "green"}, {"value": 1, "color": colour}],
                },
            ),
        )
        for s, (text, colour) in labels.SEVERITY.items()
        if s >= Severity.WASPADA
    )
    return Panel(
        title="Insiden aktif per tingkat",
        type="stat",
        targets=(SqlQuery(sql=incidents_sql(city, counts, where=ACTIVE)),),
        overrides=overrides,
        options={"colorMode": "background", "graphMode": "none", "textMode": "value_and_name"},
        description="Insiden yang belum selesai, tingkat Waspada ke atas (Info tidak dihitung).",
    )


def _incident_map(city: City) -> Panel:
    def markers(
        name: str, ref: str, colour: dict[str, Any], symbol: str, size: int
    ) -> dict[str, Any]:
        return {
            "type": "markers",
            "name": name,
            "filterData": {"id": "byRefId", "options": ref},
            "location": {"mode": "coords", "latitude": "lat", "longitude": "lon"},
            "config": {
                "showLegend": True,
                "style": {
                    "size": {"fixed": size},
                    "color": colour,
                    "symbol": {"fixed": f"img/icons/marker/{symbol}.svg", "mode": "fixed"},
                },
            },
            "tooltip": True,
        }

    return Panel(
        title="Peta: stasiun menurut Siaga, insiden aktif, laporan warga terverifikasi",
        type="geomap",
        targets=(
            siaga.registry(city),
            siaga.readings(),
            open_incidents(city),
            verified_reports(city),
        ),
        transformations=siaga.INDEX,
        overrides=(
            labels.by_name(
                "siaga",
                ("thresholds", labels.steps(siaga.INDEX_STEPS)),
                ("mappings", list(siaga.INDEX_MAPPINGS)),
                ("links", [links.station()]),
            ),
            labels.by_name(
                "severity",
                ("thresholds", labels.steps(labels.SEVERITY_STEPS)),
                ("mappings", [labels.SEVERITY_MAP]),
                ("links", [links.incident()]),
            ),
            labels.by_name("report", ("links", [links.incident()])),
        ),
        options={
            "view": {"id": "coords", **city.facts.map.model_dump()},
            "controls": {"showZoom": True, "mouseWheelZoom": False, "showScale": True},
            "basemap": {"type": "default", "name": "Peta dasar"},
            "layers": [
                {
                    "type": "geojson",
                    "name": "Kelurahan",
                    "config": {
                        "src": KELURAHAN_GEOJSON,
                        "style": {"color": {"fixed": "#5794F2"}, "opacity": 0.1},
                        "rules": [],
                    },
                },
                markers(
                    "Stasiun (abu-abu: tidak ada data)",
                    siaga.JOINED,
                    {"field": "siaga", "fixed": "green"},
                    "circle",
                    7,
                ),
                markers(
                    "Insiden aktif", "C", {"field": "severity", "fixed": "red"}, "triangle", 14
                ),
                markers("Laporan warga terverifikasi", "D", {"fixed": "purple"}, "star", 10),
            ],
        },
    )


# Device state codes: the kind in the tens, the state in the units; no reading in the
# freshness window = no row from InfluxDB = null after the join = "Tidak ada data".
DEVICE_KINDS = {"pump_station": "Pompa", "flood_gate": "Pintu air", "camera": "Kamera"}
DEVICE_STATES = {
    "10": ("Pompa berhenti", "text"),  # stopped on purpose in dry weather: not an alarm
    "11": ("Pompa jalan", "green"),
    "20": ("Pintu tertutup", "text"),
    "21": ("Pintu terbuka", "blue"),
    "30": ("Kamera normal", "green"),
    "31": ("Kamera gangguan", "red"),
}


def _state(ref: str, measurement: str, expr: str) -> InfluxQuery:
    return InfluxQuery(
        ref_id=ref,
        query=f'SELECT {expr} AS "state" FROM "{measurement}" WHERE {NOW_WINDOW} AND {TAGS} '
        'GROUP BY "device"',
        result_format="table",
    )


def _devices_table(city: City) -> Panel:
    registry = SqlQuery(
        ref_id="A",
        sql=f"{devices_cte(city, DEVICE_KINDS)}SELECT d.device, d.name, d.kind,"
        f" d.kecamatan, d.kecamatan_name\nFROM devices d WHERE {DEVICE_FILTER} ORDER BY d.device",
    )
    merged = "merge-B-C-D"
    return Panel(
        title="Pompa, pintu air, kamera sekarang (tanpa data di atas)",
        type="table",
        targets=(
            registry,
            _state("B", "pump_running", '10 + last("value")'),
            _state("C", "gate_opening", '20 + ceil(last("value") / 100)'),
            _state("D", "camera_fault", '30 + max("value")'),
        ),
        transformations=(
            {"id": "merge", "filter": {"id": "byRefId", "options": "/^(B|C|D)$/"}, "options": {}},
            {
                "id": "joinByField",
                "filter": {"id": "byRefId", "options": f"/^(A|{merged})$/"},
                "options": {"byField": "device", "mode": "outerTabular"},
            },
            {"id": "sortBy", "options": {"sort": [{"field": "state", "desc": False}]}},
            {
                "id": "organize",
                "options": {"excludeByName": {"Time": True}},
            },
        ),
        overrides=(
            *labels.hidden("device", "kecamatan"),
            labels.column("name", "Perangkat"),
            labels.column("kind", "Jenis"),
            labels.column("kecamatan_name", "Kecamatan", ("links", [links.kecamatan()])),
            labels.column(
                "state",
                "Keadaan",
                ("mappings", [labels.value_map(DEVICE_STATES), dict(labels.NO_DATA)]),
                ("custom.cellOptions", {"type": "color-background"}),
            ),
        ),
        options={"showHeader": True, "cellHeight": "md"},
        description="Keadaan terakhir dalam 10 menit. Pompa berhenti saat cuaca kering itu "
        "wajar; pompa berhenti saat hujan lebat menjadi insiden.",
    )


def _incident_table(city: City) -> Panel:
    return Panel(
        title="Insiden aktif: terlambat dulu, lalu paling parah",
        type="table",
        targets=(open_incidents(city),),
        transformations=(
            {
                "id": "organize",
                "options": {"excludeByName": {"lat": True, "lon": True}},
            },
        ),
        overrides=(
            *labels.hidden("kecamatan"),
            labels.column("id", "No.", ("links", [links.incident()])),
            labels.column(
                "severity",
                "Tingkat",
                ("mappings", [labels.SEVERITY_MAP]),
                ("custom.cellOptions", {"type": "color-background"}),
            ),
            labels.column("hazard", "Bahaya", ("mappings", [labels.HAZARD_MAP])),
            labels.column("zone", "Zona", ("links", [links.kecamatan()])),
            labels.column(
                "workflow",
                "Keadaan",
                ("mappings", [labels.WORKFLOW_MAP]),
                ("custom.cellOptions", {"type": "color-text"}),
            ),
            labels.column("crew", "Regu", ("mappings", [_NO_CREW])),
            labels.column("escalation", "Eskalasi", ("mappings", [labels.ESCALATION_MAP])),
            labels.column(
                "ack_left_min",
                "Sisa waktu tanggap",
                ("unit", "m"),
                ("decimals", 0),
                ("thresholds", labels.steps(((None, "red"), (0.0, "orange"), (5.0, "green")))),
                ("mappings", [_ACKED]),
                ("custom.cellOptions", {"type": "color-text"}),
            ),
            labels.column("opened_at", "Dibuka", ("unit", "dateTimeAsLocalNoDateIfToday")),
        ),
        options={"showHeader": True, "cellHeight": "md"},
    )


_NO_CREW = {
    "type": "special",
    "options": {"match": "null", "result": {"text": "Belum ditugaskan", "color": "orange"}},
}
_ACKED = {"type": "special", "options": {"match": "null", "result": {"text": "sudah ditanggapi"}}}


def build(city: City) -> Dashboard:
    overdue = _count_stat("Terlambat ditanggapi", city, f"{ACTIVE} AND {ACK_OVERDUE}", "red")
    unassigned = _count_stat("Belum ditugaskan", city, f"{ACTIVE} AND {UNASSIGNED}", "orange")
    # The wall's grid: 24 columns, WALL_ROWS rows; x, y, width, height.
    panels = (
        at(_severity_stat(city), 0, 0, 12, 4),
        at(overdue, 12, 0, 6, 4),
        at(unassigned, 18, 0, 6, 4),
        at(_incident_map(city), 0, 4, 10, 13),
        at(siaga.stations_table(city), 10, 4, 7, 13),
        at(_devices_table(city), 17, 4, 7, 13),
        at(_incident_table(city), 0, 17, 14, 9),
        at(rain.panel(), 14, 17, 10, 9),
    )
    return Dashboard(
        uid="pantau-city-overview",
        title="Pantau · Layar kota",
        description=f"{city.facts.display_name}: insiden aktif dan yang terlambat, stasiun "
        "terhadap Siaga, pompa, pintu air dan kamera, hujan seperti yang dinilai aturan.",
        panels=panels,
        timezone=city.facts.time_zone.key,
        variables=(*zone_variables(city), links.API, *level_variables()),
        annotations=(incident_annotations(city),),
        tags=("pantau", "overview", "wall"),
        time_from="now-6h",
    )
