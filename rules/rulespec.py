"""Rule files: the YAML schema of every rule kind, validated at load against the city.

`config/rules.yaml` holds a bounded lateness and a list of rules; each rule is one of
the kinds below, chosen by its `kind` key (a discriminated union). Structure errors
come from pydantic, cross-checks (metric in the catalogue, metric reported by the
device kinds, Siaga levels present, raise/clear in the right order) from
`load_rules`; all of them name the file and line.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from pantau.city import City
from pantau.devices import Device
from pantau.errors import ConfigError, ConfigErrors
from pantau.incidents import Hazard, Severity
from pantau.yamlconf import LocatedYaml, read_yaml
from rules.cameras import CameraDevice

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|min|m|h)\s*$")
_UNIT_SECONDS = {"s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}
_LEVEL = re.compile(
    r"^\s*levels\.(alert_cm|danger_cm|bankfull_cm|flood_depth_cm)"
    r"\s*(?:([-+*])\s*(\d+(?:\.\d+)?))?\s*$"
)


def parse_duration(value: object) -> timedelta:
    """`90` (seconds), `"90s"`, `"10m"`, `"10min"`, `"1.5h"`."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
    else:
        raise ValueError(f"{value!r} is not a duration (e.g. 90s, 10m, 1h)")
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return timedelta(seconds=seconds)


def _parse_severity(value: object) -> Severity:
    if isinstance(value, Severity):
        return value
    if isinstance(value, str) and value.upper() in Severity.__members__:
        return Severity[value.upper()]
    names = ", ".join(s.name.lower() for s in Severity)
    raise ValueError(f"{value!r} is not a severity ({names})")


def _parse_level(value: object) -> float | str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and _LEVEL.match(value):
        return value.strip()
    raise ValueError(
        f"{value!r} is not a level: a number or"
        " `levels.<alert_cm|danger_cm|bankfull_cm|flood_depth_cm>`"
        " optionally with `- n`, `+ n` or `* n`"
    )


# Reports one problem at a path inside the current rule.
Report = Callable[[Sequence[str | int], str], None]

Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
SeverityName = Annotated[Severity, BeforeValidator(_parse_severity)]
# A number in the metric's unit, or a device's Siaga level (`levels.alert_cm - 10`), or a
# flood camera's flood depth (`levels.flood_depth_cm`, config/cameras.yaml).
Level = Annotated[float | str, BeforeValidator(_parse_level)]
ZoneLevelName = Literal["kelurahan", "kecamatan"]
Op = Literal[">", ">=", "<", "<=", "==", "!="]


def level_uses_device(level: float | str) -> bool:
    return isinstance(level, str)


def resolve_level(level: float | str, device: Device) -> float | None:
    """The level as a number for `device`; None if it names a level the device lacks."""
    if isinstance(level, float | int):
        return float(level)
    m = _LEVEL.match(level)
    if m is None:
        return None
    if m.group(1) == "flood_depth_cm":
        depth = device.flood_depth_cm if isinstance(device, CameraDevice) else None
        if depth is None:
            return None
        base = depth
    elif device.levels is None:
        return None
    else:
        base = float(getattr(device.levels, m.group(1)))
    op, operand = m.group(2), m.group(3)
    if op is None:
        return base
    x = float(operand)
    return base - x if op == "-" else base + x if op == "+" else base * x


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class AppliesTo(_Strict):
    kinds: tuple[str, ...] = Field(min_length=1, description="device kinds from the catalogue")
    zones: tuple[str, ...] = Field(
        default=(), description="kelurahan / kecamatan ids to limit the rule to; empty: all"
    )


class _RuleBase(_Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$", description="stable rule id")
    hazard: Hazard = Field(description="what the incident is about")
    description: str = Field(min_length=1, description="what the rule detects, for operators")
    applies_to: AppliesTo = Field(description="which devices the rule watches")
    zone_level: ZoneLevelName = Field(description="zone the incident is keyed on")
    severity: SeverityName = Field(
        default=Severity.WASPADA, description="severity while active (lowest step)"
    )


class _SeriesRule(_RuleBase):
    """Kinds judged device by device on one metric."""

    metric: str = Field(description="catalogue metric")
    no_data_after: Duration = Field(
        default=timedelta(minutes=10),
        description="silence after which an open condition becomes no_data"
        " (at least 2 report intervals of the watched kinds)",
    )


class SeverityStep(_Strict):
    severity: SeverityName = Field(description="severity from this level on")
    at: Level = Field(description="level at which the severity applies")
    clear: Level | None = Field(
        default=None, description="level at which it drops again (default: `at`)"
    )


class ThresholdRule(_SeriesRule):
    kind: Literal["threshold"] = Field(description="value beyond a level, with hysteresis")
    direction: Literal["above", "below"] = Field(default="above", description="breach side")
    raise_level: Level = Field(alias="raise", description="level that starts a breach")
    clear_level: Level = Field(alias="clear", description="level that ends it (hysteresis)")
    raise_for: Duration = Field(default=timedelta(0), description="hold before ACTIVE")
    clear_for: Duration = Field(default=timedelta(0), description="hold before CLEARED")
    steps: tuple[SeverityStep, ...] = Field(default=(), description="severity steps")
    mean_over: Duration | None = Field(
        default=None, description="judge the mean of the readings over this span, not each one"
    )


class RateOfChangeRule(_SeriesRule):
    kind: Literal["rate_of_change"] = Field(description="metric rising faster than a rate")
    raise_per_min: float = Field(gt=0, description="rise per minute that starts a breach")
    clear_per_min: float = Field(default=0.0, description="rise per minute that ends it")
    window: Duration = Field(description="span the rise is measured over")
    raise_for: Duration = Field(default=timedelta(0), description="hold before ACTIVE")
    clear_for: Duration = Field(default=timedelta(0), description="hold before CLEARED")


class AbsenceRule(_RuleBase):
    kind: Literal["absence"] = Field(description="no reading from a device for a while")
    metric: str | None = Field(default=None, description="metric to wait for; null: any")
    after: Duration = Field(description="silence, judged on the watermark, that raises")


class FlatlineRule(_SeriesRule):
    kind: Literal["flatline"] = Field(description="value stuck within epsilon (stuck sensor)")
    epsilon: float = Field(ge=0, description="largest change still counted as no change")
    for_: Duration = Field(alias="for", description="how long the value must be stuck")
    require_moving_peers: bool = Field(
        default=False,
        description="only when another device of the zone moved more than epsilon meanwhile",
    )


class Condition(_Strict):
    kinds: tuple[str, ...] | None = Field(
        default=None, description="device kinds (composite); default: the rule's applies_to"
    )
    metric: str = Field(description="catalogue metric")
    of: Literal["value", "rate_per_min"] = Field(
        default="value", description="compare the latest value or its rise per minute"
    )
    op: Op = Field(description="comparison")
    value: Level = Field(description="what to compare with")
    window: Duration = Field(default=timedelta(minutes=10), description="span for `rate_per_min`")
    mean_over: Duration | None = Field(
        default=None, description="compare the mean over this span (`of: value` only)"
    )
    max_age: Duration = Field(
        default=timedelta(minutes=5), description="older readings no longer count"
    )


class ZoneAggregateRule(_RuleBase):
    kind: Literal["zone_aggregate"] = Field(description="k of n devices in a zone breaching")
    condition: Condition = Field(description="per-device condition")
    k: int = Field(ge=1, description="how many devices must meet the condition")
    raise_for: Duration = Field(default=timedelta(0), description="hold before ACTIVE")
    clear_for: Duration = Field(default=timedelta(0), description="hold before CLEARED")


class CompositeRule(_RuleBase):
    kind: Literal["composite"] = Field(description="AND / OR of conditions in one zone")
    op: Literal["and", "or"] = Field(description="how the conditions combine")
    conditions: tuple[Condition, ...] = Field(min_length=2, description="each with its kinds")
    same_device: bool = Field(
        default=False, description="all conditions must hold on one device, not the zone"
    )
    evidence: str | None = Field(
        default=None, description="metric (of a condition) whose extreme is the evidence"
    )
    raise_for: Duration = Field(default=timedelta(0), description="hold before ACTIVE")
    clear_for: Duration = Field(default=timedelta(0), description="hold before CLEARED")


class CrossCheckRule(_RuleBase):
    """A flood camera's gauge depth against the water level of its `station`
    (config/cameras.yaml): the station's level less the camera's `station_offset_cm`
    is the depth the gauge should show (clipped to 0 .. the gauge's top mark, which is
    all it can show); a difference beyond `tolerance` held `raise_for` is a data-quality
    incident naming both devices and both values. Judged only while both sides have a
    reading younger than `max_age`; silence is the absence rule's business."""

    kind: Literal["cross_check"] = Field(description="a camera against its nearby station")
    metric: str = Field(description="the camera's metric (water_depth)")
    against: str = Field(description="the station's metric (water_level)")
    tolerance: float = Field(gt=0, description="difference (metric's unit) that raises")
    clear: float | None = Field(
        default=None, ge=0, description="difference at which it clears (default: tolerance)"
    )
    raise_for: Duration = Field(default=timedelta(0), description="hold before ACTIVE")
    clear_for: Duration = Field(default=timedelta(0), description="hold before CLEARED")
    max_age: Duration = Field(
        default=timedelta(minutes=3), description="older readings of either side do not count"
    )


Rule = Annotated[
    ThresholdRule
    | RateOfChangeRule
    | AbsenceRule
    | FlatlineRule
    | ZoneAggregateRule
    | CompositeRule
    | CrossCheckRule,
    Field(discriminator="kind"),
]
RULE_KINDS = (
    "threshold",
    "rate_of_change",
    "absence",
    "flatline",
    "zone_aggregate",
    "composite",
    "cross_check",
)


class RulesFile(_Strict):
    lateness: Duration = Field(
        default=timedelta(minutes=2),
        description="how far a source's readings may overtake each other (event time)",
    )
    idle_after: Duration = Field(
        default=timedelta(minutes=2),
        gt=timedelta(0),
        description="a source silent this long (wall clock) beyond its report or upload "
        "interval no longer holds its kecamatan's event time back",
    )
    outage_grace: Duration = Field(
        default=timedelta(minutes=45),
        ge=timedelta(0),
        description="a kecamatan whose every source is silent is judged this much later "
        "than the wall clock: a gateway outage is not every sensor offline",
    )
    horizon: Duration = Field(
        default=timedelta(hours=24),
        gt=timedelta(0),
        description="a reading older than the newest event time by more is reported, not judged",
    )
    rules: tuple[Rule, ...] = Field(default=(), description="the rules")


@dataclass(frozen=True, slots=True)
class RuleSet:
    lateness: timedelta
    rules: tuple[Rule, ...]
    idle_after: timedelta = timedelta(minutes=2)
    outage_grace: timedelta = timedelta(minutes=45)
    horizon: timedelta = timedelta(hours=24)


def load_rules(path: Path, city: City) -> RuleSet:
    """Read and validate a rule file; every problem (file:line) is raised at once."""
    doc = read_yaml(path)
    try:
        model = RulesFile.model_validate(doc.data)
    except ValidationError as err:
        raise ConfigErrors([_located(doc, e) for e in err.errors()]) from err
    errors = check_rules(model, city, doc)
    if errors:
        raise ConfigErrors(errors)
    return RuleSet(model.lateness, model.rules, model.idle_after, model.outage_grace, model.horizon)


def _located(doc: LocatedYaml, e: Any) -> ConfigError:
    loc = [p for p in e["loc"] if isinstance(p, str | int)]
    # pydantic puts the union tag (`threshold`) after `rules[i]`: drop it so the
    # location is the YAML path and the line is the offending key's line.
    if len(loc) >= 3 and loc[0] == "rules" and loc[2] in RULE_KINDS:
        del loc[2]
    msg = str(e["msg"])
    if e["type"] == "extra_forbidden":
        msg = "unknown key (check the spelling)"
    elif e["type"] in ("union_tag_invalid", "union_tag_not_found"):
        msg = f"unknown or missing rule kind (known: {', '.join(RULE_KINDS)})"
        loc.append("kind")
    return doc.error(loc, msg)


def check_rules(model: RulesFile, city: City, doc: LocatedYaml) -> list[ConfigError]:
    errors: list[ConfigError] = []
    seen: set[str] = set()
    zone_ids = {z.id for z in city.zones.all()}
    for i, rule in enumerate(model.rules):
        here: tuple[str | int, ...] = ("rules", i)

        def err(loc: Sequence[str | int], problem: str, here: tuple[str | int, ...] = here) -> None:
            errors.append(doc.error((*here, *loc), problem))

        if rule.id in seen:
            err(("id",), f"duplicate rule id {rule.id!r}")
        seen.add(rule.id)
        kinds = rule.applies_to.kinds
        for j, kind in enumerate(kinds):
            if kind not in city.catalogue.kinds:
                known = ", ".join(sorted(city.catalogue.kinds))
                err(("applies_to", "kinds", j), f"unknown device kind {kind!r} (known: {known})")
        for j, zone in enumerate(rule.applies_to.zones):
            if zone not in zone_ids:
                err(("applies_to", "zones", j), f"unknown zone {zone!r}")
        devices = [d for d in city.devices.values() if d.kind in kinds]
        if (
            isinstance(rule, ThresholdRule | RateOfChangeRule | FlatlineRule | AbsenceRule)
            and rule.metric is not None
        ):
            _check_metric(city, rule.metric, kinds, ("metric",), err)
        if isinstance(rule, _SeriesRule):
            slowest = max(
                (
                    city.catalogue.kinds[k].report_every_s
                    for k in kinds
                    if k in city.catalogue.kinds
                ),
                default=0.0,
            )
            if rule.no_data_after.total_seconds() < 2 * slowest:
                err(
                    ("no_data_after",),
                    f"no_data_after must be at least 2 report intervals ({2 * slowest:g} s)",
                )
        if isinstance(rule, ThresholdRule):
            _check_threshold(rule, devices, err)
        if isinstance(rule, RateOfChangeRule) and rule.clear_per_min >= rule.raise_per_min:
            err(("clear_per_min",), "clear_per_min must be below raise_per_min (hysteresis)")
        if isinstance(rule, ZoneAggregateRule):
            _check_condition(city, rule.condition, kinds, ("condition",), err)
        if isinstance(rule, CrossCheckRule):
            _check_cross_check(city, rule, kinds, err)
        if isinstance(rule, CompositeRule):
            metrics = [c.metric for c in rule.conditions]
            if rule.evidence is not None and rule.evidence not in metrics:
                err(("evidence",), f"evidence {rule.evidence!r} is not a condition's metric")
            for j, cond in enumerate(rule.conditions):
                if cond.kinds is None:
                    err(("conditions", j), "a composite condition needs its own `kinds`")
                    continue
                for m, kind in enumerate(cond.kinds):
                    if kind not in kinds:
                        err(
                            ("conditions", j, "kinds", m),
                            f"kind {kind!r} is not in applies_to.kinds",
                        )
                _check_condition(city, cond, cond.kinds, ("conditions", j), err)
    return errors


def _check_metric(
    city: City, metric: str, kinds: Sequence[str], loc: tuple[str | int, ...], err: Report
) -> None:
    if metric not in city.catalogue.metrics:
        known = ", ".join(sorted(city.catalogue.metrics))
        err(loc, f"unknown metric {metric!r} (known: {known})")
        return
    reporting = [k for k in kinds if k in city.catalogue.kinds]
    if reporting and not any(metric in city.catalogue.kinds[k].metrics for k in reporting):
        err(loc, f"none of the kinds {list(reporting)} reports {metric!r}")


def _check_condition(
    city: City, cond: Condition, kinds: Sequence[str], loc: tuple[str | int, ...], err: Report
) -> None:
    _check_metric(city, cond.metric, kinds, (*loc, "metric"), err)
    slowest = max(
        (city.catalogue.kinds[k].report_every_s for k in kinds if k in city.catalogue.kinds),
        default=0.0,
    )
    if cond.max_age.total_seconds() < 2 * slowest:
        err((*loc, "max_age"), f"max_age must be at least 2 report intervals ({2 * slowest:g} s)")
    if level_uses_device(cond.value):
        _check_levels(city, kinds, (*loc, "value"), err, cond.value)


def _check_cross_check(city: City, rule: CrossCheckRule, kinds: Sequence[str], err: Report) -> None:
    _check_metric(city, rule.metric, kinds, ("metric",), err)
    if rule.against not in city.catalogue.metrics:
        known = ", ".join(sorted(city.catalogue.metrics))
        err(("against",), f"unknown metric {rule.against!r} (known: {known})")
    if rule.clear is not None and rule.clear > rule.tolerance:
        err(("clear",), "clear must not exceed tolerance (hysteresis)")
    for d in city.devices.values():
        if d.kind not in kinds or not isinstance(d, CameraDevice) or d.station is None:
            continue
        station = city.devices.get(d.station)
        if station is None or rule.against not in station.metrics:
            err(("against",), f"station {d.station!r} of {d.id!r} does not report {rule.against}")
            return


def _check_levels(
    city: City, kinds: Sequence[str], loc: tuple[str | int, ...], err: Report, level: float | str
) -> None:
    for kind in kinds:
        lacking = [
            d.id
            for d in city.devices.values()
            if d.kind == kind and resolve_level(level, d) is None
        ]
        if lacking:
            err(loc, f"devices of kind {kind!r} lack the level {level!r} (e.g. {lacking[0]!r})")


def _check_threshold(rule: ThresholdRule, devices: Sequence[Device], err: Report) -> None:
    above = rule.direction == "above"
    levels = [("raise", rule.raise_level), ("clear", rule.clear_level)]
    levels += [(f"steps[{j}]", s.at) for j, s in enumerate(rule.steps)]
    for name, level in levels:
        if level_uses_device(level):
            lacking = [d.id for d in devices if resolve_level(level, d) is None]
            if lacking:
                key: tuple[str | int, ...] = (
                    ("raise",) if name == "raise" else ("clear",) if name == "clear" else ("steps",)
                )
                what = "flood_depth_cm" if "flood_depth_cm" in str(level) else "Siaga levels"
                err(key, f"{name} uses {what} but device {lacking[0]!r} has none")
                return
    probes: Sequence[Device | None] = devices if devices else [None]
    for device in probes:
        raise_v = _value(rule.raise_level, device)
        clear_v = _value(rule.clear_level, device)
        if raise_v is None or clear_v is None:
            continue
        who = f" for device {device.id!r}" if device is not None else ""
        if (above and not clear_v < raise_v) or (not above and not clear_v > raise_v):
            side = "below" if above else "above"
            err(
                ("clear",),
                f"clear ({clear_v:g}) must be {side} raise ({raise_v:g}) for a"
                f" '{rule.direction}' rule{who}",
            )
            return
        for j, step in enumerate(rule.steps):
            at = _value(step.at, device)
            if at is not None and ((above and at < raise_v) or (not above and at > raise_v)):
                err(("steps", j, "at"), f"step level {at:g} is not beyond raise {raise_v:g}{who}")
                return


def _value(level: float | str, device: Device | None) -> float | None:
    if isinstance(level, float | int):
        return float(level)
    return None if device is None else resolve_level(level, device)
