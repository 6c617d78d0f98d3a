"""bench.soak's dashboard panels: every InfluxDB panel of the shipped dashboards run as
Grafana would for a 24-hour, a 3-day and a 7-day range (the dashboards' own level
variables pick raw, 5-minute or hourly data), p95 of PANEL_RUNS runs each."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from dashboards import expand
from dashboards.build import GENERATED
from dashboards.model import INFLUX
from pantau.city import City
from pantau.influx import level_table
from pantau.influx.query import InfluxQL
from pantau.settings import Settings

DAY = timedelta(days=1)
PANEL_RUNS = 10
# The week's panels forced to raw (what they would cost without the aggregates) read a
# week of raw points per run (7x what the raw 24-hour panels read): with 10 runs each
# they would be most of the panels' time on a full week, for a figure that needs no
# p95 precision; 3 runs (the p95 of 3 is nearly their slowest).
FORCED_RAW_RUNS = 3


# The dashboards whose panels read the fleet's readings and the cameras' analyses
# (performance reads monthly KPIs and pipeline Pantau's own metrics: neither grows
# with the played history).
DASHBOARDS = ("city-overview", "drainage", "cameras", "traffic")


@dataclass(frozen=True, slots=True)
class Panel:
    dashboard: str
    title: str
    targets: tuple[str, ...]  # InfluxQL with Grafana's variables and macros
    interval: str | None  # the panel's minimum interval (may be a variable)


def dashboard_panels() -> list[tuple[dict[str, Any], list[Panel]]]:
    """The committed dashboards' InfluxDB panels (SQL targets left out: PostgreSQL)."""
    out = []
    for name in DASHBOARDS:
        model = json.loads((GENERATED / f"{name}.json").read_text(encoding="utf-8"))
        found = []
        for p in model["panels"]:
            queries = tuple(
                t["query"] for t in p["targets"] if t["datasource"]["uid"] == INFLUX.uid
            )
            if queries:
                found.append(Panel(name, p["title"], queries, p.get("interval")))
        out.append((model, found))
    return out


class PanelTimer:
    """Runs dashboard panels as Grafana would for a time range: the dashboard's
    variables resolved for the range (the hidden rp / rp_window / rp_bucket ones from
    the level table, so the range picks raw, 5-minute or hourly data), then each target
    expanded (dashboards.expand) and sent to InfluxDB; a panel's time is its targets'
    together."""

    def __init__(self, influx: InfluxQL, city: City) -> None:
        self.influx = influx
        # What the PostgreSQL-backed variable (kelurahan) would list: every zone.
        self.zones = {z.id: z for z in city.zones.kelurahan}

    def _sql(self, query: str) -> list[str]:
        if "kelurahan" not in query:
            raise ValueError(f"a SQL variable the soak does not know: {query[:80]}")
        return list(self.zones)

    def values(
        self, model: dict[str, Any], when: expand.TimeRange, force: Mapping[str, str] | None = None
    ) -> dict[str, list[str]]:
        values = expand.variables(
            model,
            when,
            run_influxql=lambda q: [str(r["value"]) for r in self.influx.rows(q)],
            run_sql=self._sql,
            datasource_uid=INFLUX.uid,
        )
        return {**values, **{k: [v] for k, v in (force or {}).items() if k in values}}

    def once(self, panel: Panel, when: expand.TimeRange, values: expand.Values) -> float:
        queries = [
            expand.influxql(q, when, values, min_interval=panel.interval) for q in panel.targets
        ]
        t0 = time.perf_counter()
        for q in queries:
            self.influx.query(q)
        return (time.perf_counter() - t0) * 1000

    def p95(
        self, panel: Panel, when: expand.TimeRange, values: expand.Values, runs: int = PANEL_RUNS
    ) -> float:
        times = [self.once(panel, when, values) for _ in range(runs)]
        return statistics.quantiles(times, n=20, method="inclusive")[-1]


def panel_ranges(end: datetime) -> dict[str, expand.TimeRange]:
    """The ranges an operator picks, ending where the played data ends: a day reads raw
    readings, 3 days the 5-minute aggregates, a week the hourly ones (level_for)."""
    return {name: expand.TimeRange(end - span, end) for name, span in RANGES.items()}


RANGES = {"24 h": DAY, "3 days": 3 * DAY, "7 days": 7 * DAY}


AGAIN = "24 h of day 1, again"


def time_panels(
    timer: PanelTimer,
    settings: Settings,
    end: datetime,
    again: datetime | None = None,
    cpu: Callable[[], float] | None = None,
) -> tuple[dict[str, dict[str, object]], dict[str, float]]:
    """p95 milliseconds of every InfluxDB panel of DASHBOARDS for each range (the
    heaviest are picked from these when reported). Over the week each panel is also
    timed with $rp forced to the raw level: what it would cost without the aggregates.
    With `again` (the first day's end) the first day's 24 hours are timed once more
    (AGAIN): the same data read in the last day's state, which tells a query that got
    slower because of what lies in its range from one slowed by the server's state.
    `cpu`: influxd's CPU seconds so far; the second dict is what each range's panels
    cost it (a figure the machine's load inflates far less than the milliseconds)."""
    level_table.write(settings.influx, settings.retention, datetime.now(UTC))  # as ingest does
    raw = level_table.rows(datetime.now(UTC), settings.retention)[0]
    force_raw = {"rp": raw.rp, "rp_window": raw.window, "rp_bucket": raw.bucket}
    out: dict[str, dict[str, object]] = {}
    ranges = panel_ranges(end)
    if again is not None:  # right after the last day's 24 hours, under the same load
        first = list(ranges.items())
        ranges = dict([first[0], (AGAIN, expand.TimeRange(again - DAY, again)), *first[1:]])
    spent: dict[str, float] = {}
    for rname, when in ranges.items():
        cpu0 = cpu() if cpu else 0.0
        for model, found in dashboard_panels():
            values = timer.values(model, when)
            forced = timer.values(model, when, force_raw) if rname == "7 days" else None
            for panel in found:
                row: dict[str, object] = {
                    "rp": values["rp"][0] if values.get("rp") else None,
                    "p95_ms": round(timer.p95(panel, when, values), 1),
                }
                if forced is not None:
                    raw_ms = timer.p95(panel, when, forced, FORCED_RAW_RUNS)
                    row["p95_ms_from_raw"] = round(raw_ms, 1)
                out[f"{rname} | {panel.dashboard}: {panel.title}"] = row
        spent[rname] = round((cpu() if cpu else 0.0) - cpu0, 2)
    return out, spent
