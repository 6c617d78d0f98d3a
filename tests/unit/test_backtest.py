"""The backtest core on hand-made streams: episodes, totals, comparison, time parsing."""

from __future__ import annotations

import io
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pantau.city import City
from pantau.clock import ManualClock
from pantau.incidents import ConditionState, DedupKey, Hazard, Severity
from pantau.readings import Reading
from pantau.zoneindex import ZoneIndex
from rules import backtest as bt
from rules.backtest import backtest, compare, parse_when, per_kecamatan, write_report
from rules.rulespec import RuleSet, load_rules

S = ConditionState
T0 = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)
STATION = "wl-alam-jaya-001"  # alert 110 cm, danger 145 cm

FLOOD = """\
lateness: 2m
rules:
  - id: flood
    kind: threshold
    hazard: flood
    description: level above Siaga II, awas at Siaga I
    applies_to: {{kinds: [water_level_station]}}
    zone_level: kelurahan
    metric: water_level
    raise: {raise_}
    clear: {raise_} - 10
    raise_for: 3m
    clear_for: 5m
    steps:
      - {{severity: awas, at: levels.danger_cm, clear: levels.danger_cm - 5}}
"""


def rules_file(tmp_path: Path, raise_: str = "levels.alert_cm", name: str = "r.yaml") -> Path:
    path = tmp_path / name
    path.write_text(FLOOD.format(raise_=raise_))
    return path


def ruleset(tmp_path: Path, city: City, raise_: str = "levels.alert_cm") -> RuleSet:
    return load_rules(rules_file(tmp_path, raise_, f"r{abs(hash(raise_))}.yaml"), city)


def at(minute: float) -> datetime:
    return T0 + timedelta(minutes=minute)


def stream(values: list[float], start: float = 0) -> list[Reading]:
    return [
        Reading(device_id=STATION, metric="water_level", value=v, unit="cm", time=at(start + i))
        for i, v in enumerate(values)
    ]


# Two floods: one peaking at awas that clears, one at waspada still up at the end.
STORM = [50.0] * 5 + [120.0] * 5 + [150.0] * 5 + [90.0] * 10 + [50.0] * 5 + [130.0] * 8


def test_episodes_open_on_active_clear_on_cleared_and_carry_their_evidence(
    tmp_path: Path, city: City
) -> None:
    dev = city.devices[STATION]
    result = backtest(city, ruleset(tmp_path, city), stream(STORM), until=at(len(STORM)))
    key = DedupKey("flood", dev.kelurahan_id, Hazard.FLOOD)
    assert [(e.key, e.opened_at, e.cleared_at) for e in result.episodes] == [
        (key, at(8), at(20)),  # breach from minute 5, held 3 min; recovering from 15, 5 min
        (key, at(33), None),  # breach from 30, still active at the end
    ]
    first, second = result.episodes
    assert first.max_severity is Severity.AWAS and first.peak_value == 150.0
    assert first.metric == "water_level" and first.device_ids == (STATION,)
    assert first.first_at == at(5) and first.last_state is S.CLEARED
    assert second.max_severity is Severity.WASPADA and second.peak_value == 130.0
    assert second.last_state is S.ACTIVE
    assert result.per_hazard() == {Hazard.FLOOD: 2}
    assert result.stats.readings == len(STORM) and result.stats.late == 0


def test_a_breach_shorter_than_the_hold_is_no_incident(tmp_path: Path, city: City) -> None:
    result = backtest(
        city, ruleset(tmp_path, city), stream([50, 120, 120, 50, 50, 50]), until=at(10)
    )
    assert result.episodes == ()
    assert result.stats.changes == 2  # pending, then cleared: seen, not an incident


def test_a_silent_station_leaves_its_episode_open_with_no_data(tmp_path: Path, city: City) -> None:
    # Up at 130 for 5 minutes, then nothing for an hour: no_data after 10 min, not cleared.
    result = backtest(city, ruleset(tmp_path, city), stream([130.0] * 5), until=at(60))
    (e,) = result.episodes
    assert e.cleared_at is None and e.last_state is S.NO_DATA


def test_readings_at_or_after_until_are_not_replayed(tmp_path: Path, city: City) -> None:
    result = backtest(city, ruleset(tmp_path, city), stream(STORM), until=at(10))
    (e,) = result.episodes
    assert e.cleared_at is None and e.max_severity is Severity.WASPADA  # 150 cm came at 10
    assert result.stats.accepted == 10


def test_order_within_the_lateness_does_not_change_the_result(tmp_path: Path, city: City) -> None:
    rules = ruleset(tmp_path, city)
    ordered = stream(STORM)
    shuffled = list(ordered)
    rng = random.Random(7)
    # swap neighbours only: each reading stays within a minute of its place (lateness 2m)
    for i in range(0, len(shuffled) - 1, 2):
        if rng.random() < 0.5:
            shuffled[i], shuffled[i + 1] = shuffled[i + 1], shuffled[i]
    a = backtest(city, rules, ordered, until=at(len(STORM)))
    b = backtest(city, rules, shuffled, until=at(len(STORM)))
    assert a.episodes == b.episodes and b.stats.late == 0


def test_a_stricter_file_raises_fewer_and_compare_says_which(tmp_path: Path, city: City) -> None:
    readings = stream(STORM)
    base = backtest(city, ruleset(tmp_path, city), readings, until=at(len(STORM)))
    strict = backtest(
        city, ruleset(tmp_path, city, "levels.danger_cm"), readings, until=at(len(STORM))
    )
    assert len(strict.episodes) == 1 < len(base.episodes)
    diff = compare(base, strict)
    assert diff.added == ()
    # the awas flood overlaps the strict run's only episode; the second flood is gone
    assert [e.opened_at for e in diff.removed] == [at(33)]
    assert compare(base, base).added == compare(base, base).removed == ()


def test_report_names_zones_and_totals_per_hazard_and_kecamatan(tmp_path: Path, city: City) -> None:
    dev = city.devices[STATION]
    zones = ZoneIndex.for_city(city)
    result = backtest(city, ruleset(tmp_path, city), stream(STORM), until=at(len(STORM)))
    assert per_kecamatan(result, zones) == {dev.kecamatan_id: 2}
    out = io.StringIO()
    write_report(result, zones, out, title="r.yaml", start=T0)
    text = out.getvalue()
    name = zones.zone(dev.kelurahan_id).name
    assert "2026-11-27T08:08Z  2026-11-27T08:20Z          flood" in text
    assert f"{dev.kelurahan_id} ({name})" in text
    assert "awas     150 water_level  wl-alam-jaya-001" in text
    assert bt.STILL_ACTIVE in text
    assert "per hazard:    flood 2" in text
    assert f"per kecamatan: {dev.kecamatan_id} 2" in text


def test_parse_when_takes_iso_with_a_zone_and_relative_times() -> None:
    clock = ManualClock(T0)
    assert parse_when("2026-11-27T08:00Z", clock) == T0
    assert parse_when("2026-11-27T15:00+07:00", clock) == T0
    assert parse_when("-6h", clock) == T0 - timedelta(hours=6)
    assert parse_when("-30m", clock) == T0 - timedelta(minutes=30)
    assert parse_when("-2d", clock) == T0 - timedelta(days=2)
    assert parse_when("now", clock) == T0
    with pytest.raises(ValueError, match="no time zone"):
        parse_when("2026-11-27T08:00", clock)
    with pytest.raises(ValueError, match="not a time"):
        parse_when("yesterday", clock)


def test_a_bad_rule_file_prints_file_and_line_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    text = FLOOD.format(raise_="levels.alert_cm")
    bad.write_text(text.replace("metric: water_level", "metric: nope"))
    window = ["--from", "-6h", "--to", "now"]  # `-6h` is a value, not an option
    code = bt.main([*window, "--rules", str(bad)])
    assert code == 2
    err = capsys.readouterr().err
    assert f"{bad}:9:" in err  # the line of `metric: nope`
    assert "nope" in err
