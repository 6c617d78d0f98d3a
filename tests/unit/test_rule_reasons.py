"""Every reason names the level actually crossed: for each threshold rule with severity
steps in config/rules.yaml, on a device it watches, the opening reason names the rule's
own level and each step's reason names that step's level (resolved from the registry,
as the rule file says), in the ConditionChanges and on the incident timeline."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pantau.cameras import load_cameras
from pantau.city import City
from pantau.clock import ManualClock
from pantau.incidents import ConditionChange, ConditionState, Severity
from pantau.readings import Reading
from pantau.store import IncidentStore, load_sla_policy
from rules.cameras import rules_city
from rules.engine import RuleEngine
from rules.rulespec import ThresholdRule, load_rules, resolve_level

CONFIG = Path(__file__).resolve().parents[2] / "config"
T0 = datetime(2026, 1, 14, 8, 0, tzinfo=UTC)


def _stepped(city: City) -> list[tuple[ThresholdRule, str]]:
    """(rule, a device it watches with every level) for each stepped threshold rule."""
    rules = load_rules(CONFIG / "rules.yaml", city)
    out = []
    for r in rules.rules:
        if not isinstance(r, ThresholdRule) or not r.steps:
            continue
        device = next(
            d
            for d in sorted(city.devices.values(), key=lambda d: d.id)
            if d.kind in r.applies_to.kinds
            and resolve_level(r.raise_level, d) is not None
            and all(resolve_level(s.at, d) is not None for s in r.steps)
        )
        out.append((r, device.id))
    return out


def _named(level: float | str) -> str:
    return f" ({level})" if isinstance(level, str) else ""


@pytest.fixture(scope="module")
def full_city(city: City) -> City:
    """The city with its cameras as devices, as the rules service sees it."""
    return rules_city(city, load_cameras(city))


# The threshold rules of config/rules.yaml with severity steps (checked just below).
STEPPED = ["flood-water-level", "heavy-rain", "road-roughness", "flood-camera-depth"]


def test_every_stepped_rule_is_covered(full_city: City) -> None:
    assert sorted(r.id for r, _ in _stepped(full_city)) == sorted(STEPPED)


@pytest.mark.parametrize("rule_id", STEPPED)
def test_reasons_name_the_level_crossed(full_city: City, rule_id: str, tmp_path: Path) -> None:
    stepped = [(r, d) for r, d in _stepped(full_city) if r.id == rule_id]
    assert len(stepped) == 1
    rule, device_id = stepped[0]
    device = full_city.devices[device_id]
    above = rule.direction == "above"
    nudge = 0.5 if above else -0.5
    sign = ">=" if above else "<="
    raise_v = resolve_level(rule.raise_level, device)
    assert raise_v is not None
    levels = [(rule.severity, raise_v, rule.raise_level)] + [
        (s.severity, resolve_level(s.at, device), s.at)
        for s in sorted(rule.steps, key=lambda s: s.severity)
    ]
    ruleset = dataclasses.replace(load_rules(CONFIG / "rules.yaml", full_city), rules=(rule,))
    engine = RuleEngine(full_city, ruleset, ManualClock(T0))
    store = IncidentStore(
        f"sqlite:///{tmp_path}/store.db", load_sla_policy(CONFIG / "sla.yaml"), ManualClock(T0),
        migrate_schema=True,
    )  # fmt: skip
    minute = 0
    hold = int(rule.raise_for.total_seconds() // 60) + 3
    # A rule on a mean (heavy rain: 60 min) needs the window full of the new value.
    window = 2 if rule.mean_over is None else int(rule.mean_over.total_seconds() // 60) + 2
    for severity, level, expr in levels:
        assert level is not None
        changes: list[ConditionChange] = []
        for _ in range(max(hold, window) if severity == rule.severity else window):
            r = Reading(
                device_id=device.id, metric=rule.metric, value=level + nudge, unit="",
                time=T0 + timedelta(minutes=minute),
            )  # fmt: skip
            changes += engine.ingest([r])
            minute += 1
        raised = [c for c in changes if c.severity is severity]
        assert raised, (rule.id, severity, changes)
        name = severity.name.lower()
        for c in raised:
            if rule.mean_over is None:  # a mean quotes the mean, between the two values
                assert c.reason.startswith(f"{rule.metric} {level + nudge:g} "), c.reason
            assert f"{sign} {name} {level:g}" in c.reason, c.reason
            assert f"{_named(expr)} at {device.id}" in c.reason, c.reason
            # No other severity's level is quoted as the one crossed.
            for other, other_level, _ in levels:
                if other is not severity:
                    assert f"{other.name.lower()} {other_level:g}" not in c.reason, c.reason
            store.apply(c)
    # The timeline keeps the same words: each severity event names its own level.
    history = store.history(changes[0].key)
    assert len(history) == 1
    detail = store.get(history[0].id)
    assert detail is not None
    severity_events = [e for e in detail.timeline if e.kind.value == "severity"]
    assert [e.to_state for e in severity_events] == [s.name.lower() for s, _, _ in levels]
    for e, (severity, level, _) in zip(severity_events, levels, strict=True):
        assert f"{sign} {severity.name.lower()} {level:g}" in e.reason, e.reason
    store.close()


def test_babakan_awas_names_its_danger_level(city: City) -> None:
    """The reported case: wl-babakan-002 (waspada 235 cm, awas 310 cm) at 311.9 cm."""
    rules = load_rules(CONFIG / "rules.yaml", city)
    flood = next(r for r in rules.rules if r.id == "flood-water-level")
    engine = RuleEngine(city, dataclasses.replace(rules, rules=(flood,)), ManualClock(T0))
    changes: list[ConditionChange] = []
    for minute, cm in enumerate([236.0, 236.0, 236.0, 236.0, 311.9, 311.9]):
        r = Reading(device_id="wl-babakan-002", metric="water_level", value=cm, unit="cm",
                    time=T0 + timedelta(minutes=minute))  # fmt: skip
        changes += engine.ingest([r])
    opened = next(c for c in changes if c.state is ConditionState.ACTIVE)
    assert opened.reason.startswith(
        "water_level 236 cm >= waspada 235 cm (levels.alert_cm) at wl-babakan-002"
    )
    awas = next(c for c in changes if c.severity is Severity.AWAS)
    assert awas.reason == "water_level 311.9 cm >= awas 310 cm (levels.danger_cm) at wl-babakan-002"
