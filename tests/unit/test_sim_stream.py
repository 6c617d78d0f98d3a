"""The message stream: deterministic bytes, valid readings in range, faults that show,
and malformed payloads that ingest refuses with exactly the expected reason."""

from __future__ import annotations

import itertools
import json
from collections import Counter, defaultdict
from dataclasses import replace
from datetime import timedelta

import pytest

from ingest.pipeline import Pipeline
from pantau.city import City
from pantau.settings import IngestSettings
from pantau.topics import Topics
from pantau.wire import NATIVE_CONTENT_TYPE, SENML_CONTENT_TYPE
from simulators.messages import FleetStream, SimMessage, iter_messages
from simulators.reasons import Reason
from simulators.report import ReportBuilder
from simulators.scenario import Scenario, find_scenario, load_scenario

FAULTY = """\
name: faulty
description: every fault kind on a few devices, for one hour
start: 2026-01-14T00:00:00Z
duration: 1h
seed: 11
senml_fraction: 0.5
faults:
  - kind: dropout
    devices: [rg-cimone-008]
    from: 10m
    until: 30m
  - kind: stuck
    devices: [tc-cimone-008]
    from: 20m
  - kind: spike
    devices: [fm-poris-jaya-002]
    metrics: [flow]
    probability: 0.5
    magnitude: 40
  - kind: drift
    devices: [wl-cimone-015]
    metrics: [water_level]
    from: 0s
    rate_per_hour: 30
  - kind: clock_skew
    devices: [rg-poris-plawad-043]
    offset: 2m
  - kind: clock_skew
    devices: [tc-poris-plawad-043]
    from: 30m
    offset: 5d
  - kind: malformed
    kinds: [water_level_station]
    zone: kec-karawaci
    rate: 0.5
"""


@pytest.fixture(scope="module")
def faulty(city: City, tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    path = tmp_path_factory.mktemp("scenarios") / "faulty.yaml"
    path.write_text(FAULTY, encoding="utf-8")
    return load_scenario(path, city)


@pytest.fixture(scope="module")
def faulty_messages(city: City, faulty: Scenario) -> list[SimMessage]:
    return list(iter_messages(city, faulty))


@pytest.fixture(scope="module")
def baseline_messages(city: City, faulty: Scenario) -> list[SimMessage]:
    return list(iter_messages(city, replace(faulty, faults=())))


def short_storm(city: City) -> Scenario:
    storm = load_scenario(find_scenario("storm-karawaci"), city)
    return replace(storm, duration_s=1200.0)


def by_device(messages: list[SimMessage], device: str) -> list[SimMessage]:
    return [m for m in messages if m.device_id == device]


def value(m: SimMessage, metric: str) -> float:
    return m.values[m.metrics.index(metric)]


# --- determinism -------------------------------------------------------------------------


def test_same_seed_same_bytes(city: City) -> None:
    scenario = short_storm(city)
    a = [(m.topic, m.payload, m.content_type) for m in iter_messages(city, scenario)]
    b = [(m.topic, m.payload, m.content_type) for m in iter_messages(city, scenario)]
    assert len(a) > 4000
    assert a == b


def test_other_seed_other_bytes(city: City) -> None:
    scenario = short_storm(city)
    a = ReportBuilder().add_all(iter_messages(city, scenario))
    b = ReportBuilder().add_all(iter_messages(city, replace(scenario, seed=scenario.seed + 1)))
    assert a.digest != b.digest


def test_a_device_does_not_depend_on_the_others(city: City) -> None:
    """Per-device random streams: removing devices changes nobody else's payloads."""
    scenario = short_storm(city)
    full = by_device(list(iter_messages(city, scenario)), "tc-cimone-008")
    fewer = {k: d for k, d in city.devices.items() if k.startswith(("tc-", "wl-"))}
    small = replace(city, devices=fewer)
    alone = by_device(list(iter_messages(city=small, scenario=scenario)), "tc-cimone-008")
    assert [m.payload for m in full] == [m.payload for m in alone]


def test_start_moves_the_weather_with_it(city: City) -> None:
    """Storm cells and faults are placed relative to the start, so a run moved by a
    week (same weekday and hour: same traffic) sees the same rain and traffic. Drain
    levels may differ: the tide follows the moon, not the scenario."""
    scenario = short_storm(city)
    week = timedelta(days=7)
    a = list(iter_messages(city, scenario))
    b = list(iter_messages(city, scenario, start=scenario.start + week))
    assert all(y.sim_time - x.sim_time == week for x, y in zip(a, b, strict=True))
    same = [
        (x.values, y.values)
        for x, y in zip(a, b, strict=True)
        if x.device_id.startswith(("rg-", "tc-"))
    ]
    assert len(same) > 1000
    assert all(x == y for x, y in same)


def _no_constants(name: str) -> float:
    raise AssertionError(f"{name} in a valid payload")


# --- the contract ------------------------------------------------------------------------


def test_valid_readings_are_in_range_and_canonical(city: City) -> None:
    topics = Topics()
    for m in iter_messages(city, short_storm(city)):
        assert topics.device_of_sensor_topic(m.topic) is not None
        assert m.content_type in (NATIVE_CONTENT_TYPE, SENML_CONTENT_TYPE)
        if m.expected_reason is not None:
            continue
        json.loads(m.payload, parse_constant=_no_constants)
        device = city.devices[m.device_id]
        assert m.metrics == device.metrics
        for r in m.readings:
            spec = city.catalogue.metrics[r.metric]
            assert spec.valid_min <= r.value <= spec.valid_max, r
            assert r.unit == spec.unit


def test_both_payload_forms_in_the_mix(city: City) -> None:
    scenario = short_storm(city)
    forms = Counter(m.content_type for m in iter_messages(city, scenario))
    senml_share = forms[SENML_CONTENT_TYPE] / sum(forms.values())
    assert abs(senml_share - scenario.senml_fraction) < 0.03


def test_ingest_stores_exactly_the_valid_readings_and_refuses_the_rest(
    city: City, faulty_messages: list[SimMessage]
) -> None:
    """Run the stream through ingest's own pipeline (decode + validate, no I/O): every
    valid reading is accepted as is, every defect refused with the expected reason."""
    pipeline = Pipeline(city, Topics(), IngestSettings())
    stored: set[tuple[str, str, object, float]] = set()
    expected: set[tuple[str, str, object, float]] = set()
    reasons: Counter[str] = Counter()
    expected_reasons: Counter[str] = Counter()
    for m in faulty_messages:
        received = m.sim_time + timedelta(seconds=1)
        outcome = pipeline.handle(m.topic, m.payload, m.content_type, received)
        reasons.update(r.reason for r in outcome.rejections)
        if m.expected_reason is not None:
            expected_reasons[m.expected_reason] += m.expected_rejections
            assert {r.reason for r in outcome.rejections} == {m.expected_reason}, m
            assert len(outcome.rejections) == m.expected_rejections
            assert not outcome.lines
        else:
            assert not outcome.rejections, (m, outcome.rejections)
            assert len(outcome.lines) == len(m.metrics)
        expected |= {(r.device_id, r.metric, r.time, r.value) for r in m.readings}
        stored |= {(r.device_id, r.metric, r.time, r.value) for r in m.readings}
    assert reasons == expected_reasons
    assert set(expected_reasons) == {r.value for r in Reason}
    assert stored == expected


def test_malformed_reasons_are_the_documented_slugs(
    faulty_messages: list[SimMessage],
) -> None:
    slugs = {r.value for r in Reason}
    bad = [m for m in faulty_messages if m.expected_reason is not None]
    assert bad
    assert {m.expected_reason for m in bad} <= slugs
    variants = {f for m in bad for f in m.faults if f.startswith("malformed:")}
    assert len(variants) >= 12  # several kinds of malformation, not one trick


def test_nan_is_malformed_json_and_overflow_is_out_of_range(
    faulty_messages: list[SimMessage],
) -> None:
    for m in faulty_messages:
        if "malformed:nan_token" in m.faults:
            assert b"NaN" in m.payload
            assert m.expected_reason == "malformed_json"
        if "malformed:overflow" in m.faults:
            assert b"1e999" in m.payload
            assert m.expected_reason == "out_of_range"


def test_report_counts_what_was_sent(city: City, faulty: Scenario) -> None:
    stream = FleetStream(city, faulty)
    report = ReportBuilder().add_all(stream)
    assert sum(report.valid_by_device.values()) == len(report.keys)  # no duplicate keys
    assert stream.dropped == 20  # 20 minutes of a 1-minute gauge
    assert all(m.reason in {r.value for r in Reason} for m in report.malformed)


# --- faults are observable ---------------------------------------------------------------


def test_dropout_silences_the_device_and_leaves_a_seq_gap(
    faulty: Scenario, faulty_messages: list[SimMessage]
) -> None:
    msgs = by_device(faulty_messages, "rg-cimone-008")
    offsets = [(m.sim_time - faulty.start).total_seconds() for m in msgs]
    assert not [o for o in offsets if 600 <= o < 1800]
    assert len(msgs) == 40
    gaps = [b.seq - a.seq for a, b in itertools.pairwise(msgs)]
    assert sorted(set(gaps)) == [1, 21]  # the counter kept running while silent


def test_stuck_device_flatlines(
    faulty_messages: list[SimMessage], baseline_messages: list[SimMessage]
) -> None:
    stuck = [m for m in by_device(faulty_messages, "tc-cimone-008") if "stuck" in m.faults]
    normal = [
        m for m in by_device(baseline_messages, "tc-cimone-008") if m.sim_time >= stuck[0].sim_time
    ]
    assert len(stuck) >= 30
    assert len({value(m, "traffic_flow") for m in stuck}) == 1
    assert len({value(m, "speed") for m in stuck}) == 1
    assert len({value(m, "speed") for m in normal}) > 5
    assert len({value(m, "rssi") for m in stuck}) > 1  # the radio still works


def test_spikes_jump_and_stay_in_range(
    faulty_messages: list[SimMessage], baseline_messages: list[SimMessage]
) -> None:
    faulty = by_device(faulty_messages, "fm-poris-jaya-002")
    base = by_device(baseline_messages, "fm-poris-jaya-002")
    jumps = [abs(value(f, "flow") - value(b, "flow")) for f, b in zip(faulty, base, strict=True)]
    spiked = [j for j in jumps if j > 0]
    assert 15 <= len(spiked) <= 45  # probability 0.5 over 60 reports
    assert all(j == pytest.approx(40, abs=0.01) for j in spiked)
    assert all(-50 <= value(f, "flow") <= 500 for f in faulty)


def test_drift_grows_with_time(
    faulty_messages: list[SimMessage], baseline_messages: list[SimMessage]
) -> None:
    faulty = by_device(faulty_messages, "wl-cimone-015")
    base = by_device(baseline_messages, "wl-cimone-015")
    pairs = [(f, b) for f, b in zip(faulty, base, strict=True) if f.metrics]
    first, last = pairs[0], pairs[-1]
    assert value(first[0], "water_level") - value(first[1], "water_level") < 1.5
    assert value(last[0], "water_level") - value(last[1], "water_level") == pytest.approx(
        30, abs=1.5
    )


def test_clock_skew_shifts_device_time(faulty_messages: list[SimMessage]) -> None:
    msgs = by_device(faulty_messages, "rg-poris-plawad-043")
    good = [m for m in msgs if m.expected_reason is None]
    assert good
    assert all(m.reading_time - m.sim_time == timedelta(minutes=2) for m in good)
    assert all(r.time == m.reading_time for m in good for r in m.readings)


def test_days_of_skew_are_bad_timestamps(faulty_messages: list[SimMessage]) -> None:
    msgs = by_device(faulty_messages, "tc-poris-plawad-043")
    late = [m for m in msgs if m.sim_time.minute >= 30]
    early = [m for m in msgs if m.sim_time.minute < 30]
    assert all(m.expected_reason is None for m in early)
    assert late
    for m in late:
        assert m.expected_reason == "bad_timestamp"
        assert m.readings == ()
        assert m.expected_rejections == 4  # ingest refuses each reading


def test_faults_leave_other_devices_alone(
    faulty: Scenario, faulty_messages: list[SimMessage], baseline_messages: list[SimMessage]
) -> None:
    touched = set().union(*(f.devices for f in faulty.faults))
    a: dict[str, list[bytes]] = defaultdict(list)
    b: dict[str, list[bytes]] = defaultdict(list)
    for m in faulty_messages:
        a[m.device_id].append(m.payload)
    for m in baseline_messages:
        b[m.device_id].append(m.payload)
    untouched = set(b) - touched
    assert len(untouched) > 250
    assert all(a[d] == b[d] for d in untouched)


def test_shipped_storm_has_malformed_messages(city: City) -> None:
    scenario = short_storm(city)
    bad = [m for m in iter_messages(city, scenario) if m.expected_reason]
    assert bad  # malformed_rate > 0 in the storm scenario
