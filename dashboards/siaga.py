"""Water-level stations against their *own* Siaga levels, now.

Stations differ: one drain is at Siaga II at 110 cm, a river at 235 cm, so raw
centimetres say nothing on a city map. Each station's levels are in the registry
(queries.stations_cte, SQL), its readings in InfluxDB; Grafana joins the two by device
and computes the Siaga index `(level - Siaga II) / (Siaga I - Siaga II)` with its own
transformations: below 0 Normal, from 0 Waspada (Siaga II), from 1 Awas (Siaga I).

A registered station with no reading in the freshness window has no index: the chain
turns it into -Infinity (ln 0), which sorts last and shows grey "Tidak ada data",
never green. The tests run these transformations with Grafana's own code.
"""

from __future__ import annotations

from typing import Any

from dashboards import labels, links
from dashboards.model import InfluxQuery, Panel, SqlQuery
from dashboards.queries import DEVICE_FILTER, NOW_WINDOW, TAGS, stations_cte
from pantau.city import City
from pantau.incidents import Severity

JOINED = "joinByField-A-B"  # the refId Grafana gives the join of frames A and B
_ON_JOINED = {"id": "byRefId", "options": JOINED}
NO_INDEX = -1000.0  # below any real index (a dry drain: about -10)

INDEX_STEPS: tuple[tuple[float | None, str], ...] = (
    (None, labels.NO_DATA_COLOUR),
    (NO_INDEX, "green"),
    (0.0, labels.SEVERITY[Severity.WASPADA][1]),
    (1.0, labels.SEVERITY[Severity.AWAS][1]),
)
INDEX_MAPPINGS: tuple[dict[str, Any], ...] = (
    {
        "type": "range",
        "options": {
            "from": None,
            "to": NO_INDEX,
            "result": {"text": labels.NO_DATA_TEXT, "color": labels.NO_DATA_COLOUR, "index": 0},
        },
    },
    {
        "type": "range",
        "options": {"from": NO_INDEX, "to": 0, "result": {"text": "Normal", "index": 1}},
    },
    {
        "type": "range",
        "options": {"from": 0, "to": 1, "result": {"text": "Waspada (Siaga II)", "index": 2}},
    },
    {
        "type": "range",
        "options": {"from": 1, "to": None, "result": {"text": "Awas (Siaga I)", "index": 3}},
    },
    dict(labels.NO_DATA),
)


def registry(city: City) -> SqlQuery:
    """A: the stations of the selected zones with their levels and map position."""
    return SqlQuery(
        ref_id="A",
        sql=f"{stations_cte(city)}SELECT d.device, d.name, d.kecamatan, d.kecamatan_name,"
        ' d.lat, d.lon, d.alert_cm, d.danger_cm, d.inv_band, d."offset"\n'
        f"FROM stations d WHERE {DEVICE_FILTER} ORDER BY d.device",
    )


def readings() -> InfluxQuery:
    """B: each station's last level in the freshness window before the range's end."""
    return InfluxQuery(
        ref_id="B",
        query='SELECT last("value") AS "level_cm", count("value") AS "n" FROM "water_level" '
        f"WHERE {NOW_WINDOW} AND \"kind\" = 'water_level_station' AND {TAGS} "
        'GROUP BY "device"',
        result_format="table",
    )


def _calc(alias: str, mode: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "calculateField",
        "filter": _ON_JOINED,
        "options": {"mode": mode, mode if mode != "reduceRow" else "reduce": spec, "alias": alias},
    }


# Join, then: scaled = level * inv_band; has = ceil(n / 1e9) (1 reported, 0 not);
# gap = ln(has) (0 or -Infinity); siaga = scaled + offset + gap.
INDEX: tuple[dict[str, Any], ...] = (
    {
        "id": "joinByField",
        "filter": {"id": "byRefId", "options": "/^(A|B)$/"},
        "options": {"byField": "device", "mode": "outerTabular"},
    },
    _calc("scaled", "binary", {"left": "level_cm", "operator": "*", "right": "inv_band"}),
    _calc("n_small", "binary", {"left": "n", "operator": "/", "right": "1000000000"}),
    _calc("has", "unary", {"operator": "ceil", "fieldName": "n_small"}),
    _calc("gap", "unary", {"operator": "ln", "fieldName": "has"}),
    _calc("siaga", "reduceRow", {"include": ["scaled", "offset", "gap"], "reducer": "sum"}),
    {"id": "sortBy", "filter": _ON_JOINED, "options": {"sort": [{"field": "siaga", "desc": True}]}},
)
HELPERS = ("inv_band", "offset", "n", "scaled", "n_small", "has", "gap", "Time", "time")


def organize(*hidden: str, names: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "id": "organize",
        "filter": _ON_JOINED,
        "options": {
            "excludeByName": {name: True for name in (*HELPERS, *hidden)},
            "renameByName": names or {},
        },
    }


def stations_table(city: City) -> Panel:
    """Every station of the selected zones, worst first, its state in words."""
    return Panel(
        title="Stasiun vs Siaga sekarang (terburuk di atas)",
        type="table",
        targets=(registry(city), readings()),
        transformations=(
            *INDEX,
            organize("lat", "lon", "alert_cm", "danger_cm"),
        ),
        overrides=(
            *labels.hidden("device", "kecamatan"),
            labels.column("name", "Stasiun", ("links", [links.station()])),
            labels.column("kecamatan_name", "Kecamatan", ("links", [links.kecamatan()])),
            labels.column("level_cm", "Tinggi air", ("unit", "lengthcm"), ("decimals", 0)),
            labels.column(
                "siaga",
                "Keadaan",
                ("mappings", list(INDEX_MAPPINGS)),
                ("thresholds", labels.steps(INDEX_STEPS)),
                ("custom.cellOptions", {"type": "color-background"}),
            ),
        ),
        options={"showHeader": True, "cellHeight": "md", "footer": {"show": False}},
        description="Tinggi air tiap stasiun terhadap batas Siaga-nya sendiri (Siaga II = "
        "Waspada, Siaga I = Awas). Stasiun tanpa bacaan 10 menit terakhir: Tidak ada data.",
        height=13,
    )
