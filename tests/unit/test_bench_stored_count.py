"""bench.stored_count's polling step and the reports' bound on its error."""

from __future__ import annotations

import time

from bench.ingest_report import CaseResult, seconds_cell
from bench.stored_count import (
    COUNTER_POLL_S,
    FINE_POLL_S,
    NEAR_POLL_S,
    POLL_S,
    next_poll_s,
    poll_written,
)
from bench.suite_report import ingest_verdicts


def test_the_step_shrinks_as_the_total_nears() -> None:
    assert next_poll_s(0, 100_000, 0.5) == POLL_S  # nothing yet: no rate to go by
    assert next_poll_s(10_000, 100_000, 0.5) == POLL_S  # 4.5 s to go
    # 20,000/s so far, 40,000 to go: 2 s predicted; 100,000/s lately: 0.4 s, half of it
    assert abs(next_poll_s(60_000, 100_000, 3.0, 100_000) - 0.2) < 1e-9
    # past 90 %: at most every NEAR_POLL_S whatever the rates say
    assert next_poll_s(90_000, 100_000, 9.0) == NEAR_POLL_S
    assert next_poll_s(99_990, 100_000, 2.0) == FINE_POLL_S


def case(key: str, unit: str, stored: int, seconds: float, res: float | None) -> CaseResult:
    return CaseResult(
        key=key,
        name=key,
        unit=unit,
        sent=stored,
        stored=stored,
        seconds=seconds,
        messages=stored,
        resolution_s=res,
    )


def test_the_verdict_is_taken_at_the_conservative_end_and_names_the_bound() -> None:
    cases = [
        case("broker_native", "msg/s", 100_000, 1.0, None),
        case("native", "readings/s", 100_000, 1.7, 0.05),  # 0.59x; at most 0.61x
        case("influx", "points/s", 50_000, 0.2, None),
        case("senml", "readings/s", 100_000, 0.6, 0.01),
    ]
    native, senml = ingest_verdicts(cases)
    assert native.met is False
    assert "= 0.59x (<= 0.61x: stored up to 50 ms before seen)" in native.measured
    assert senml.met is True
    assert seconds_cell(cases[1]) == "1.700 (-50 ms)"
    assert seconds_cell(cases[0]) == "1.00"


def test_poll_written_times_the_counter_reaching_the_total() -> None:
    counts = iter([0, 40_000, 90_000, 100_000])
    started = time.monotonic()
    seen = poll_written(lambda: next(counts), 100_000, started, lambda: True)
    assert seen is not None and seen.count == 100_000
    # Four reads COUNTER_POLL_S apart: seen after the third sleep, at most one step late.
    assert 3 * COUNTER_POLL_S <= seen.seconds < 3 * COUNTER_POLL_S + 0.5
    assert seen.resolution_s < seen.seconds


def test_poll_written_gives_up_when_the_consumer_is_gone() -> None:
    assert poll_written(lambda: 5, 100_000, time.monotonic(), lambda: False) is None
