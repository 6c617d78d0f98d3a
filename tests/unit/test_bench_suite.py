"""The benchmark suite's pure helpers: the pacer's schedule, the sweep's ladder and
stopping rules, the targets and the report. (No benchmark runs here: those measure,
they do not test.)"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from bench.ingest_report import CaseResult
from bench.knee import (
    MAX_LAG_S,
    NODERED,
    PANTAU_NATIVE,
    Curve,
    Ladder,
    LoadPoint,
    knee_table,
    ladder,
    load_table,
    stop_after,
    sweep,
)
from bench.pacer import due, interleave
from bench.suite_report import (
    LatencyPoint,
    latency_table,
    plot_latency,
    plot_throughput,
    rules_verdict,
    verdicts,
)


def test_due_follows_the_schedule_and_catches_up() -> None:
    assert due(1000, 0.0, 0, 100) == 0
    assert due(1000, 0.010, 0, 100) == 10
    assert due(1000, 0.010, 10, 100) == 0
    # a thread that slept late writes the whole backlog at once, never past the total
    assert due(1000, 0.050, 10, 100) == 40
    assert due(1000, 5.0, 90, 100) == 10
    assert due(1000, 5.0, 100, 100) == 0


def test_interleave_is_round_robin_and_sends_everything() -> None:
    assert interleave([2, 2]) == [0, 1, 0, 1]
    assert interleave([3, 1, 0]) == [0, 1, 0, 0]
    assert sorted(interleave([5, 2, 7])) == [0] * 5 + [1] * 2 + [2] * 7


def test_ladder_doubles_up_to_the_cap() -> None:
    assert ladder(250, 3000, 12) == [250, 500, 1000, 2000, 3000]
    # the last doubling within 10 % of the cap: no extra point at the cap
    assert ladder(250, 2100, 12) == [250, 500, 1000, 2000]
    assert ladder(5000, 3000, 12) == [3000]  # a start above the cap: the cap alone
    assert ladder(1, 10**9, 4) == [1, 2, 4, 8]  # the plan's bound
    with pytest.raises(ValueError):
        ladder(0, 100, 3)


def point(
    system: str,
    offered: float,
    stored: int,
    seconds: float,
    sent: int = 1000,
    publish_s: float | None = None,
    gave_up: bool = False,
) -> LoadPoint:
    offer_s = sent / offered
    return LoadPoint(
        system=system,
        offered=offered,
        readings_per_message=1,
        planned_s=offer_s,
        sent=sent,
        stored=stored,
        seconds=seconds,
        achieved=offered,
        publish_s=offer_s if publish_s is None else publish_s,
        gave_up=gave_up,
    )


def test_a_lossy_point_is_a_failure_not_a_figure() -> None:
    lossy = point(PANTAU_NATIVE, 4000, 990, 0.3)
    assert lossy.lost and lossy.failed
    row = load_table([lossy]).splitlines()[-1]
    assert "FAILED: LOST 10 of 1,000" in row
    assert "3,300" not in row  # no throughput figure for it


def test_lag_counts_from_the_end_of_publishing() -> None:
    # 10 s of offer, stored 4 s later: kept up
    assert not point(PANTAU_NATIVE, 100, 1000, 14.0).lagged
    # stored 6 s after the offer ended: the knee
    late = point(PANTAU_NATIVE, 100, 1000, 16.0)
    assert late.lagged and late.failed and not late.lost
    assert late.lag_s == pytest.approx(6.0)
    # the publishers ran 5 s late: that is not the consumer's lag, but it is their cap
    slow_pub = point(PANTAU_NATIVE, 100, 1000, 16.0, publish_s=15.0)
    assert slow_pub.lag_s == pytest.approx(1.0)
    assert not slow_pub.failed and slow_pub.publisher_bound
    # waiting stopped while the count still rose: lagged, not lost
    unfinished = point(PANTAU_NATIVE, 100, 600, 45.0, gave_up=True)
    assert unfinished.lagged and not unfinished.lost


def test_the_doubling_stops_at_the_consumer_or_the_cap_and_says_which() -> None:
    ok = point(PANTAU_NATIVE, 1000, 1000, 1.5)
    assert stop_after(ok, last=False, cap=8000, cap_source="fan-in") is None
    reason, by_consumer = stop_after(ok, last=True, cap=8000, cap_source="fan-in") or ("", None)
    assert by_consumer is False and reason.startswith("cap, not the consumer: 8,000/s")
    lost = point(PANTAU_NATIVE, 2000, 999, 1.0)
    reason, by_consumer = stop_after(lost, last=False, cap=8000, cap_source="x") or ("", None)
    assert by_consumer is True and "LOST 1 of 1,000" in reason
    lagged = point(NODERED, 100, 1000, 10.0 + MAX_LAG_S + 1)
    reason, by_consumer = stop_after(lagged, last=True, cap=8000, cap_source="x") or ("", None)
    assert by_consumer is True and "lagged 6.0 s" in reason  # a knee beats the cap
    pushed = point(PANTAU_NATIVE, 1000, 1000, 2.1, publish_s=2.0)
    reason, by_consumer = stop_after(pushed, last=False, cap=8000, cap_source="x") or ("", None)
    assert by_consumer is False and "publishers, not the consumer" in reason


def curve(system: str, points: list[LoadPoint], by_consumer: bool = True) -> Curve:
    return Curve(system, tuple(points), 30_000, "fan-in", "stop", by_consumer)


def test_best_is_the_highest_lossless_point_that_kept_up() -> None:
    c = curve(
        PANTAU_NATIVE,
        [
            point(PANTAU_NATIVE, 1000, 1000, 1.2),  # 833/s
            point(PANTAU_NATIVE, 2000, 2000, 1.6, sent=2000),  # 1,250/s
            point(PANTAU_NATIVE, 4000, 4000, 8.0, sent=4000),  # lagged 7 s: 500/s
        ],
    )
    assert c.best is not None and c.best.offered == 2000
    assert c.knee is not None and c.knee.offered == 4000
    assert "**1,250**" in knee_table([c])


def case(key: str, rate: float, lost: bool = False, messages: int = 1000) -> CaseResult:
    return CaseResult(
        key=key,
        name=key,
        unit="/s",
        sent=1000,
        stored=999 if lost else 1000,
        seconds=1000 / rate,
        messages=messages,
    )


def test_verdicts_measure_issue_21s_targets() -> None:
    curves = [
        curve(PANTAU_NATIVE, [point(PANTAU_NATIVE, 8000, 1000, 0.25)]),  # 4,000/s
        curve(NODERED, [point(NODERED, 1000, 1000, 2.0), point(NODERED, 2000, 900, 1.0)]),
    ]
    cases = [
        case("broker_native", 20_000),
        case("native", 13_000),  # 0.65x the fan-in
        case("influx", 100_000),
        case("senml", 50_000, messages=20),  # 0.5x InfluxDB
        case("nodered", 1_000),
    ]
    latency = [LatencyPoint(1000, 1000, 10, 10, 40.0, 120.0, rules_cores=0.05)]
    native, senml, rules, sweep, burst = verdicts(cases, curves, latency)
    assert native.met is True and "0.65x" in native.measured
    assert senml.met is False and "0.50x" in senml.measured
    assert rules.met is True and "20,000 readings/CPU-s" in rules.measured
    assert sweep.met is True and "8.0x" in sweep.measured  # 4,000 vs 500
    assert burst.met is True and "13.0x" in burst.measured


def test_a_capped_pantau_curve_is_a_lower_bound_and_a_lossy_one_is_named() -> None:
    capped = curve(PANTAU_NATIVE, [point(PANTAU_NATIVE, 2000, 1000, 0.5)], by_consumer=False)
    peer = curve(NODERED, [point(NODERED, 1000, 1000, 2.0)])
    sweep = verdicts([], [capped, peer], [])[3]
    assert "lower bound" in sweep.measured and sweep.met is False  # 4x
    lossy = curve(
        PANTAU_NATIVE, [point(PANTAU_NATIVE, 1000, 1000, 0.1), point(PANTAU_NATIVE, 2000, 9, 1)]
    )
    assert "Pantau LOST data at 2,000/s" in verdicts([], [lossy, peer], [])[3].measured


def test_rules_verdict_needs_the_rate_and_the_latency() -> None:
    slow = LatencyPoint(1000, 1000, 10, 10, 40.0, 300.0, rules_cores=0.05)
    assert rules_verdict([slow]).met is False
    costly = LatencyPoint(1000, 1000, 10, 10, 40.0, 100.0, rules_cores=0.2)  # 5,000/CPU-s
    assert rules_verdict([costly]).met is False
    missed = LatencyPoint(4000, 4000, 3, 10, 40.0, 100.0, rules_cores=1.0)
    fine = LatencyPoint(1000, 1000, 10, 10, 40.0, 100.0, rules_cores=0.05)
    verdict = rules_verdict([fine, missed])
    assert verdict.met is True and "missing alerts at 4,000/s" in verdict.measured
    assert rules_verdict([missed]).met is None


def step(rate: int, per_cpu: float, p99: float = 20.0, alerts: int = 10) -> LatencyPoint:
    """A staircase step as bench.rules_stairs reports it (its own sustained judgement)."""
    kept = alerts == 10 and p99 < 250
    return LatencyPoint(rate, rate, alerts, 10, 10.0, p99, rate / per_cpu, kept, per_cpu)


def test_rules_verdict_takes_the_cpu_at_2000_and_names_the_highest_sustained_rate() -> None:
    ladder = [step(500, 9_000), step(1000, 12_000), step(2000, 16_000), step(4000, 25_000)]
    verdict = rules_verdict([*ladder, step(8000, 30_000, p99=300.0)])
    assert verdict.met is True
    assert "16,000 readings/CPU-s at 2,000/s" in verdict.measured
    assert "highest sustained 4,000/s" in verdict.measured
    assert "stopped: p99 300 ms at 8,000/s" in verdict.measured
    lagged = rules_verdict([*ladder, step(8000, math.nan, alerts=8)])
    assert lagged.met is True and "8,000/s -/CPU-s" in lagged.measured
    # cheaper per reading at higher rates does not count: 2,000/s is the reference
    costly = [step(500, 9_000), step(2000, 14_000), step(4000, 25_000)]
    assert rules_verdict(costly).met is False
    # a ladder that stops below the reference rate does not meet it
    short = [step(500, 20_000), step(1000, 20_000), step(2000, 20_000, alerts=7)]
    verdict = rules_verdict(short)
    assert verdict.met is False and "missing alerts at 2,000/s (7/10)" in verdict.measured


def test_latency_table_flags_missing_alerts() -> None:
    table = latency_table([LatencyPoint(1000, 998, 9, 10, 40.0, 120.0)])
    assert "9/10 MISSING" in table


def test_throughput_plot_is_written(tmp_path: Path) -> None:
    out = tmp_path / "t.png"
    curves = [
        curve(PANTAU_NATIVE, [point(PANTAU_NATIVE, 1000, 1000, 1.0)], by_consumer=False),
        curve(NODERED, [point(NODERED, 250, 1000, 4.5), point(NODERED, 1000, 900, 4.0)]),
    ]
    bursts = [case("native", 8_000), case("nodered", 500, lost=True)]
    plot_throughput(curves, bursts, {"broker, msg/s": 20_000.0}, "t", out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_sweep_doubles_each_consumer_to_its_own_stop() -> None:
    capacity = {PANTAU_NATIVE: 2500.0, NODERED: 100.0}
    offered: list[tuple[str, float]] = []

    def measure(system: str, rate: float) -> LoadPoint:
        """A consumer storing at most its capacity: 10 s of offer, then the backlog."""
        offered.append((system, rate))
        sent = int(rate * 10)
        seconds = max(10.0, sent / capacity[system])
        return point(system, rate, sent, seconds, sent=sent)

    ladders = [Ladder(PANTAU_NATIVE, 500, 5000, "fan-in"), Ladder(NODERED, 250, 5000, "fan-in")]
    native, peer = sweep(ladders, 12, measure, lambda _: None)
    # 500, 1,000, 2,000 keep up; 4,000 lags (40,000 at 2,500/s = 16 s): the knee
    assert [p.offered for p in native.points] == [500, 1000, 2000, 4000]
    assert native.consumer_stopped and native.best is not None and native.best.offered == 2000
    # 250 lags at once: halved to 125 (lag 2.5 s: kept up), and there it ends
    assert [p.offered for p in peer.points] == [250, 125]
    assert peer.knee is not None and peer.knee.offered == 250
    assert peer.best is not None and peer.best.offered == 125
    assert offered[:2] == [(PANTAU_NATIVE, 500), (NODERED, 250)]  # side by side


def test_a_consumer_that_keeps_up_to_the_cap_is_stopped_by_the_cap() -> None:
    def measure(system: str, rate: float) -> LoadPoint:
        if rate > 4000:
            raise RuntimeError("no probe stored")
        return point(system, rate, int(rate), 1.0, sent=int(rate))

    (capped,) = sweep([Ladder(PANTAU_NATIVE, 1000, 3000, "fan-in")], 12, measure, print)
    assert [p.offered for p in capped.points] == [1000, 2000, 3000]
    assert not capped.consumer_stopped and capped.stop.startswith("cap, not the consumer")
    (broken,) = sweep([Ladder(PANTAU_NATIVE, 4000, 9000, "x")], 12, measure, print)
    assert broken.error is not None and "no probe stored" in broken.error


def test_a_latency_plot_of_no_points_is_written(tmp_path: Path) -> None:
    """The alert-latency stage failing must not take the suite's report with it."""
    out = tmp_path / "l.png"
    plot_latency([], "t", out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_burst_node_red_lost_has_no_ratio_and_does_not_fail_pantau() -> None:
    cases = [case("native", 5_000), case("nodered", 300, lost=True)]
    burst = verdicts(cases, [], [])[4]
    assert burst.met is None and "Node-RED LOST 1" in burst.measured
    assert (
        verdicts([case("native", 5_000, lost=True), case("nodered", 300)], [], [])[4].met is False
    )
