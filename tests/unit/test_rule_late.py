"""Late is not lost: the default rules on the storm as late uplinks deliver it, against
the oracle (testkit.truth), which knows what the devices measured.

storm-late-uplinks is storm-karawaci with Karawaci's gateway down for 30 minutes at the
flood's onset (then its backlog), store-and-forward loggers uploading every 10 minutes
in Tangerang and Cibodas, and clocks 5 minutes slow (Neglasari's stations) and 4 minutes
fast (Periuk's rain gauges). The engine is fed message by message in delivery order,
once as fast as possible (its clock never moves: nothing is ever idle) and once in real
time (its clock follows delivery and ticks every simulated minute, so silent sources do
go idle): both must raise exactly what the truth expects.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pantau.city import City
from pantau.clock import ManualClock
from pantau.incidents import ConditionChange, ConditionState, DedupKey, Hazard, Severity
from rules.engine import RuleEngine
from rules.rulespec import load_rules
from simulators.messages import SimMessage, iter_messages
from simulators.scenario import Scenario, StoreAndForward, find_scenario, load_scenario
from testkit.truth import GroundTruth, ground_truth
from tests.unit.rule_incidents import incidents
from tests.unit.test_rule_oracle import observed

DEFAULT = Path(__file__).resolve().parents[2] / "config" / "rules.yaml"
HOURS = 2.0
S = ConditionState


def severities(changes: list[tuple[datetime, ConditionChange]]) -> dict[DedupKey, Severity | None]:
    return {k: sev for k, (_, sev) in incidents(c for _, c in changes).items()}


def knowing_loggers(city: City, scenario: Scenario) -> City:
    """The registry as the city keeps it: the loggers' upload interval is declared."""
    every = {
        d: f.every_s for f in scenario.faults if isinstance(f, StoreAndForward) for d in f.devices
    }
    devices = {
        k: replace(d, uploads_every_s=every[k]) if k in every else d
        for k, d in city.devices.items()
    }
    return replace(city, devices=devices)


@pytest.fixture(scope="module")
def late(city: City) -> tuple[Scenario, datetime, GroundTruth, list[SimMessage]]:
    scenario = load_scenario(find_scenario("storm-late-uplinks"), city)
    end = scenario.start + timedelta(hours=HOURS)
    truth = ground_truth(city, scenario, load_rules(DEFAULT, city), end)
    # Everything measured before the end, as the truth counts it (the loggers' last
    # batch leaves at the end).
    messages = [m for m in iter_messages(city, scenario) if m.taken_at < end]
    return scenario, end, truth, messages


def play(
    city: City, messages: list[SimMessage], end: datetime, *, real_time: bool
) -> tuple[RuleEngine, list[tuple[datetime, ConditionChange]]]:
    """Changes with the engine clock's time when each was emitted."""
    clock = ManualClock(datetime(2000, 1, 1, tzinfo=UTC))
    engine = RuleEngine(city, load_rules(DEFAULT, city), clock)
    out: list[tuple[datetime, ConditionChange]] = []
    next_tick = messages[0].sim_time
    for m in messages:
        if real_time:
            clock.set(m.sim_time)
            while next_tick <= m.sim_time:
                out += [(m.sim_time, c) for c in engine.tick()]
                next_tick += timedelta(minutes=1)
        out += [(clock.now(), c) for c in engine.ingest(m.readings)]
    out += [(end, c) for c in engine.advance_watermark(end)]
    return engine, out


def test_the_scenario_delivers_late(
    late: tuple[Scenario, datetime, GroundTruth, list[SimMessage]],
) -> None:
    _, _, _, messages = late
    lag = [(m.sim_time - m.reading_time).total_seconds() for m in messages if m.metrics]
    assert max(lag) >= 29 * 60  # the outage's backlog
    assert sum(600 > x >= 300 for x in lag) > 1000  # loggers, slow clocks
    assert min(lag) == -240  # fast clocks


def test_as_fast_as_possible_matches_the_oracle(
    city: City, late: tuple[Scenario, datetime, GroundTruth, list[SimMessage]]
) -> None:
    _, end, truth, messages = late
    engine, changes = play(city, messages, end, real_time=False)
    verdict = truth.check(observed(c for _, c in changes))
    assert verdict.exact, verdict.summary()
    assert verdict.sure >= 80, verdict.summary()
    assert engine.stats.stale == engine.stats.too_old == 0


def test_in_real_time_matches_the_oracle_and_the_fast_run(
    city: City, late: tuple[Scenario, datetime, GroundTruth, list[SimMessage]]
) -> None:
    scenario, end, truth, messages = late
    known = knowing_loggers(city, scenario)
    engine, changes = play(known, messages, end, real_time=True)
    verdict = truth.check(observed(c for _, c in changes))
    assert verdict.exact, verdict.summary()
    assert engine.stats.stale == engine.stats.too_old == 0
    # The same incident set (keys, highest severity) as the fast run. Not the same
    # openings: Periuk's rain gauges really are silent 20 minutes (a dropout); in real
    # time they go idle and heavy-rain there turns no_data and back (the store keeps
    # its one incident open), fast they hold Periuk back and their return fires each
    # one's silence against the other's current verdict (rules/engine.py, limits).
    _, fast = play(city, messages, end, real_time=False)
    assert severities(changes) == severities(fast)
    # Karawaci's floods whose hold completed inside the outage open when the backlog
    # arrives, at their device time: the detection delay is what the outage cost.
    karawaci = {d.kelurahan_id for d in city.devices.values() if d.kecamatan_id == "kec-karawaci"}
    outage_end = scenario.start + timedelta(hours=1)
    delayed = [
        (emitted - c.at)
        for emitted, c in changes
        if c.state is S.ACTIVE
        and c.key.hazard is Hazard.FLOOD
        and c.key.zone_id in karawaci
        and c.at < outage_end <= emitted
    ]
    assert delayed, "no flood completed by the backlog"
    assert max(delayed) > timedelta(minutes=5)
