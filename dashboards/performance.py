"""Performance (e-Kinerja): KPIs per agency, kecamatan and crew over time, from the
series the API publishes to InfluxDB (`POST /kpi/publish`, api/kpi_queries.py):
measurement `kpi`, tags `scope` (kota, agency, kecamatan, kelurahan, crew), `id`,
`period`, one field per KPI, stamped at the period's start. The live backlog comes
from the incident store."""

from __future__ import annotations

from dashboards import variables
from dashboards.model import Dashboard, InfluxQuery, Panel, SqlQuery, Variable
from dashboards.queries import ACTIVE
from pantau.city import City

PERIOD = "month"

CREW = Variable(
    name="crew",
    label="Crew",
    # Crew ids start with their agency's id (config/crews.yaml), e.g. bpbd-barat-siang.
    query='SHOW TAG VALUES FROM "kpi" WITH KEY = "id" WHERE "scope" = \'crew\' '
    'AND "id" =~ /^$agency-/',
)


def kpi(field: str, scope: str, variable: str, *, ref_id: str = "A") -> InfluxQuery:
    """One KPI of each selected `scope` id over time (a point per period)."""
    return InfluxQuery(
        ref_id=ref_id,
        query=f'SELECT "{field}" FROM "kpi" WHERE $timeFilter AND "scope" = \'{scope}\' '
        f'AND "period" = \'{PERIOD}\' AND "id" =~ /^${variable}$/ GROUP BY "id"',
        alias="$tag_id",
    )


def kpi_table(scope: str, variable: str) -> InfluxQuery:
    fields = (
        ("score", "score"),
        ("incidents", "incidents"),
        ("sla_compliance_pct", "SLA %"),
        ("ack_minutes_mean", "ack min"),
        ("resolve_minutes_mean", "resolve min"),
        ("sensor_availability_pct", "sensors up %"),
        ("camera_availability_pct", "cameras up %"),
        ("backlog", "backlog"),
    )
    select = ", ".join(f'last("{f}") AS "{label}"' for f, label in fields)
    return InfluxQuery(
        query=f'SELECT {select} FROM "kpi" WHERE $timeFilter AND "scope" = \'{scope}\' '
        f'AND "period" = \'{PERIOD}\' AND "id" =~ /^${variable}$/ GROUP BY "id"',
        result_format="table",
    )


BARS = {"drawStyle": "bars", "fillOpacity": 70, "barAlignment": -1}


def build(city: City) -> Dashboard:
    score = Panel(
        title="e-Kinerja score per agency",
        type="timeseries",
        targets=(kpi("score", "agency", "agency"),),
        min=0,
        max=100,
        custom=BARS,
        thresholds=((None, "red"), (60.0, "orange"), (80.0, "green")),
    )
    sla = Panel(
        title="SLA compliance per agency",
        type="timeseries",
        targets=(kpi("sla_compliance_pct", "agency", "agency"),),
        unit="percent",
        min=0,
        max=100,
        custom=BARS,
    )
    # Issue 24: citizens' ratings of resolved reports (tingkat kepuasan masyarakat).
    satisfaction = Panel(
        title="Citizen satisfaction per agency (mean rating, 1-5)",
        type="timeseries",
        targets=(kpi("satisfaction_mean", "agency", "agency"),),
        min=1,
        max=5,
        custom=BARS,
    )
    ack = Panel(
        title="Time to acknowledge per agency (mean and p90)",
        type="timeseries",
        targets=(
            kpi("ack_minutes_mean", "agency", "agency"),
            kpi("ack_minutes_p90", "agency", "agency", ref_id="B"),
        ),
        unit="m",
        custom=BARS,
    )
    resolve = Panel(
        title="Time to resolve per agency (mean and p90)",
        type="timeseries",
        targets=(
            kpi("resolve_minutes_mean", "agency", "agency"),
            kpi("resolve_minutes_p90", "agency", "agency", ref_id="B"),
        ),
        unit="m",
        custom=BARS,
    )
    kecamatan = Panel(
        title="Kecamatan this period",
        type="table",
        targets=(kpi_table("kecamatan", "kecamatan"),),
        width=24,
    )
    availability = Panel(
        title="Sensor availability per kecamatan",
        type="timeseries",
        targets=(kpi("sensor_availability_pct", "kecamatan", "kecamatan"),),
        unit="percent",
        min=0,
        max=100,
        custom=BARS,
    )
    crews = Panel(
        title="Crews: SLA compliance and time to acknowledge",
        type="table",
        targets=(kpi_table("crew", "crew"),),
    )
    backlog = Panel(
        title="Open incidents per agency now (ack overdue)",
        type="barchart",
        targets=(
            SqlQuery(
                sql="SELECT i.agency, count(*) AS open,"
                " count(*) FILTER (WHERE i.acknowledged_at IS NULL"
                " AND i.sla_ack_due < now()) AS ack_overdue\n"
                f"FROM incidents i WHERE i.agency IN ($agency) AND {ACTIVE}\n"
                "GROUP BY i.agency ORDER BY i.agency"
            ),
        ),
        options={"xField": "agency"},
        width=24,
    )
    return Dashboard(
        uid="pantau-performance",
        title="Pantau · Performance (e-Kinerja)",
        description="KPIs per agency, kecamatan and crew per month (published by the API), "
        "and the live backlog.",
        panels=(score, sla, satisfaction, ack, resolve, kecamatan, availability, crews, backlog),
        variables=(variables.agency(city), variables.kecamatan(city), CREW),
        tags=("pantau", "performance", "e-kinerja"),
        time_from="now-1y",
        refresh="5m",
    )
