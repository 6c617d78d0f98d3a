"""A committed dashboard's template variables resolved as Grafana resolves them
(dashboards.expand.variables, the resolution bench.soak uses too), its queries run on
the test's InfluxDB and PostgreSQL as Grafana's two data sources would run them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Engine

from dashboards import expand
from dashboards.model import INFLUX
from pantau.influx.query import InfluxQL


def resolve(
    model: Mapping[str, Any], when: expand.TimeRange, influx: InfluxQL, sql: Engine
) -> dict[str, list[str]]:
    """Every variable of `model` for `when`: an InfluxQL variable's `value` column, a
    SQL variable's `__value` (Grafana's names for what a variable takes)."""

    def run_sql(query: str) -> list[str]:
        with sql.connect() as conn:
            return [str(row._mapping["__value"]) for row in conn.exec_driver_sql(query)]

    return expand.variables(
        model,
        when,
        run_influxql=lambda query: [str(r["value"]) for r in influx.rows(query)],
        run_sql=run_sql,
        datasource_uid=INFLUX.uid,
    )
