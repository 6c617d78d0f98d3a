"""The simulator's scenarios through the default rules: a storm floods Karawaci, a calm
day floods nothing."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pantau.city import City
from pantau.clock import ManualClock
from pantau.incidents import ConditionChange, ConditionState, Hazard
from pantau.readings import Reading
from rules.engine import RuleEngine
from rules.rulespec import load_rules
from simulators.messages import iter_messages
from simulators.scenario import find_scenario, load_scenario
from tests.unit.rule_incidents import incidents

DEFAULT = Path(__file__).resolve().parents[2] / "config" / "rules.yaml"


def replay(city: City, name: str, hours: float) -> tuple[RuleEngine, list[ConditionChange]]:
    rules = load_rules(DEFAULT, city)
    scenario = load_scenario(find_scenario(name), city)
    end = scenario.start + timedelta(hours=hours)
    engine = RuleEngine(city, rules, ManualClock(datetime(2000, 1, 1, tzinfo=UTC)))
    changes: list[ConditionChange] = []
    for message in iter_messages(city, scenario):
        if message.sim_time >= end:
            break
        changes += engine.ingest(message.readings)
    changes += engine.advance_watermark(end)
    return engine, changes


def test_storm_over_karawaci_floods_karawaci(city: City) -> None:
    engine, changes = replay(city, "storm-karawaci", 2)
    assert engine.stats.late == 0
    flooded = {
        c.key.zone_id
        for c in changes
        if c.key.rule_id == "flood-water-level" and c.state is ConditionState.ACTIVE
    }
    karawaci = {
        d.kelurahan_id
        for d in city.devices.values()
        if d.kind == "water_level_station" and d.kecamatan_id == "kec-karawaci"
    }
    assert flooded & karawaci, flooded
    widespread = {
        c.key.zone_id
        for c in changes
        if c.key.rule_id == "flood-widespread" and c.state is ConditionState.ACTIVE
    }
    assert "kec-karawaci" in widespread
    rain = {c.key.zone_id for c in changes if c.key.hazard is Hazard.HEAVY_RAIN}
    assert "kec-karawaci" in rain


def test_a_calm_day_floods_nothing(city: City) -> None:
    engine, changes = replay(city, "calm-day", 3)
    assert engine.stats.accepted > 0
    wet = [c for c in changes if c.key.hazard in (Hazard.FLOOD, Hazard.HEAVY_RAIN)]
    assert wet == []
    assert not [c for c in changes if c.key.hazard is Hazard.PUMP_FAILURE]


def test_storm_delivered_twice_and_shuffled_gives_the_same_incidents(city: City) -> None:
    rules = load_rules(DEFAULT, city)
    scenario = load_scenario(find_scenario("storm-karawaci"), city)
    end = scenario.start + timedelta(minutes=50)
    ordered: list[Reading] = []
    for message in iter_messages(city, scenario):
        if message.sim_time >= end:
            break
        ordered += message.readings
    clock = ManualClock(datetime(2000, 1, 1, tzinfo=UTC))
    final = max(r.time for r in ordered) - rules.lateness
    reference = RuleEngine(city, rules, clock)
    expected = reference.ingest(ordered) + reference.advance_watermark(final)
    assert any(c.state is ConditionState.ACTIVE for c in expected)

    rng = random.Random(11)
    bound = rules.lateness.total_seconds() * 0.9  # within the bound, with a margin
    delivered = sorted(
        (
            r.time + timedelta(seconds=rng.uniform(0, bound) if rng.random() < 0.1 else 0.0),
            rng.random(),
            r,
        )
        for r in ordered * 2
    )
    engine = RuleEngine(city, rules, clock)
    got: list[ConditionChange] = []
    for i in range(0, len(delivered), 50):  # batches, as an MQTT consumer drains them
        got += engine.ingest(r for _, _, r in delivered[i : i + 50])
    got += engine.advance_watermark(final)  # the same end as the ordered run
    assert engine.stats.late + engine.stats.duplicates == len(ordered)
    # The same incidents (keys, ACTIVE openings per key, max severity), none extra, none
    # missing. Not the same change list: series-local rules take each series as it
    # arrives, and a reading overtaken in its own series reaches watermark rules only.
    assert engine.stats.reordered > 0
    assert incidents(got) == incidents(expected)
