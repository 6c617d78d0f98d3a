"""Grafana's macros and template variables, expanded as Grafana does before it sends a
panel's query, so the queries can run against InfluxDB and PostgreSQL without Grafana
(the dashboard tests do; so can an operator checking a data source).

InfluxQL: `$timeFilter`, `$__interval`, `$__interval_ms`, and Grafana's global
`${__from}` / `${__to}` (the range's ends in epoch ms); a variable with one value is
that value, with several `(a|b)` (the dashboards use them inside /^...$/ regexes).
SQL (PostgreSQL): `$__timeFilter(col)`, `$__timeFrom()`, `$__timeTo()`; a variable
is a quoted list `'a','b'` for IN (...). Anything else that looks like a macro or a
variable is an error, not a silently broken query.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

# Grafana rounds the interval (time range / max data points) to one of these.
NICE_INTERVALS_S = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 86400)
MAX_DATA_POINTS = 1000
_VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)|\[\[(\w+)\]\]")
_REGEX_SPECIALS = re.compile(r"([\\/^$.|?*+()\[\]{}])")


class ExpandError(ValueError):
    """A macro or variable the expansion does not know."""


@dataclass(frozen=True, slots=True)
class TimeRange:
    start: datetime
    end: datetime

    def interval(self) -> timedelta:
        wanted = (self.end - self.start).total_seconds() / MAX_DATA_POINTS
        for seconds in NICE_INTERVALS_S:
            if seconds >= wanted:
                return timedelta(seconds=seconds)
        return timedelta(seconds=NICE_INTERVALS_S[-1])


Values = Mapping[str, Sequence[str]]


def influxql(
    query: str, when: TimeRange, variables: Values, *, min_interval: str | None = None
) -> str:
    """`min_interval`: the panel's `interval` (Grafana's lower bound of $__interval),
    which may be a variable (Grafana interpolates it too)."""
    interval = when.interval()
    if min_interval:
        lower = _variables(min_interval, variables, _influx_value)
        interval = max(interval, _duration(lower))
    out = query.replace("$timeFilter", f"time >= {_ms(when.start)}ms and time <= {_ms(when.end)}ms")
    out = out.replace("$__interval_ms", str(int(interval.total_seconds() * 1000)))
    out = out.replace("$__interval", f"{int(interval.total_seconds())}s")
    out = out.replace("${__from}", str(_ms(when.start))).replace("${__to}", str(_ms(when.end)))
    return _variables(out, variables, _influx_value)


def sql(query: str, when: TimeRange, variables: Values) -> str:
    start, end = _iso(when.start), _iso(when.end)
    out = re.sub(r"\$__timeFilter\(([^)]+)\)", rf"\1 BETWEEN '{start}' AND '{end}'", query)
    out = out.replace("$__timeFrom()", f"'{start}'").replace("$__timeTo()", f"'{end}'")
    if "$__" in out:
        raise ExpandError(f"unsupported SQL macro in: {out[out.index('$__') :][:40]}")
    return _variables(out, variables, _sql_value)


def _variables(text: str, variables: Values, render: Callable[[Sequence[str]], str]) -> str:
    def one(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or match.group(3)
        if name not in variables:
            raise ExpandError(f"unknown variable or macro ${name}")
        values = variables[name]
        if not values:
            raise ExpandError(f"variable ${name} has no value")
        return render(values)

    return _VARIABLE.sub(one, text)


def _influx_value(values: Sequence[str]) -> str:
    escaped = [_REGEX_SPECIALS.sub(r"\\\1", v) for v in values]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def _sql_value(values: Sequence[str]) -> str:
    return ",".join("'" + v.replace("'", "''") + "'" for v in values)


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(text: str) -> timedelta:
    match = re.fullmatch(r"(\d+)([smhd])", text)
    if match is None:
        raise ExpandError(f"unsupported interval {text!r}")
    return timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])


def _ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def variables(
    model: Mapping[str, Any],
    when: TimeRange,
    *,
    run_influxql: Callable[[str], Sequence[str]],
    run_sql: Callable[[str], Sequence[str]],
    datasource_uid: str,
) -> dict[str, list[str]]:
    """A dashboard's template variables as Grafana first resolves them for `when`:
    custom ones their options, a textbox its text, a query variable what its data
    source answers (`run_influxql` runs expanded InfluxQL when the variable's data source is
    `datasource_uid`, `run_sql` expanded SQL otherwise), each seeing those before it. All
    selects every value; a single-value variable starts at the first. A variable that
    finds nothing is left empty (a query using it then fails to expand)."""
    values: dict[str, list[str]] = {}
    for var in model["templating"]["list"]:
        if var["type"] == "custom":
            found = [str(o["value"]) for o in var["options"]]
        elif var["type"] == "textbox":
            found = [str(var["query"])]
        elif var["datasource"]["uid"] == datasource_uid:
            found = [str(v) for v in run_influxql(influxql(var["query"], when, values))]
        else:
            found = [str(v) for v in run_sql(sql(var["query"], when, values))]
        values[var["name"]] = found if var.get("includeAll") else found[:1]
    return values
