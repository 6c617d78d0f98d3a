"""dashboards.expand.variables: a dashboard's variables resolved as Grafana does, in
order, on the committed drainage dashboard (its hidden level variables and the station
read InfluxDB, kelurahan PostgreSQL)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

from dashboards import expand
from dashboards.build import GENERATED
from dashboards.model import INFLUX


def test_variables_route_each_query_and_see_the_ones_before() -> None:
    model = json.loads((GENERATED / "drainage.json").read_text(encoding="utf-8"))
    end = datetime(2026, 12, 6, tzinfo=UTC)
    when = expand.TimeRange(end - timedelta(days=1), end)
    influx: list[str] = []
    sql: list[str] = []

    def run_influxql(query: str) -> list[str]:
        influx.append(query)
        if "pantau_rp" in query:
            return ["agg_5m"]
        return ["wl-b", "wl-a"]

    def run_sql(query: str) -> list[str]:
        sql.append(query)
        return ["kel-1", "kel-2"]

    values = expand.variables(
        model, when, run_influxql=run_influxql, run_sql=run_sql, datasource_uid=INFLUX.uid
    )
    names = [v["name"] for v in model["templating"]["list"]]
    assert list(values) == names
    # Custom (includeAll) ones are every option; the kelurahan query went to SQL and
    # keeps all it found; the single-value station its first; the textbox its text.
    kecamatan = next(v for v in model["templating"]["list"] if v["name"] == "kecamatan")
    assert values["kecamatan"] == [str(o["value"]) for o in kecamatan["options"]]
    assert values["kelurahan"] == ["kel-1", "kel-2"]
    assert values["station"] == ["wl-b"]
    assert values["rp"] == values["rp_window"] == values["rp_bucket"] == ["agg_5m"]
    assert len(sql) == 1 and len(influx) == 4
    # Expanded before they ran: the range is in the level variables' queries as epoch
    # ms, the station's query holds the zones chosen before it, and no variable or
    # macro is left in any query (a "$" only as a regex's end anchor).
    start_ms = str(int(when.start.timestamp() * 1000))
    assert all(start_ms in q for q in influx if "pantau_rp" in q)
    station = next(q for q in influx if "SHOW TAG VALUES" in q)
    assert "kel-1|kel-2" in station and values["kecamatan"][0] in station
    assert not any(re.search(r"\$\{?\w|\[\[", q) for q in influx + sql)
