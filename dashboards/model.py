"""Typed builders for Grafana dashboard JSON (schema version 41, Grafana 12/13).

Plain frozen dataclasses rather than grafana-foundation-sdk's builders: the SDK has no
InfluxDB or PostgreSQL query types (every target here would be a hand-written variant
anyway) and types geomap layers as loose dicts; our own small types keep the queries
readable and let the tests run exactly what a panel holds. The SDK's typed model is
the check instead: tests/unit/test_dashboards_grafana.py loads every dashboard with it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

JSON = dict[str, Any]
GRID_WIDTH = 24  # Grafana's dashboard grid is 24 columns wide


@dataclass(frozen=True, slots=True)
class DatasourceRef:
    type: str
    uid: str

    def to_json(self) -> JSON:
        return {"type": self.type, "uid": self.uid}


# The uids the provisioning files give the datasources (deploy/grafana/provisioning).
INFLUX = DatasourceRef("influxdb", "pantau-influxdb")
POSTGRES = DatasourceRef("grafana-postgresql-datasource", "pantau-postgres")
MIXED = DatasourceRef("datasource", "-- Mixed --")


@dataclass(frozen=True, slots=True, kw_only=True)
class InfluxQuery:
    """A raw InfluxQL target; `alias` may use `$tag_<key>`."""

    ref_id: str = "A"
    query: str
    alias: str = ""
    result_format: Literal["time_series", "table"] = "time_series"

    datasource = INFLUX

    def to_json(self) -> JSON:
        out: JSON = {
            "refId": self.ref_id,
            "datasource": INFLUX.to_json(),
            "query": self.query,
            "rawQuery": True,
            "resultFormat": self.result_format,
        }
        if self.alias:
            out["alias"] = self.alias
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class SqlQuery:
    """A raw SQL target on the incident store (PostgreSQL)."""

    ref_id: str = "A"
    sql: str
    format: Literal["time_series", "table"] = "table"

    datasource = POSTGRES

    def to_json(self) -> JSON:
        return {
            "refId": self.ref_id,
            "datasource": POSTGRES.to_json(),
            "rawSql": self.sql,
            "rawQuery": True,
            "editorMode": "code",
            "format": self.format,
        }


Query = InfluxQuery | SqlQuery


@dataclass(frozen=True, slots=True, kw_only=True)
class Panel:
    title: str
    type: str  # timeseries, stat, table, barchart, bargauge, geomap, state-timeline
    targets: tuple[Query, ...]
    width: int = 12
    height: int = 8
    description: str = ""
    unit: str | None = None
    min: float | None = None
    max: float | None = None
    decimals: int | None = None
    thresholds: tuple[tuple[float | None, str], ...] = ()  # (from value, colour)
    custom: Mapping[str, Any] = field(default_factory=dict)  # fieldConfig.defaults.custom
    mappings: tuple[Mapping[str, Any], ...] = ()
    options: Mapping[str, Any] = field(default_factory=dict)
    transformations: tuple[Mapping[str, Any], ...] = ()
    repeat: str | None = None
    # Where the panel sits (grid units); None flows it after the previous panel.
    x: int | None = None
    y: int | None = None
    overrides: tuple[Mapping[str, Any], ...] = ()  # fieldConfig.overrides
    links: tuple[Mapping[str, Any], ...] = ()  # data links on every field (drill-down)
    no_value: str | None = None  # what a panel with no data says, instead of "No data"
    color: Mapping[str, Any] | None = None  # fieldConfig.defaults.color
    # Lower bound of $__interval: a bucket at least this wide holds a report of every
    # live device, so an empty bucket means "no data", not "between two reports".
    interval: str | None = None

    def datasource(self) -> DatasourceRef:
        kinds = {type(t) for t in self.targets}
        return MIXED if len(kinds) > 1 else self.targets[0].datasource

    def to_json(self, panel_id: int, x: int, y: int) -> JSON:
        defaults: JSON = {"custom": dict(self.custom)}
        for key, value in (
            ("unit", self.unit),
            ("min", self.min),
            ("max", self.max),
            ("decimals", self.decimals),
        ):
            if value is not None:
                defaults[key] = value
        if self.thresholds:
            defaults["thresholds"] = {
                "mode": "absolute",
                "steps": [{"value": v, "color": c} for v, c in self.thresholds],
            }
        if self.mappings:
            defaults["mappings"] = [dict(m) for m in self.mappings]
        if self.links:
            defaults["links"] = [dict(link) for link in self.links]
        if self.no_value is not None:
            defaults["noValue"] = self.no_value
        if self.color is not None:
            defaults["color"] = dict(self.color)
        out: JSON = {
            "id": panel_id,
            "type": self.type,
            "title": self.title,
            "gridPos": {"x": x, "y": y, "w": self.width, "h": self.height},
            "datasource": self.datasource().to_json(),
            "targets": [t.to_json() for t in self.targets],
            "fieldConfig": {"defaults": defaults, "overrides": [dict(o) for o in self.overrides]},
            "options": dict(self.options),
        }
        if self.description:
            out["description"] = self.description
        if self.transformations:
            out["transformations"] = [dict(t) for t in self.transformations]
        if self.repeat:
            out["repeat"] = self.repeat
            out["repeatDirection"] = "h"
        if self.interval:
            out["interval"] = self.interval
        return out


def at(panel: Panel, x: int, y: int, width: int, height: int) -> Panel:
    """`panel` placed on the grid (x, y: top left, in grid units)."""
    return replace(panel, x=x, y=y, width=width, height=height)


@dataclass(frozen=True, slots=True, kw_only=True)
class Variable:
    """A template variable: a query on a datasource (InfluxDB tag values, or SQL rows
    with `__value` / `__text` columns), or a custom list of (text, value) options."""

    name: str
    label: str
    query: str = ""
    datasource: DatasourceRef = INFLUX
    options: tuple[tuple[str, str], ...] = ()  # custom variables only
    multi: bool = True
    include_all: bool = True
    hidden: bool = False  # a setting the panels use, not a choice for the operator

    def to_json(self) -> JSON:
        out: JSON = {
            "name": self.name,
            "label": self.label,
            "multi": self.multi,
            "includeAll": self.include_all,
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]}
            if self.include_all
            else {},
            "hide": 2 if self.hidden else 0,
        }
        if self.options:
            out |= {
                "type": "custom",
                "query": ", ".join(f"{text} : {value}" for text, value in self.options),
                "options": [
                    {"text": text, "value": value, "selected": False}
                    for text, value in self.options
                ],
            }
        else:
            out |= {
                "type": "query",
                "datasource": self.datasource.to_json(),
                "query": self.query,
                "definition": self.query,
                "refresh": 2,  # on time-range change: new devices show up
                "sort": 1,
            }
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class TextVariable:
    """A hidden text variable: a setting of the dashboard (e.g. where the API lives)
    that links use, which a URL can override with `?var-<name>=...`."""

    name: str
    label: str
    default: str

    def to_json(self) -> JSON:
        return {
            "type": "textbox",
            "name": self.name,
            "label": self.label,
            "query": self.default,
            "current": {"text": self.default, "value": self.default},
            "options": [{"text": self.default, "value": self.default, "selected": True}],
            "hide": 2,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Annotation:
    """Events drawn on every time series of the dashboard, from an SQL query returning
    `time`, `timeend`, `text` and `tags` (Grafana's SQL annotation columns)."""

    name: str
    query: SqlQuery
    color: str = "red"

    def to_json(self) -> JSON:
        return {
            "name": self.name,
            "datasource": POSTGRES.to_json(),
            "enable": True,
            "hide": False,
            "iconColor": self.color,
            "target": self.query.to_json(),
        }


# Links every dashboard shows: the other Pantau dashboards, keeping the chosen time
# range and variables (kecamatan, kelurahan, agency) when the operator follows one.
DASHBOARD_LINKS: tuple[JSON, ...] = (
    {
        "type": "dashboards",
        "tags": ["pantau"],
        "asDropdown": False,
        "includeVars": True,
        "keepTime": True,
        "title": "Pantau",
    },
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Dashboard:
    uid: str
    title: str
    description: str
    panels: tuple[Panel, ...]
    timezone: str  # IANA name: the city's clock (config/city.yaml), not the browser's
    variables: tuple[Variable | TextVariable, ...] = ()
    annotations: tuple[Annotation, ...] = ()
    tags: tuple[str, ...] = ("pantau",)
    time_from: str = "now-6h"
    refresh: str = "30s"

    def to_json(self) -> JSON:
        """The dashboard model. A panel with x and y sits there; the others flow left to
        right below the lowest placed panel and wrap on the 24-column grid."""
        panels: list[JSON] = []
        placed_bottom = max((p.y + p.height for p in self.panels if p.y is not None), default=0)
        x, y, row_height = 0, placed_bottom, 0
        for i, panel in enumerate(self.panels, start=1):
            if panel.x is not None and panel.y is not None:
                panels.append(panel.to_json(i, panel.x, panel.y))
                continue
            if x + panel.width > GRID_WIDTH:
                x, y, row_height = 0, y + row_height, 0
            panels.append(panel.to_json(i, x, y))
            x += panel.width
            row_height = max(row_height, panel.height)
        return {
            "uid": self.uid,
            "title": self.title,
            "description": self.description,
            "tags": list(self.tags),
            "timezone": self.timezone,
            "weekStart": "monday",
            "editable": True,
            "graphTooltip": 1,
            "schemaVersion": 41,
            "version": 1,
            "time": {"from": self.time_from, "to": "now"},
            "refresh": self.refresh,
            "templating": {"list": [v.to_json() for v in self.variables]},
            "annotations": {"list": [a.to_json() for a in self.annotations]},
            "links": [dict(link) for link in DASHBOARD_LINKS],
            "panels": panels,
        }
