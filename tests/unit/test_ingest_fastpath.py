"""ingest.fastpath against the general path: on near-valid messages (the real fields,
values mostly right, now and then wrong in every way a device gets them wrong) the
pipeline with the fast path answers exactly as without it: the same lines, the same
rejections with the same reasons. And the fast path does take the common messages."""

from __future__ import annotations

import json
from datetime import timedelta

import hypothesis.strategies as st
from hypothesis import HealthCheck, given, settings

from ingest.fastpath import FastLines
from ingest.pipeline import Outcome, Pipeline
from pantau.device_messages import DeviceMessageReader
from pantau.settings import IngestSettings
from pantau.wire import SENML_CONTENT_TYPE
from tests.unit import native_strategies as ns
from tests.unit.native_strategies import CITY, DEVICE, NOW, OTHER, TOPICS

SETTINGS = IngestSettings(rate_limit_factor=0)
FAST = Pipeline(CITY, TOPICS, SETTINGS)
GENERAL = Pipeline(CITY, TOPICS, SETTINGS, fast=False)

# Beyond what the rules test feeds: a metric name with a space; short of it: no
# local-zone times, no null reading time, no value past a signed 64-bit integer, no
# device, time or readings list of the wrong type.
numbers = ns.numbers()
times = ns.times(local_offset=False)
native_readings = ns.readings([*ns.METRICS, "Water level"], numbers | st.booleans(), times)
plain_native = ns.plain_messages
any_native = ns.any_messages(times, native_readings, odd_fields=False)
senml_names = st.sampled_from(
    ["water_level", "rssi", "gate_opening", "battery", "", "bad name", f"{DEVICE}/water_level"]
)
senml_records = st.fixed_dictionaries(
    {},
    optional={
        "bn": st.sampled_from([f"{DEVICE}/", f"urn:dev:{DEVICE}/", f"{OTHER}/", "", "x/"]),
        "bt": ns.epochs | st.integers(min_value=-(10**6), max_value=10**6),
        "bu": ns.units,
        "bv": numbers,
        "n": senml_names,
        "u": ns.units,
        "v": numbers,
        "vb": st.booleans(),
        "t": st.integers(min_value=-100, max_value=100) | st.floats(-1e3, 1e3),
        "s": numbers,
        "vs": st.sampled_from(["open", "shut"]),
        "bver": st.integers(min_value=5, max_value=12),
        "x_": st.just(1),
        "note": ns.oddities,
    },
)
plain_senml = st.tuples(
    st.sampled_from([f"{DEVICE}/", f"urn:dev:{DEVICE}/"]),
    ns.epochs | st.integers(min_value=-(10**6), max_value=10**3),
    st.lists(
        st.fixed_dictionaries(
            {
                "n": st.sampled_from(["water_level", "rssi", "gate_opening"]),
                "v": st.floats(min_value=-150, max_value=1600),
            },
            optional={"t": st.integers(-100, 100), "u": st.sampled_from(["cm", "m", "dBm"])},
        )
        | st.fixed_dictionaries({"n": st.just("gate_opening"), "vb": st.booleans()}),
        min_size=1,
        max_size=4,
    ),
).map(lambda p: [{"bn": p[0], "bt": p[1]}, *p[2]])
any_senml = st.lists(senml_records, max_size=5)
native_bodies = st.one_of(plain_native, plain_native, plain_native, any_native)
senml_packs = st.one_of(plain_senml, plain_senml, plain_senml, any_senml)
compare = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def outcomes(payload: bytes, content_type: str | None) -> tuple[Outcome, Outcome]:
    topic = TOPICS.sensor_up(DEVICE)
    fast = FAST.handle(topic, payload, content_type, NOW)
    general = GENERAL.handle(topic, payload, content_type, NOW)
    return fast, general


def assert_same(payload: bytes, content_type: str | None) -> None:
    fast, general = outcomes(payload, content_type)
    assert fast.lines == general.lines
    assert [(r.reason, r.detail) for r in fast.rejections] == [
        (r.reason, r.detail) for r in general.rejections
    ]


@compare
@given(native_bodies)
def test_native_messages_come_out_the_same(body: dict[str, object]) -> None:
    assert_same(json.dumps(body).encode(), None)


@compare
@given(senml_packs, st.sampled_from([SENML_CONTENT_TYPE, None, "application/json"]))
def test_senml_packs_come_out_the_same(pack: list[dict[str, object]], ct: str | None) -> None:
    assert_same(json.dumps(pack).encode(), ct)


def fast_lines(payload: bytes, content_type: str | None) -> list[str] | None:
    reader = DeviceMessageReader(CITY, TOPICS, SETTINGS)
    got = FastLines(CITY, reader.names, SETTINGS).lines(DEVICE, payload, content_type, NOW)
    return None if got is None else got[0]


def test_the_common_messages_take_the_fast_path() -> None:
    when = NOW - timedelta(minutes=1)
    native = {
        "device": DEVICE,
        "seq": 7,
        "time": when.isoformat(),
        "readings": [
            {"metric": "water_level", "value": 1.5, "unit": "m"},
            {"metric": "rssi", "value": -70, "time": when.timestamp() - 1},
        ],
    }
    pack = [{"bn": f"{DEVICE}/", "bt": when.timestamp(), "bu": "cm"}] + [
        {"n": "water_level", "v": 100 + k, "t": k} for k in range(3)
    ]
    for body, ct in ((native, None), (pack, SENML_CONTENT_TYPE), (pack, None)):
        payload = json.dumps(body).encode()
        lines = fast_lines(payload, ct)
        assert lines is not None
        assert lines == GENERAL.handle(TOPICS.sensor_up(DEVICE), payload, ct, NOW).lines


def test_what_it_does_not_take_goes_the_general_way_with_its_reason() -> None:
    body = {
        "device": DEVICE,
        "time": NOW.isoformat(),
        "readings": [{"metric": "water_level", "value": 9000, "unit": "cm"}],
    }
    payload = json.dumps(body).encode()
    assert fast_lines(payload, None) is None
    outcome = FAST.handle(TOPICS.sensor_up(DEVICE), payload, None, NOW)
    assert [r.reason for r in outcome.rejections] == ["out_of_range"]
    assert not outcome.lines


def test_the_budget_holds_on_the_fast_path() -> None:
    pipeline = Pipeline(CITY, TOPICS, IngestSettings(rate_limit_factor=1))
    body = {
        "device": DEVICE,
        "time": NOW.isoformat(),
        "readings": [{"metric": "water_level", "value": 10}],
    }
    payload = json.dumps(body).encode()
    first = pipeline.handle(TOPICS.sensor_up(DEVICE), payload, None, NOW)
    second = pipeline.handle(TOPICS.sensor_up(DEVICE), payload, None, NOW)
    assert len(first.lines) == 1
    assert not first.rejections
    assert not second.lines
    assert [r.reason for r in second.rejections] == ["rate_limited"]
