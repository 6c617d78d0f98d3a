"""Kinerja (e-Kinerja): this month per agency against its targets, then the KPIs per
agency, kecamatan and crew month by month, from the series the API publishes to
InfluxDB (every few minutes, api/kpi_publisher.py; measurement `kpi`, tags `scope`,
`id`, `period`, one field per KPI, stamped at the period's start on the city's clock).
The live backlog comes from the incident store.

The targets are config/kpi.yaml's, the ones the score is computed from: each column
and chart shows green on the right side of its target, red on the wrong side.
"""

from __future__ import annotations

from typing import Any

from dashboards import labels, variables
from dashboards.model import Dashboard, InfluxQuery, Panel, SqlQuery, Variable
from dashboards.queries import ACTIVE, incident_annotations
from pantau.city import City
from pantau.yamlconf import read_yaml

PERIOD = "month"

CREW = Variable(
    name="crew",
    label="Regu",
    # Crew ids start with their agency's id (config/crews.yaml), e.g. bpbd-barat-siang.
    query='SHOW TAG VALUES FROM "kpi" WITH KEY = "id" WHERE "scope" = \'crew\' '
    'AND "id" =~ /^$agency-/',
)

# KPI field -> (column title, unit)
KPIS: dict[str, tuple[str, str]] = {
    "score": ("Nilai", "none"),
    "sla_compliance_pct": ("Sesuai SLA", "percent"),
    "ack_minutes_mean": ("Tanggap rata-rata", "m"),
    "resolve_minutes_mean": ("Selesai rata-rata", "m"),
    "sensor_availability_pct": ("Sensor aktif", "percent"),
    "camera_availability_pct": ("Kamera aktif", "percent"),
    "satisfaction_mean": ("Kepuasan warga", "none"),
    "incidents": ("Insiden", "none"),
    "backlog": ("Tunggakan", "none"),
}
SCORE_STEPS: tuple[tuple[float | None, str], ...] = (
    (None, "red"),
    (60.0, "orange"),
    (80.0, "green"),
)

# A bar drawn from its point to the right: a month's bar sits in that month's slot
# (the points are stamped at the month's start, Asia/Jakarta).
BARS = {"drawStyle": "bars", "fillOpacity": 70, "barAlignment": 1, "lineWidth": 1}


def targets(city: City) -> dict[str, tuple[float, str]]:
    """KPI -> (target, "lower" or "higher" is better), from config/kpi.yaml."""
    doc = read_yaml(city.config_dir / "kpi.yaml").data
    return {k: (float(t["target"]), str(t["better"])) for k, t in doc["targets"].items()}


def target_steps(target: float, better: str) -> tuple[tuple[float | None, str], ...]:
    if better == "higher":
        return ((None, "red"), (target, "green"))
    return ((None, "green"), (target, "red"))


def kpi(
    field: str, scope: str, variable: str, *, ref_id: str = "A", label: str = ""
) -> InfluxQuery:
    """One KPI of each selected `scope` id over time (a point per period)."""
    return InfluxQuery(
        ref_id=ref_id,
        query=f'SELECT "{field}" FROM "kpi" WHERE $timeFilter AND "scope" = \'{scope}\' '
        f'AND "period" = \'{PERIOD}\' AND "id" =~ /^${variable}$/ GROUP BY "id"',
        alias=f"$tag_id {label}".strip(),
    )


def this_month(scope: str, variable: str) -> InfluxQuery:
    """Each id's latest period up to the range's end: the month now running."""
    select = ", ".join(f'last("{f}") AS "{f}"' for f in KPIS)
    return InfluxQuery(
        query=f'SELECT {select} FROM "kpi" WHERE time > ${{__to}}ms - 32d AND time <= ${{__to}}ms'
        f' AND "scope" = \'{scope}\' AND "period" = \'{PERIOD}\' AND "id" =~ /^${variable}$/'
        ' GROUP BY "id"',
        result_format="table",
    )


def _columns(goals: dict[str, tuple[float, str]]) -> tuple[labels.JSON, ...]:
    out = [labels.column("id", "Lingkup"), labels.hidden("Time")[0]]
    for field, (name, unit) in KPIS.items():
        title = name
        props: list[tuple[str, Any]] = [("unit", unit), ("decimals", 0)]
        steps = SCORE_STEPS if field == "score" else None
        if field in goals:
            target, better = goals[field]
            steps = target_steps(target, better)
            title = f"{title} (target {'>=' if better == 'higher' else '<='} {target:g})"
        if steps:
            props += [("thresholds", labels.steps(steps)),
                      ("custom.cellOptions", {"type": "color-text"})]  # fmt: skip
        out.append(labels.column(field, title, *props))
    return tuple(out)


def _over_time(title: str, field: str, goals: dict[str, tuple[float, str]], **kw: Any) -> Panel:
    target, better = goals[field]
    return Panel(
        title=f"{title} (target {target:g})",
        type="timeseries",
        targets=(kpi(field, "agency", "agency"),),
        unit=KPIS[field][1],
        thresholds=target_steps(target, better),
        custom={**BARS, "thresholdsStyle": {"mode": "line"}},
        options={"legend": {"showLegend": True, "displayMode": "list"}},
        **kw,
    )


def build(city: City) -> Dashboard:
    goals = targets(city)
    agency_names = labels.value_map(
        {a.id: (a.short, "text") for a in sorted(city.agencies.values(), key=lambda a: a.id)}
    )
    month = Panel(
        title="Bulan ini per dinas terhadap target",
        type="table",
        targets=(this_month("agency", "agency"),),
        overrides=(*_columns(goals), labels.by_name("id", ("mappings", [agency_names]))),
        options={"showHeader": True, "cellHeight": "md"},
        width=24,
        height=6,
    )
    score = Panel(
        title="Nilai e-Kinerja per dinas",
        type="timeseries",
        targets=(kpi("score", "agency", "agency"),),
        min=0,
        max=100,
        custom={**BARS, "thresholdsStyle": {"mode": "line"}},
        thresholds=SCORE_STEPS,
        width=8,
    )
    sla = _over_time("Kepatuhan SLA per dinas", "sla_compliance_pct", goals, min=0, max=100,
                     width=8)  # fmt: skip
    ack = _over_time("Waktu tanggap rata-rata per dinas", "ack_minutes_mean", goals, width=8)
    resolve = _over_time("Waktu selesai rata-rata per dinas", "resolve_minutes_mean", goals)
    p90 = Panel(
        title="Waktu tanggap p90 per dinas",
        type="timeseries",
        targets=(kpi("ack_minutes_p90", "agency", "agency", label="p90"),),
        unit="m",
        custom=BARS,
    )
    # Issue 24: citizens' ratings of resolved reports (tingkat kepuasan masyarakat).
    satisfaction = _over_time(
        "Kepuasan warga per dinas (1-5)", "satisfaction_mean", goals, min=1, max=5, width=24
    )
    kecamatan = Panel(
        title="Kecamatan bulan ini",
        type="table",
        targets=(this_month("kecamatan", "kecamatan"),),
        overrides=_columns(goals),
        width=24,
        height=8,
    )
    availability = Panel(
        title=f"Sensor aktif per kecamatan (target {goals['sensor_availability_pct'][0]:g} %)",
        type="timeseries",
        targets=(kpi("sensor_availability_pct", "kecamatan", "kecamatan"),),
        unit="percent",
        min=0,
        max=100,
        thresholds=target_steps(*goals["sensor_availability_pct"]),
        custom={**BARS, "thresholdsStyle": {"mode": "line"}},
        options={"legend": {"showLegend": False}},
    )
    crews = Panel(
        title="Regu bulan ini",
        type="table",
        targets=(this_month("crew", "crew"),),
        overrides=_columns(goals),
    )
    backlog = Panel(
        title="Insiden terbuka per dinas sekarang (terlambat ditanggapi)",
        type="barchart",
        targets=(
            SqlQuery(
                sql='SELECT i.agency, count(*) AS "terbuka",'
                " count(*) FILTER (WHERE i.acknowledged_at IS NULL"
                ' AND i.sla_ack_due < $__timeTo()) AS "terlambat ditanggapi"\n'
                f"FROM incidents i WHERE i.agency IN ($agency) AND {ACTIVE}\n"
                "GROUP BY i.agency ORDER BY i.agency"
            ),
        ),
        overrides=(labels.by_name("agency", ("mappings", [agency_names])),),
        options={"xField": "agency"},
        width=24,
    )
    return Dashboard(
        uid="pantau-performance",
        title="Pantau · Kinerja (e-Kinerja)",
        description="Bulan ini per dinas terhadap target, KPI per dinas, kecamatan dan "
        "regu per bulan (diterbitkan API secara berkala), dan tunggakan saat ini.",
        panels=(
            month,
            score,
            sla,
            ack,
            resolve,
            p90,
            satisfaction,
            kecamatan,
            availability,
            crews,
            backlog,
        ),
        timezone=city.facts.time_zone.key,
        variables=(variables.agency(city), variables.kecamatan(city), CREW),
        annotations=(
            incident_annotations(
                city,
                zones="(z.kecamatan IN ($kecamatan) OR z.kecamatan = '') AND i.agency IN ($agency)",
            ),
        ),
        tags=("pantau", "performance", "e-kinerja"),
        time_from="now-1y",
        refresh="5m",
    )
