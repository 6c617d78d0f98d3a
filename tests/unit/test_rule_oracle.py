"""The default rules against the simulator's ground truth (testkit.truth).

The truth is judged from noise-free signals, offline; the engine sees the noisy,
faulty stream one reading at a time. Every incident the engine raises must be one the
truth expects or allows (precision 100 %), every expected one must be raised (recall
100 %), at a severity the truth allows, in the truth's order where it is unambiguous.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pantau.city import City
from pantau.clock import ManualClock
from pantau.incidents import ConditionChange, ConditionState, DedupKey, Severity
from pantau.readings import Reading
from rules.engine import RuleEngine
from rules.rulespec import RuleSet, load_rules
from simulators.messages import iter_messages
from simulators.scenario import Scenario, find_scenario, load_scenario
from testkit.truth import GroundTruth, Observed, ground_truth

DEFAULT = Path(__file__).resolve().parents[2] / "config" / "rules.yaml"
HOURS = {"storm-karawaci": 2.0, "storm-ciledug": 2.0, "calm-day": 3.0}


def observed(changes: Iterable[ConditionChange]) -> list[Observed]:
    """Incidents as the store would hold them: first ACTIVE, highest severity since."""
    opened: dict[DedupKey, datetime] = {}
    worst: dict[DedupKey, Severity] = {}
    for c in changes:
        if c.state is ConditionState.ACTIVE:
            opened.setdefault(c.key, c.at)
        if c.key in opened and c.severity is not None:
            worst[c.key] = max(worst.get(c.key, c.severity), c.severity)
    return [Observed(k, at, worst[k]) for k, at in opened.items()]


def readings_of(city: City, scenario: Scenario, end: datetime) -> list[Reading]:
    out: list[Reading] = []
    for message in iter_messages(city, scenario):
        if message.sim_time >= end:
            break
        out += message.readings
    return out


def run(city: City, rules: RuleSet, readings: Iterable[Reading], end: datetime) -> list[Observed]:
    engine = RuleEngine(city, rules, ManualClock(datetime(2000, 1, 1, tzinfo=UTC)))
    changes = engine.ingest(readings)
    changes += engine.advance_watermark(end)
    return observed(changes)


@pytest.fixture(scope="module")
def cases(city: City) -> dict[str, tuple[Scenario, datetime, GroundTruth, list[Reading]]]:
    rules = load_rules(DEFAULT, city)
    out = {}
    for name, hours in HOURS.items():
        scenario = load_scenario(find_scenario(name), city)
        end = scenario.start + timedelta(hours=hours)
        truth = ground_truth(city, scenario, rules, end)
        out[name] = (scenario, end, truth, readings_of(city, scenario, end))
    return out


@pytest.mark.parametrize("name", list(HOURS))
def test_the_engine_raises_exactly_what_the_truth_expects(
    name: str, city: City, cases: dict[str, tuple[Scenario, datetime, GroundTruth, list[Reading]]]
) -> None:
    _, end, truth, readings = cases[name]
    verdict = truth.check(run(city, load_rules(DEFAULT, city), readings, end))
    assert verdict.exact, verdict.summary()
    assert verdict.precision == verdict.recall == 1.0
    if name.startswith("storm"):
        assert verdict.sure >= 80, verdict.summary()  # floods, rain, pumps, offline gauges
        assert len(truth.possible) <= verdict.sure // 3  # the truth is rarely undecided


def test_delivered_twice_and_shuffled_within_lateness_still_matches(
    city: City, cases: dict[str, tuple[Scenario, datetime, GroundTruth, list[Reading]]]
) -> None:
    _, end, truth, readings = cases["storm-karawaci"]
    rules = load_rules(DEFAULT, city)
    rng = random.Random(5)
    bound = rules.lateness.total_seconds() * 0.9
    delivered = sorted(
        (
            r.time + timedelta(seconds=rng.uniform(0, bound) if rng.random() < 0.1 else 0.0),
            rng.random(),
            r,
        )
        for r in readings * 2
    )
    verdict = truth.check(run(city, rules, (r for *_, r in delivered), end))
    assert verdict.exact, verdict.summary()


def test_the_oracle_catches_a_wrong_threshold_and_a_lost_stream(
    city: City,
    cases: dict[str, tuple[Scenario, datetime, GroundTruth, list[Reading]]],
    tmp_path: Path,
) -> None:
    """The test of the test: engines that are wrong in known ways do not pass."""
    _, end, truth, readings = cases["storm-karawaci"]
    text = DEFAULT.read_text(encoding="utf-8")
    late = tmp_path / "late.yaml"  # floods raised 25 cm late
    late.write_text(text.replace("raise: levels.alert_cm\n", "raise: levels.alert_cm + 25\n", 1))
    verdict = truth.check(run(city, load_rules(late, city), readings, end))
    assert verdict.missing, verdict.summary()

    eager = tmp_path / "eager.yaml"  # fair roads (IRI 5 m/km) reported as poor
    eager.write_text(
        text.replace("    raise: 8\n    clear: 7.5\n", "    raise: 5\n    clear: 4.5\n", 1)
    )
    verdict = truth.check(run(city, load_rules(eager, city), readings, end))
    assert verdict.unexpected, verdict.summary()

    # A consumer that lost every tenth reading misses floods and invents offline sensors.
    lossy = [r for i, r in enumerate(readings) if i % 10]
    verdict = truth.check(run(city, load_rules(DEFAULT, city), lossy, end))
    assert not verdict.exact, verdict.summary()
