"""What the operations centre reads on the dashboards, in Bahasa Indonesia: severities
(Waspada / Siaga / Awas, in the colours every panel uses for them), hazards, workflow
states, and "no data" shown as such (grey), never as a healthy value.

Value mappings turn the codes the store and InfluxDB hold (severity 1-4, `flood`,
`acknowledged`, pump 0/1) into words; the codes themselves stay what the API uses.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dashboards import links
from pantau.incidents import Hazard, Severity, WorkflowState

NO_DATA_TEXT = "Tidak ada data"
NO_DATA_COLOUR = "#8e8e8e"  # grey: neither healthy (green) nor alarming (red)

# One colour per severity on every dashboard; rain classes and station levels use them too.
SEVERITY: dict[Severity, tuple[str, str]] = {
    Severity.INFO: ("Info", "blue"),
    Severity.WASPADA: ("Waspada", "yellow"),
    Severity.SIAGA: ("Siaga", "orange"),
    Severity.AWAS: ("Awas", "red"),
}

HAZARD: dict[Hazard, str] = {
    Hazard.FLOOD: "Banjir",
    Hazard.HEAVY_RAIN: "Hujan lebat",
    Hazard.PUMP_FAILURE: "Pompa gagal",
    Hazard.TRAFFIC_JAM: "Kemacetan",
    Hazard.ROAD_DAMAGE: "Jalan rusak",
    Hazard.SENSOR_OFFLINE: "Sensor tidak melapor",
    Hazard.SENSOR_STUCK: "Sensor macet",
    Hazard.BATTERY_LOW: "Baterai lemah",
    Hazard.DATA_QUALITY: "Mutu data",
    Hazard.CAMERA_FAULT: "Gangguan kamera",
}

WORKFLOW: dict[WorkflowState, tuple[str, str]] = {
    WorkflowState.OPEN: ("Baru", "red"),
    WorkflowState.ACKNOWLEDGED: ("Ditanggapi", "orange"),
    WorkflowState.DISPATCHED: ("Regu berangkat", "yellow"),
    WorkflowState.ON_SITE: ("Regu di lokasi", "green"),
    WorkflowState.RESOLVED: ("Selesai", "blue"),
    WorkflowState.CLOSED: ("Ditutup", "text"),
    WorkflowState.SUPPRESSED: ("Ditahan", "text"),
}

ESCALATION = {0: ("-", "text"), 1: ("Ke pengawas dinas", "orange"), 2: ("Ke pusat kendali", "red")}

JSON = Mapping[str, Any]


def value_map(options: Mapping[str, tuple[str, str]]) -> JSON:
    return {
        "type": "value",
        "options": {
            key: {"text": text, "color": colour, "index": i}
            for i, (key, (text, colour)) in enumerate(options.items())
        },
    }


NO_DATA: JSON = {
    "type": "special",
    "options": {"match": "null+nan", "result": {"text": NO_DATA_TEXT, "color": NO_DATA_COLOUR}},
}

SEVERITY_MAP = value_map({str(int(s)): v for s, v in SEVERITY.items()})
HAZARD_MAP = value_map({h.value: (text, "text") for h, text in HAZARD.items()})
WORKFLOW_MAP = value_map({w.value: v for w, v in WORKFLOW.items()})
ESCALATION_MAP = value_map({str(k): v for k, v in ESCALATION.items()})

# Severity thresholds (a field holding 1-4) in the same colours as the mappings.
SEVERITY_STEPS: tuple[tuple[float | None, str], ...] = (
    (None, SEVERITY[Severity.INFO][1]),
    (2.0, SEVERITY[Severity.WASPADA][1]),
    (3.0, SEVERITY[Severity.SIAGA][1]),
    (4.0, SEVERITY[Severity.AWAS][1]),
)


def by_name(field: str, *properties: tuple[str, Any]) -> JSON:
    """A field override: `properties` on the field called `field`."""
    return {
        "matcher": {"id": "byName", "options": field},
        "properties": [{"id": key, "value": value} for key, value in properties],
    }


def column(field: str, title: str, *properties: tuple[str, Any]) -> JSON:
    """A table column shown as `title` (the query keeps the code name for links)."""
    return by_name(field, ("displayName", title), *properties)


def sql_case(expr: str, texts: Mapping[str, str]) -> str:
    """SQL that turns the codes of `expr` into their words (the code itself otherwise)."""
    whens = " ".join(
        "WHEN '{}' THEN '{}'".format(code, text.replace("'", "''")) for code, text in texts.items()
    )
    return f"CASE {expr} {whens} ELSE {expr} END"


HAZARD_SQL = sql_case("i.hazard", {h.value: text for h, text in HAZARD.items()})
SEVERITY_SQL = sql_case(
    "CAST(i.severity_max AS text)", {str(int(s)): text for s, (text, _) in SEVERITY.items()}
)


def steps(values: tuple[tuple[float | None, str], ...]) -> dict[str, Any]:
    """Absolute thresholds: (from value, colour); the first from None (the base)."""
    return {"mode": "absolute", "steps": [{"value": v, "color": c} for v, c in values]}


def hidden(*fields: str) -> tuple[JSON, ...]:
    """Columns a table keeps for its links but does not show."""
    return tuple(by_name(f, ("custom.hidden", True)) for f in fields)


def incident_columns() -> tuple[JSON, ...]:
    """The incident columns every incident table shows, in words, with the link."""
    return (
        column("id", "No.", ("links", [links.incident()])),
        column("severity", "Tingkat", ("mappings", [SEVERITY_MAP]),
               ("custom.cellOptions", {"type": "color-background"})),
        column("hazard", "Bahaya", ("mappings", [HAZARD_MAP])),
        column("zone", "Zona"),
        column("workflow", "Keadaan", ("mappings", [WORKFLOW_MAP]),
               ("custom.cellOptions", {"type": "color-text"})),
        column("opened_at", "Dibuka", ("unit", "dateTimeAsLocalNoDateIfToday")),
        column("devices", "Perangkat"),
        column("cameras", "Kamera"),
        column("peak", "Puncak"),
    )  # fmt: skip
