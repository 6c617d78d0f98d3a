"""The benchmark suite's pure helpers: the pacer's schedule, the targets and the report.
(No benchmark runs here: those measure, they do not test.)"""

from __future__ import annotations

from pathlib import Path

from bench.ingest_report import CaseResult
from bench.load import NODERED, PANTAU_NATIVE, LoadPoint, load_table
from bench.pacer import due, interleave
from bench.suite_report import LatencyPoint, latency_table, plot_throughput, verdicts


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


def point(system: str, offered: float, stored: int, seconds: float, sent: int = 1000) -> LoadPoint:
    return LoadPoint(
        system=system,
        offered=offered,
        readings_per_message=1,
        planned_s=sent / offered,
        sent=sent,
        stored=stored,
        seconds=seconds,
        achieved=offered,
        publish_s=seconds,
    )


def case(key: str, rate: float, lost: bool = False) -> CaseResult:
    return CaseResult(
        key=key,
        name=key,
        unit="/s",
        sent=1000,
        stored=999 if lost else 1000,
        seconds=1000 / rate,
        messages=1000,
    )


def test_a_lossy_point_is_a_failure_not_a_figure() -> None:
    lossy = point(PANTAU_NATIVE, 4000, 990, 0.25)
    assert lossy.lost
    row = load_table([lossy]).splitlines()[-1]
    assert "FAILED: LOST 10" in row
    assert "3,960" not in row  # no throughput figure for it


def test_verdicts_use_the_best_lossless_points() -> None:
    points = [
        point(PANTAU_NATIVE, 1000, 1000, 1.0),
        point(PANTAU_NATIVE, 8000, 1000, 0.25),  # 4,000/s
        point(NODERED, 1000, 1000, 4.0),  # 250/s
        point(NODERED, 2000, 900, 1.0),  # lost: ignored, and not Pantau's loss
    ]
    cases = [case("broker", 20_000), case("influx", 100_000), case("senml", 12_000)]
    peer, burst, packed = verdicts(cases, points)
    assert peer.met is True
    assert "16.0x" in peer.measured
    assert burst.met is None  # no burst cases in this run
    assert packed.met is True  # 12,000 >= 0.5 x 20,000 (the broker, the lower)
    assert "broker" in packed.measured


def test_pantau_losing_anything_fails_the_peer_target() -> None:
    points = [
        point(PANTAU_NATIVE, 1000, 1000, 0.1),
        point(PANTAU_NATIVE, 8000, 999, 0.2),
        point(NODERED, 1000, 1000, 4.0),
    ]
    peer = verdicts([], points)[0]
    assert peer.met is False
    assert "LOST" in peer.measured


def test_latency_table_flags_missing_alerts() -> None:
    table = latency_table([LatencyPoint(1000, 998, 9, 10, 40.0, 120.0)])
    assert "9/10 MISSING" in table


def test_throughput_plot_is_written(tmp_path: Path) -> None:
    out = tmp_path / "t.png"
    points = [point(PANTAU_NATIVE, 1000, 1000, 1.0), point(NODERED, 1000, 900, 4.0)]
    plot_throughput(points, {"broker, msg/s": 20_000.0}, "t", out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
