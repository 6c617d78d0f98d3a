"""Rule files: the default rule set loads against the real city; mistakes name file:line."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from pantau.city import City
from pantau.errors import ConfigErrors
from pantau.incidents import Hazard, Severity
from rules.kinds import EVALUATORS
from rules.rulespec import RULE_KINDS, ThresholdRule, load_rules, parse_duration

DEFAULT = Path(__file__).resolve().parents[2] / "config" / "rules.yaml"

GOOD = """\
lateness: 2m
rules:
  - id: flood
    kind: threshold
    hazard: flood
    description: level above Siaga II
    applies_to: {kinds: [water_level_station]}
    zone_level: kelurahan
    metric: water_level
    raise: levels.alert_cm
    clear: levels.alert_cm - 10
    raise_for: 2m
    steps:
      - {severity: awas, at: levels.danger_cm}
"""


def errors_of(tmp_path: Path, city: City, text: str) -> list[str]:
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    with pytest.raises(ConfigErrors) as info:
        load_rules(path, city)
    return [str(e) for e in info.value.errors]


def line_of(text: str, needle: str) -> int:
    for number, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in the text")


def test_default_rules_load_against_the_real_city(city: City) -> None:
    rules = load_rules(DEFAULT, city)
    assert rules.lateness == timedelta(minutes=2)
    kinds = {r.kind for r in rules.rules}
    assert kinds == set(RULE_KINDS) == set(EVALUATORS.names())
    hazards = {r.hazard for r in rules.rules}
    assert {
        Hazard.FLOOD,
        Hazard.HEAVY_RAIN,
        Hazard.PUMP_FAILURE,
        Hazard.TRAFFIC_JAM,
        Hazard.ROAD_DAMAGE,
        Hazard.SENSOR_OFFLINE,
        Hazard.SENSOR_STUCK,
        Hazard.BATTERY_LOW,
    } <= hazards
    flood = next(r for r in rules.rules if r.id == "flood-water-level")
    assert isinstance(flood, ThresholdRule)
    assert flood.raise_level == "levels.alert_cm"
    assert [s.severity for s in flood.steps] == [Severity.AWAS]


def test_a_good_file_loads(tmp_path: Path, city: City) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(GOOD)
    (rule,) = load_rules(path, city).rules
    assert isinstance(rule, ThresholdRule)
    assert rule.raise_for == timedelta(minutes=2)
    assert rule.severity is Severity.WASPADA


@pytest.mark.parametrize(
    ("old", "new", "needle", "message"),
    [
        ("    raise_for: 2m\n", "    raise_for: 2m\n    colour: red\n", "colour", "unknown key"),
        ("metric: water_level", "metric: water_lvl", "metric:", "unknown metric 'water_lvl'"),
        (
            "metric: water_level",
            "metric: speed",
            "metric:",
            "none of the kinds ['water_level_station'] reports 'speed'",
        ),
        (
            "kinds: [water_level_station]",
            "kinds: [water_level_stn]",
            "applies_to",
            "unknown device kind 'water_level_stn'",
        ),
        (
            "clear: levels.alert_cm - 10",
            "clear: levels.danger_cm",
            "clear:",
            "clear (145) must be below raise (110) for a 'above' rule",
        ),
        (
            "kinds: [water_level_station]",
            "kinds: [rain_gauge]",
            "raise:",
            "raise uses Siaga levels but device",
        ),
        ("kind: threshold", "kind: thresh", "kind:", "unknown or missing rule kind"),
        ("raise_for: 2m", "raise_for: soon", "raise_for", "is not a duration"),
        ("hazard: flood", "hazard: banjir", "hazard", "Input should be"),
        ("raise: levels.alert_cm", "raise: levels.siaga3", "raise:", "is not a level"),
        ("{severity: awas,", "{severity: bahaya,", "severity:", "is not a severity"),
    ],
)
def test_mistakes_name_file_and_line(
    tmp_path: Path, city: City, old: str, new: str, needle: str, message: str
) -> None:
    assert old in GOOD
    text = GOOD.replace(old, new, 1)
    errors = errors_of(tmp_path, city, text)
    assert any(message in e for e in errors), errors
    (error,) = [e for e in errors if message in e]
    assert error.startswith(f"{tmp_path / 'rules.yaml'}:{line_of(text, needle)}: "), error


def test_numeric_levels_in_the_wrong_order(tmp_path: Path, city: City) -> None:
    text = GOOD.replace("raise: levels.alert_cm", "raise: 100").replace(
        "clear: levels.alert_cm - 10", "clear: 120"
    )
    text = text.replace("      - {severity: awas, at: levels.danger_cm}\n", "").replace(
        "    steps:\n", ""
    )
    (error,) = errors_of(tmp_path, city, text)
    assert f":{line_of(text, 'clear: 120')}: " in error
    assert "clear (120) must be below raise (100)" in error


def test_below_rule_wants_clear_above_raise(tmp_path: Path, city: City) -> None:
    text = """\
rules:
  - id: battery
    kind: threshold
    hazard: battery_low
    description: battery low
    applies_to: {kinds: [rain_gauge]}
    zone_level: kelurahan
    metric: battery
    direction: below
    raise: 20
    clear: 15
"""
    (error,) = errors_of(tmp_path, city, text)
    assert "clear (15) must be above raise (20) for a 'below' rule" in error
    assert f":{line_of(text, 'clear: 15')}: " in error


def test_duplicate_ids_and_several_errors_at_once(tmp_path: Path, city: City) -> None:
    second = GOOD.split("rules:\n", 1)[1].replace("metric: water_level", "metric: nope")
    text = GOOD + second
    errors = errors_of(tmp_path, city, text)
    assert len(errors) == 2
    assert "duplicate rule id 'flood'" in errors[0]
    assert "unknown metric 'nope'" in errors[1]


def test_composite_conditions_need_their_own_kinds(tmp_path: Path, city: City) -> None:
    text = """\
rules:
  - id: pump
    kind: composite
    hazard: pump_failure
    description: pump stopped in rain
    applies_to: {kinds: [pump_station, rain_gauge]}
    zone_level: kecamatan
    op: and
    conditions:
      - {metric: pump_running, op: "==", value: 0}
      - {kinds: [traffic_counter], metric: rainfall_rate, op: ">=", value: 10}
"""
    errors = errors_of(tmp_path, city, text)
    assert any(
        "needs its own `kinds`" in e and f":{line_of(text, 'pump_running')}:" in e for e in errors
    ), errors
    assert any("'traffic_counter' is not in applies_to.kinds" in e for e in errors), errors


def test_durations() -> None:
    assert parse_duration("90s") == timedelta(seconds=90)
    assert parse_duration("10m") == parse_duration("10min") == timedelta(minutes=10)
    assert parse_duration("1.5h") == timedelta(minutes=90)
    assert parse_duration(30) == timedelta(seconds=30)
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("10 days")
