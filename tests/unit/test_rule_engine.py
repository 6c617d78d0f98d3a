"""The rule engine on hand-made streams: hysteresis, holds, severity, lateness, reload."""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pantau.city import City
from pantau.clock import ManualClock
from pantau.devices import Device
from pantau.errors import ConfigErrors
from pantau.incidents import ConditionChange, ConditionState, DedupKey, Hazard, Severity
from pantau.readings import Reading
from rules.engine import RuleEngine
from rules.rulespec import RuleSet, load_rules
from tests.unit.rule_incidents import incidents

S = ConditionState
T0 = datetime(2026, 1, 14, 8, 0, tzinfo=UTC)
DEFAULT = Path(__file__).resolve().parents[2] / "config" / "rules.yaml"

HEAD = """\
lateness: 2m
rules:
"""

FLOOD = """\
  - id: flood
    kind: threshold
    hazard: flood
    description: level above Siaga II, awas at Siaga I
    applies_to: {kinds: [water_level_station]}
    zone_level: kelurahan
    metric: water_level
    raise: levels.alert_cm
    clear: levels.alert_cm - 10
    raise_for: 3m
    clear_for: 5m
    steps:
      - {severity: awas, at: levels.danger_cm, clear: levels.danger_cm - 5}
"""


def ruleset(tmp_path: Path, city: City, body: str, name: str = "rules.yaml") -> RuleSet:
    path = tmp_path / name
    path.write_text(HEAD + body)
    return load_rules(path, city)


def at(minute: float) -> datetime:
    return T0 + timedelta(minutes=minute)


def reading(device: str, metric: str, value: float, minute: float) -> Reading:
    return Reading(device_id=device, metric=metric, value=value, unit="", time=at(minute))


def engine(city: City, rules: RuleSet) -> RuleEngine:
    return RuleEngine(city, rules, ManualClock(T0))


def run(
    eng: RuleEngine, readings: Iterable[Reading], until: float | None = None
) -> list[ConditionChange]:
    out = eng.ingest(readings)
    if until is not None:
        out += eng.advance_watermark(at(until))
    return out


def states(changes: Sequence[ConditionChange]) -> list[tuple[ConditionState, Severity | None]]:
    return [(c.state, c.severity) for c in changes]


def station(city: City) -> Device:
    return city.devices["wl-alam-jaya-001"]  # alert 110 cm, danger 145 cm


def test_oscillation_around_the_raise_level_gives_one_active(tmp_path: Path, city: City) -> None:
    dev = station(city)
    assert dev.levels is not None
    alert = dev.levels.alert_cm
    eng = engine(city, ruleset(tmp_path, city, FLOOD))
    # +-1 % around Siaga II every minute for 30 minutes.
    stream = [
        reading(dev.id, "water_level", alert * (1.01 if i % 2 else 0.99), i) for i in range(31)
    ]
    changes = run(eng, stream, until=40)
    actives = [c for c in changes if c.state is S.ACTIVE]
    assert len(actives) <= 1
    assert [c.state for c in changes] == [S.PENDING, S.ACTIVE]
    assert actives[0].key == DedupKey("flood", dev.kelurahan_id, Hazard.FLOOD)


def test_default_flood_rule_oscillation(city: City) -> None:
    dev = station(city)
    assert dev.levels is not None
    eng = engine(city, load_rules(DEFAULT, city))
    stream = [
        reading(dev.id, "water_level", dev.levels.alert_cm * (1.01 if i % 2 else 0.99), i)
        for i in range(31)
    ]
    changes = [c for c in run(eng, stream, until=40) if c.key.rule_id == "flood-water-level"]
    assert sum(c.state is S.ACTIVE for c in changes) <= 1


def test_hold_durations(tmp_path: Path, city: City) -> None:
    dev = station(city)
    eng = engine(city, ruleset(tmp_path, city, FLOOD))
    # A two-minute breach is shorter than the 3-minute hold: pending, then cleared.
    short = [reading(dev.id, "water_level", v, i) for i, v in enumerate([50, 120, 120, 50])]
    changes = run(eng, short)
    changes += run(eng, [reading(dev.id, "water_level", 50, m) for m in range(4, 10)])
    assert [(c.state, c.at) for c in changes] == [(S.PENDING, at(1)), (S.CLEARED, at(3))]
    # A long breach goes active after the hold; clearing waits for the clear hold.
    values = [120] * 10 + [95] * 8
    stream = [reading(dev.id, "water_level", v, 10 + i) for i, v in enumerate(values)]
    changes = run(eng, stream, until=40)
    assert [(c.state, c.at) for c in changes] == [
        (S.PENDING, at(10)),
        (S.ACTIVE, at(13)),
        (S.RECOVERING, at(20)),
        (S.CLEARED, at(25)),
    ]
    # The episode's evidence: the first breaching reading and the peak.
    evidence = changes[-1].evidence
    assert evidence is not None
    assert evidence.first_at == at(10)
    assert evidence.peak_value == 120
    assert evidence.device_ids == (dev.id,)


def test_severity_rises_and_falls_with_the_value(tmp_path: Path, city: City) -> None:
    dev = station(city)  # alert 110, danger 145
    eng = engine(city, ruleset(tmp_path, city, FLOOD))
    values = [115] * 4 + [150] * 3 + [143] * 2 + [139] * 2 + [90] * 7
    stream = [reading(dev.id, "water_level", v, i) for i, v in enumerate(values)]
    changes = run(eng, stream, until=30)
    assert states(changes) == [
        (S.PENDING, Severity.WASPADA),
        (S.ACTIVE, Severity.WASPADA),
        (S.ACTIVE, Severity.AWAS),  # at 150 >= danger 145
        (S.ACTIVE, Severity.WASPADA),  # 139 < danger - 5; 143 stays awas (hysteresis)
        (S.RECOVERING, Severity.WASPADA),
        (S.CLEARED, None),
    ]
    assert changes[2].at == at(4)
    assert changes[3].at == at(9)
    assert changes[-1].evidence is not None
    assert changes[-1].evidence.peak_value == 150


def _storm_stream(city: City) -> list[Reading]:
    """Two stations and a rain gauge through a flood, plus a silent spell."""
    wl = station(city)
    other = city.devices["wl-babakan-002"]  # alert 235
    gauge = city.devices["rg-alam-jaya-001"]
    out: list[Reading] = []
    for i in range(120):
        level = 60 + 100 * max(0.0, 1 - abs(i - 50) / 35)  # peaks at 160 cm at minute 50
        out.append(reading(wl.id, "water_level", round(level, 1), i))
        out.append(reading(other.id, "water_level", 200 + (i % 7), i))
        if not 70 <= i < 90:  # the gauge goes silent for 20 minutes
            out.append(reading(gauge.id, "rainfall_rate", 30 if 20 <= i < 60 else 2, i))
    return out


def test_duplicates_and_shuffle_within_lateness_change_nothing(city: City) -> None:
    rules = load_rules(DEFAULT, city)
    ordered = _storm_stream(city)
    expected = run(engine(city, rules), ordered, until=200)
    assert {c.key.rule_id for c in expected if c.state is S.ACTIVE} >= {
        "flood-water-level",
        "heavy-rain",
        "sensor-offline",
    }
    rng = random.Random(3)
    lateness = rules.lateness.total_seconds()
    delivered = []
    for r in ordered * 2:  # every reading twice
        delay = rng.uniform(0, lateness) if rng.random() < 0.1 else 0.0
        delivered.append((r.time + timedelta(seconds=delay), rng.random(), r))
    delivered.sort(key=lambda x: (x[0], x[1]))
    eng = engine(city, rules)
    got: list[ConditionChange] = []
    for _, _, r in delivered:
        got += eng.ingest([r])  # one by one, as an MQTT consumer would
    got += eng.advance_watermark(at(200))
    # The same incidents: keys, ACTIVE openings per key, max severity. (Not the same
    # change list: series-local rules see devices' messages in arrival order, and a
    # reading overtaken in its own series reaches the watermark rules only.)
    assert incidents(got) == incidents(expected)
    assert eng.stats.accepted == len(ordered)
    assert eng.stats.duplicates + eng.stats.stale == len(ordered)


def test_a_reading_overtaken_in_its_own_series_is_reported_stale(
    tmp_path: Path, city: City
) -> None:
    dev = station(city)
    eng = engine(city, ruleset(tmp_path, city, FLOOD))
    run(eng, [reading(dev.id, "water_level", 50, i) for i in range(30)])
    assert eng.watermark == at(29) - timedelta(minutes=2)
    # Its own later readings are judged already: nothing can apply these in order.
    old = [reading(dev.id, "water_level", 500, m) for m in (10, 11, 12, 13, 14)]
    assert run(eng, old, until=60) == []
    assert eng.stats.stale == 5
    assert [q.kind for q in eng.drain_quality()] == ["stale"] * 5


def test_a_gateway_backlog_is_judged_and_its_devices_are_not_offline(city: City) -> None:
    """A kecamatan's whole uplink silent for 30 minutes, then its backlog: the flood it
    saw opens (late, at its device time), nobody is declared offline, and the other
    kecamatans' rules do not wait for it."""
    rules = load_rules(DEFAULT, city)
    wl = station(city)
    assert wl.levels is not None
    high = wl.levels.alert_cm + 20
    behind = sorted(d.id for d in city.devices.values() if d.kecamatan_id == wl.kecamatan_id)
    elsewhere = sorted(
        d.id
        for d in city.devices.values()
        if d.kecamatan_id != wl.kecamatan_id and d.kind == "water_level_station"
    )[:20]
    clock = ManualClock(at(0))
    eng = RuleEngine(city, rules, clock)
    changes: list[ConditionChange] = []
    held: list[Reading] = []

    def minute_of(i: int) -> list[Reading]:
        out = [reading(d, "water_level", 50, i) for d in elsewhere]
        for d in behind:
            dev = city.devices[d]
            value = high if d == wl.id and i >= 35 else 50
            out += [reading(d, m, value if m == "water_level" else 80, i) for m in dev.metrics]
        return out

    for i in range(90):
        clock.set(at(i))
        batch = minute_of(i)
        mine = [r for r in batch if r.device_id in behind]
        if 30 <= i < 60:  # the gateway is silent: its readings wait on it
            held += mine
            batch = [r for r in batch if r.device_id not in behind]
        elif i == 60:
            batch = held + batch  # the backlog first, then the live minute
        changes += eng.ingest(batch)
        changes += eng.tick()
    opened = [c for c in changes if c.state is S.ACTIVE]
    flood = [
        c for c in opened if c.key == DedupKey("flood-water-level", wl.kelurahan_id, Hazard.FLOOD)
    ]
    # Its hold (2 min) completes at device time 37, judged when the backlog came.
    assert flood and flood[0].at == at(37)
    # (Kecamatans with devices this test never plays do go offline: they are silent.)
    offline = [
        c
        for c in opened
        if c.key.hazard is Hazard.SENSOR_OFFLINE
        and c.evidence is not None
        and set(c.evidence.device_ids) & set(behind + elsewhere)
    ]
    assert offline == [], offline
    assert eng.stats.stale == 0 and eng.stats.too_old == 0
    kinds = [q.kind for q in eng.drain_quality()]
    assert "source_idle" in kinds and "source_back" in kinds
    # The rest of the city was not held back by the silent kecamatan.
    assert eng.watermark is not None


def test_a_reading_past_the_horizon_is_reported_not_judged(tmp_path: Path, city: City) -> None:
    dev = station(city)
    other = city.devices["wl-babakan-002"]
    eng = engine(city, ruleset(tmp_path, city, FLOOD))
    run(eng, [reading(other.id, "water_level", 50, 60 * 25)])
    assert run(eng, [reading(dev.id, "water_level", 500, m) for m in range(10)]) == []
    assert eng.stats.too_old == 10
    reported = eng.drain_quality()
    assert [(q.kind, q.subject) for q in reported] == [("too_old", dev.id)] * 10


def test_a_silent_sensor_gives_one_offline_change_and_clears(city: City) -> None:
    rules = load_rules(DEFAULT, city)
    wl = station(city)
    gauge = city.devices["rg-alam-jaya-001"]
    neighbours = [d for d in city.devices.values() if d.kelurahan_id == wl.kelurahan_id and d != wl]
    assert gauge in neighbours
    stream = []
    for i in range(90):
        # Everything else in the kelurahan keeps reporting (and moves the watermark).
        stream += [reading(d.id, d.metrics[0], 0, i) for d in neighbours]
        if not 20 < i < 60:  # silent from minute 21 to 59
            stream.append(reading(wl.id, "water_level", 50, i))
    eng = engine(city, rules)
    changes = [
        c
        for c in run(eng, stream, until=95)
        if c.key.rule_id == "sensor-offline" and c.key.zone_id == wl.kelurahan_id
    ]
    assert [(c.state, c.at) for c in changes] == [(S.ACTIVE, at(30)), (S.CLEARED, at(60))]
    assert changes[0].key.hazard is Hazard.SENSOR_OFFLINE
    assert changes[0].evidence is not None
    assert changes[0].evidence.device_ids == (wl.id,)


def test_a_silent_fleet_ages_on_the_clock(tmp_path: Path, city: City) -> None:
    dev = station(city)
    body = f"""\
  - id: offline
    kind: absence
    hazard: sensor_offline
    description: silent for 10 minutes
    applies_to: {{kinds: [water_level_station], zones: [{dev.kelurahan_id}]}}
    zone_level: kelurahan
    after: 10m
"""
    clock = ManualClock(T0)
    eng = RuleEngine(city, ruleset(tmp_path, city, body), clock)
    assert run(eng, [reading(dev.id, "water_level", 50, i) for i in range(5)]) == []
    changes: list[ConditionChange] = []
    for minute in range(5, 40):
        clock.set(at(minute))
        changes += eng.tick()
    assert [(c.state, c.at) for c in changes] == [(S.ACTIVE, at(14))]


def test_flatline(tmp_path: Path, city: City) -> None:
    dev = station(city)
    body = """\
  - id: stuck
    kind: flatline
    hazard: sensor_stuck
    description: stuck for an hour
    applies_to: {kinds: [water_level_station]}
    zone_level: kelurahan
    metric: water_level
    epsilon: 0.1
    for: 60m
"""
    eng = engine(city, ruleset(tmp_path, city, body))
    values = [50 + (i % 3) * 0.4 for i in range(10)] + [52.0] * 70 + [52.5, 53.0]
    stream = [reading(dev.id, "water_level", v, i) for i, v in enumerate(values)]
    changes = run(eng, stream, until=100)
    assert [(c.state, c.at) for c in changes] == [(S.ACTIVE, at(70)), (S.CLEARED, at(80))]


def test_flatline_needs_a_moving_peer_when_asked(city: City) -> None:
    rules = load_rules(DEFAULT, city)  # sensor-stuck-water-level: peers in the kecamatan
    dev = station(city)
    peers = [
        d
        for d in city.devices.values()
        if d.kind == "water_level_station" and d.kecamatan_id == dev.kecamatan_id and d != dev
    ]
    assert peers
    still = [reading(dev.id, "water_level", 52.0, i) for i in range(80)]
    changes = run(engine(city, rules), still, until=100)
    assert not [c for c in changes if c.key.rule_id == "sensor-stuck-water-level"]
    moving = [reading(peers[0].id, "water_level", 80 + (i % 5), i) for i in range(80)]
    changes = run(engine(city, rules), sorted(still + moving, key=lambda r: r.time), until=85)
    stuck = [c for c in changes if c.key.rule_id == "sensor-stuck-water-level"]
    assert [(c.state, c.key.zone_id) for c in stuck] == [(S.ACTIVE, dev.kecamatan_id)]
    assert stuck[0].evidence is not None
    assert stuck[0].evidence.device_ids == (dev.id,)


def _kecamatan_with(city: City, kind: str, n: int) -> list[Device]:
    by_kec: dict[str, list[Device]] = {}
    for d in sorted(city.devices.values(), key=lambda d: d.id):
        if d.kind == kind:
            by_kec.setdefault(d.kecamatan_id, []).append(d)
    return next(ds for ds in by_kec.values() if len(ds) >= n)


def test_zone_aggregate_k_of_n(tmp_path: Path, city: City) -> None:
    stations = _kecamatan_with(city, "water_level_station", 3)
    body = """\
  - id: widespread
    kind: zone_aggregate
    hazard: flood
    description: two stations of a kecamatan at Siaga II
    applies_to: {kinds: [water_level_station]}
    zone_level: kecamatan
    severity: siaga
    condition: {metric: water_level, op: ">=", value: levels.alert_cm}
    k: 2
"""
    eng = engine(city, ruleset(tmp_path, city, body))
    a, b, c = stations[:3]
    alert = {d.id: d.levels.alert_cm for d in (a, b, c) if d.levels is not None}

    def minute(i: int, a_high: bool, b_high: bool) -> list[Reading]:
        return [
            reading(a.id, "water_level", alert[a.id] + (5 if a_high else -50), i),
            reading(b.id, "water_level", alert[b.id] + (5 if b_high else -50), i),
            reading(c.id, "water_level", alert[c.id] - 50, i),
        ]

    one_high = [r for i in range(5) for r in minute(i, True, False)]
    assert run(eng, one_high, until=5) == []
    two_high = [r for i in range(5, 10) for r in minute(i, True, True)]
    changes = run(eng, two_high, until=10)
    assert states(changes) == [(S.ACTIVE, Severity.SIAGA)]
    assert changes[0].key == DedupKey("widespread", a.kecamatan_id, Hazard.FLOOD)
    assert changes[0].evidence is not None
    assert changes[0].evidence.device_ids == tuple(sorted((a.id, b.id)))
    changes = run(eng, [r for i in range(10, 12) for r in minute(i, True, False)], until=12)
    assert [c.state for c in changes] == [S.CLEARED]


def test_composite_pump_stopped_in_heavy_rain(city: City) -> None:
    rules = load_rules(DEFAULT, city)
    pumps = {d.kecamatan_id: d for d in city.devices.values() if d.kind == "pump_station"}
    gauge = next(
        d
        for d in sorted(city.devices.values(), key=lambda d: d.id)
        if d.kind == "rain_gauge" and d.kecamatan_id in pumps
    )
    pump = pumps[gauge.kecamatan_id]
    stream = []
    for i in range(40):
        rain = 30.0 if 10 <= i < 40 else 0.0  # its 15-minute mean reaches 10 at minute 14
        running = 1.0 if i >= 25 else 0.0  # the pump only starts at minute 25
        stream += [
            reading(gauge.id, "rainfall_rate", rain, i),
            reading(pump.id, "pump_running", running, i),
        ]
    changes = [
        c
        for c in run(engine(city, rules), stream, until=45)
        if c.key.rule_id == "pump-stopped-in-rain"
    ]
    assert [(c.state, c.at) for c in changes] == [
        (S.PENDING, at(14)),
        (S.ACTIVE, at(19)),
        (S.RECOVERING, at(25)),
        (S.CLEARED, at(30)),
    ]
    assert changes[1].key == DedupKey(
        "pump-stopped-in-rain", pump.kecamatan_id, Hazard.PUMP_FAILURE
    )
    assert changes[1].evidence is not None
    assert set(changes[1].evidence.device_ids) == {pump.id, gauge.id}
    assert changes[1].evidence.metric == "rainfall_rate"  # `evidence:` in the rule
    assert 10.0 <= changes[1].evidence.peak_value <= 20.0  # a 15-minute mean of the rain


def test_reload_keeps_state_of_unchanged_rules(tmp_path: Path, city: City) -> None:
    dev = station(city)
    battery = """\
  - id: battery
    kind: threshold
    hazard: battery_low
    description: battery low
    applies_to: {kinds: [water_level_station]}
    zone_level: kelurahan
    metric: battery
    direction: below
    raise: 20
    clear: 25
"""
    eng = engine(city, ruleset(tmp_path, city, FLOOD + battery))
    stream = [
        r
        for i in range(10)
        for r in (reading(dev.id, "water_level", 120, i), reading(dev.id, "battery", 10, i))
    ]
    before = run(eng, stream, until=10)
    assert {(c.key.rule_id, c.state) for c in before} >= {
        ("flood", S.ACTIVE),
        ("battery", S.ACTIVE),
    }
    first_at = before[-1].evidence.first_at if before[-1].evidence else None
    # Same flood rule, battery rule changed, a new rule added.
    new = ruleset(
        tmp_path,
        city,
        FLOOD
        + battery.replace("raise: 20", "raise: 15")
        + battery.replace("id: battery", "id: b2"),
        "rules2.yaml",
    )
    changes = eng.reload(new)
    assert [(c.key.rule_id, c.state) for c in changes] == [("battery", S.CLEARED)]
    assert "changed in a reload" in changes[0].reason
    assert eng.rule_ids == ("flood", "battery", "b2")
    # The flood key is still active: more breaching readings say nothing new.
    stream = [
        r
        for i in range(10, 15)
        for r in (reading(dev.id, "water_level", 120, i), reading(dev.id, "battery", 10, i))
    ]
    more = run(eng, stream, until=15)
    assert [c for c in more if c.key.rule_id == "flood"] == []
    assert {(c.key.rule_id, c.state) for c in more} == {("battery", S.ACTIVE), ("b2", S.ACTIVE)}
    (flood,) = [c for c in eng.current() if c.key.rule_id == "flood"]
    assert flood.state is S.ACTIVE
    assert flood.evidence is not None and flood.evidence.first_at == at(0)
    assert first_at is not None
    # Removing a rule clears its open keys.
    changes = eng.reload(ruleset(tmp_path, city, FLOOD, "rules3.yaml"))
    assert {c.key.rule_id for c in changes} == {"battery", "b2"}
    assert all(c.state is S.CLEARED for c in changes)


def test_rebuild_from_history_re_emits_the_same_active(tmp_path: Path, city: City) -> None:
    dev = station(city)
    rules = ruleset(tmp_path, city, FLOOD)
    history = [reading(dev.id, "water_level", 120, i) for i in range(30)]
    live = run(engine(city, rules), history, until=30)
    active = next(c for c in live if c.state is S.ACTIVE)
    _, current = RuleEngine.rebuild(city, rules, ManualClock(T0), history, until=at(30))
    assert [(c.key, c.state) for c in current] == [(active.key, S.ACTIVE)]
    assert current[0].evidence is not None and active.evidence is not None
    assert current[0].evidence.first_at == active.evidence.first_at == at(0)


@pytest.mark.parametrize("direction", ["rising", "steady"])
def test_rate_of_change(city: City, direction: str) -> None:
    rules = load_rules(DEFAULT, city)  # flood-fast-rise: > 2 cm/min over 10 min, hold 2 min
    dev = station(city)
    slope = 3.0 if direction == "rising" else 0.2
    stream = [reading(dev.id, "water_level", 20 + slope * i, i) for i in range(25)]
    changes = [
        c for c in run(engine(city, rules), stream, until=30) if c.key.rule_id == "flood-fast-rise"
    ]
    if direction == "steady":
        assert changes == []
    else:
        # Judged once half the window is covered (minute 5), active after the hold.
        assert [(c.state, c.at) for c in changes] == [(S.PENDING, at(5)), (S.ACTIVE, at(7))]


def test_an_open_condition_on_a_silent_device_turns_no_data(tmp_path: Path, city: City) -> None:
    dev = station(city)
    other = city.devices["wl-babakan-002"]  # keeps reporting, moves the watermark
    eng = engine(city, ruleset(tmp_path, city, FLOOD))
    stream = []
    for i in range(40):
        stream.append(reading(other.id, "water_level", 50, i))
        if not 10 <= i < 30:
            stream.append(reading(dev.id, "water_level", 120, i))
    changes = run(eng, stream, until=45)
    assert [(c.state, c.at) for c in changes] == [
        (S.PENDING, at(0)),
        (S.ACTIVE, at(3)),
        (S.NO_DATA, at(19)),  # last heard at minute 9, no_data_after 10m
        (S.PENDING, at(30)),
        (S.ACTIVE, at(33)),
    ]
    assert changes[2].severity is None
    assert "cannot judge" in changes[2].reason
    # Back with a normal level after a second silence: cleared, not stuck in no_data.
    stream = [reading(other.id, "water_level", 50, i) for i in range(40, 60)]
    stream += [reading(dev.id, "water_level", 50, 55)]
    changes = run(eng, stream, until=58)
    assert [(c.state, c.at) for c in changes] == [(S.NO_DATA, at(49)), (S.CLEARED, at(55))]


def test_no_data_after_must_cover_two_report_intervals(tmp_path: Path, city: City) -> None:
    body = FLOOD.replace("    raise_for: 3m\n", "    raise_for: 3m\n    no_data_after: 90s\n")
    with pytest.raises(ConfigErrors, match="at least 2 report intervals"):
        ruleset(tmp_path, city, body)


def test_a_device_clock_running_ahead_does_not_make_the_fleet_late(
    tmp_path: Path, city: City
) -> None:
    fleet = sorted(d.id for d in city.devices.values() if d.kind == "water_level_station")[:40]
    eng = engine(city, ruleset(tmp_path, city, FLOOD))
    for i in range(30):
        # One station's clock runs 4 minutes ahead (ingest still accepts it); the rest
        # arrive on time or up to 90 s late, within the 2-minute bound.
        batch = [reading(fleet[0], "water_level", 50, i + 4)]
        batch += [
            reading(d, "water_level", 50, i - (1.5 if n % 3 else 0))
            for n, d in enumerate(fleet[1:])
        ]
        eng.ingest(batch)
    assert eng.stats.late == 0


def test_heavy_rain_judges_the_hourly_mean_not_each_bucket_tip(city: City) -> None:
    rules = load_rules(DEFAULT, city)  # heavy-rain: 60-minute mean >= 10 mm/h
    gauge = city.devices["rg-alam-jaya-001"]
    # One-minute rates jump between 0 and 24 mm/h (bucket tips): the mean is 12 mm/h.
    stream = [reading(gauge.id, "rainfall_rate", 24.0 if i % 2 else 0.0, i) for i in range(60)]
    changes = [
        c for c in run(engine(city, rules), stream, until=62) if c.key.rule_id == "heavy-rain"
    ]
    # No hold: active at the first mean over 10 (minute 1: 12 mm/h), and never flapping
    # although every other minute reads 0.
    assert [(c.state, c.severity, c.at) for c in changes] == [(S.ACTIVE, Severity.WASPADA, at(1))]
    assert "(60 min mean)" in changes[-1].reason


@pytest.mark.parametrize("others_report", [False, True])
def test_a_composite_whose_rain_gauges_go_silent_turns_no_data(
    city: City, others_report: bool
) -> None:
    rules = load_rules(DEFAULT, city)
    pumps = {d.kecamatan_id: d for d in city.devices.values() if d.kind == "pump_station"}
    gauge = next(
        d
        for d in sorted(city.devices.values(), key=lambda d: d.id)
        if d.kind == "rain_gauge" and d.kecamatan_id in pumps
    )
    pump = pumps[gauge.kecamatan_id]
    others = [
        d.id
        for d in city.devices.values()
        if d.kind == "rain_gauge" and d.kecamatan_id == gauge.kecamatan_id and d != gauge
    ]
    assert others
    stream = []
    for i in range(60):
        stream.append(reading(pump.id, "pump_running", 0.0, i))
        if others_report:
            stream += [reading(o, "rainfall_rate", 0.0, i) for o in others]
        if i < 30:  # the gauge that saw the rain falls silent at minute 30
            stream.append(reading(gauge.id, "rainfall_rate", 30.0, i))
    changes = [
        c
        for c in run(engine(city, rules), stream, until=65)
        if c.key.rule_id == "pump-stopped-in-rain"
    ]
    if others_report:  # the other gauges say it is dry: recovering, then cleared
        assert [(c.state, c.at) for c in changes] == [
            (S.PENDING, at(0)),
            (S.ACTIVE, at(5)),
            (S.RECOVERING, at(34)),  # the silent gauge's last reading stops counting
            (S.CLEARED, at(39)),
        ]
    else:  # no gauge left to judge the rain by
        assert [(c.state, c.at) for c in changes] == [
            (S.PENDING, at(0)),
            (S.ACTIVE, at(5)),
            (S.NO_DATA, at(34)),  # last rain reading at 29, max_age 5m
        ]
        assert "no fresh rainfall_rate" in changes[-1].reason
