"""The decoders fuzzed with hypothesis: whatever arrives on a device topic, ingest's
pipeline answers with lines or with rejections carrying a reason, never an exception.

The same property is fuzzed coverage-guided with atheris (libFuzzer) by
`uv run python -m bench.fuzz --runs N`: not here, because a libFuzzer run is minutes of
CPU and its inputs follow coverage feedback, so it is not a repeatable CI test."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import cbor2
import hypothesis.strategies as st
from hypothesis import HealthCheck, given, settings

from ingest.pipeline import Pipeline
from pantau.city import City, load_city
from pantau.settings import IngestSettings
from pantau.topics import Topics
from pantau.wire import SENML_CBOR_CONTENT_TYPE, SENML_CONTENT_TYPE

CITY: City = load_city()
TOPICS = Topics("fuzz")
DEVICE = min(d.id for d in CITY.devices.values() if "rssi" in d.metrics)
NOW = datetime(2026, 11, 28, tzinfo=UTC)
PIPELINE = Pipeline(CITY, TOPICS, IngestSettings(rate_limit_factor=0))

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**400), max_value=10**400)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=30,
)
# Near-valid bodies: the real keys with values of any type, so the decoders get past
# the first check and into the fields.
native_bodies = st.fixed_dictionaries(
    {},
    optional={
        "device": st.just(DEVICE) | json_values,
        "seq": json_values,
        "time": st.just("2026-11-27T23:00:00Z") | json_values,
        "readings": st.lists(
            st.fixed_dictionaries(
                {},
                optional={
                    "metric": st.just("rssi") | json_values,
                    "value": json_values,
                    "unit": json_values,
                    "time": json_values,
                },
            ),
            max_size=4,
        )
        | json_values,
    },
)
SENML_LABELS = ["bn", "bt", "bu", "bv", "bs", "bver", "n", "u", "v", "vb", "vs", "vd", "s", "t"]
SENML_LABELS += ["ut", "x_"]
senml_packs = st.lists(
    st.dictionaries(
        st.sampled_from(SENML_LABELS),
        st.just(f"{DEVICE}/") | st.just("rssi") | st.just(f"urn:dev:{DEVICE}/") | json_values,
        max_size=6,
    ),
    max_size=5,
)
# CBOR adds what JSON cannot say: byte strings, integer labels, tags (decimal fractions,
# dates), undefined, very large integers; labels from Table 4 plus strings and nonsense.
cbor_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.decimals(allow_nan=False, allow_infinity=False, places=3)
    | st.text(max_size=20)
    | st.binary(max_size=20)
    | st.just(f"{DEVICE}/")
    | st.just("rssi"),
    lambda children: st.lists(children, max_size=4),
    max_leaves=20,
)
cbor_packs = st.lists(
    st.dictionaries(
        st.sampled_from([-6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 99, "v", "x_"]),
        cbor_values,
        max_size=6,
    ),
    max_size=5,
)


def dumps(value: object) -> bytes:
    # allow_nan: NaN and Infinity literals are part of what devices get wrong
    return json.dumps(value, allow_nan=True, default=str).encode()


def handle(payload: bytes, content_type: str | None) -> None:
    outcome = PIPELINE.handle(TOPICS.sensor_up(DEVICE), payload, content_type, NOW)
    for rejection in outcome.rejections:
        assert rejection.reason and rejection.detail
    for line in outcome.lines:
        assert line.startswith("rssi,")


fuzz = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@fuzz
@given(
    st.binary(max_size=2000),
    st.sampled_from([None, "application/json", SENML_CONTENT_TYPE, SENML_CBOR_CONTENT_TYPE]),
)
def test_any_bytes(payload: bytes, content_type: str | None) -> None:
    handle(payload, content_type)


@fuzz
@given(native_bodies)
def test_native_bodies_with_any_field_types(body: dict[str, object]) -> None:
    handle(dumps(body), None)


@fuzz
@given(senml_packs)
def test_senml_packs_with_any_field_types(pack: list[dict[str, object]]) -> None:
    handle(dumps(pack), SENML_CONTENT_TYPE)


def test_a_senml_time_far_before_receipt_is_a_bad_timestamp_not_a_crash() -> None:
    """Found by bench.fuzz (atheris): a relative SenML time of -9.6e10 s overflowed
    datetime and the exception escaped the pipeline."""
    pack = [{"bn": f"{DEVICE}/", "bt": -95920777777, "n": "rssi", "v": -70.0}]
    outcome = PIPELINE.handle(TOPICS.sensor_up(DEVICE), dumps(pack), SENML_CONTENT_TYPE, NOW)
    assert [r.reason for r in outcome.rejections] == ["bad_timestamp"]
    assert not outcome.lines


def test_a_native_epoch_time_beyond_any_float_is_a_bad_timestamp_not_a_crash() -> None:
    """Found by the hypothesis test above: an integer `time` of 10**400 raised
    OverflowError out of the decoder."""
    body = {"device": DEVICE, "time": 10**400, "readings": {"rssi": -70.0}}
    outcome = PIPELINE.handle(TOPICS.sensor_up(DEVICE), dumps(body), None, NOW)
    assert [r.reason for r in outcome.rejections] == ["bad_timestamp"]
    assert not outcome.lines


@fuzz
@given(st.binary(max_size=2000))
def test_any_bytes_as_senml_cbor(payload: bytes) -> None:
    handle(payload, SENML_CBOR_CONTENT_TYPE)


@fuzz
@given(cbor_packs)
def test_senml_cbor_packs_with_any_field_types(pack: list[dict[object, object]]) -> None:
    handle(cbor2.dumps(pack), SENML_CBOR_CONTENT_TYPE)


@fuzz
@given(cbor_values)
def test_senml_cbor_of_any_shape(value: object) -> None:
    handle(cbor2.dumps(value), SENML_CBOR_CONTENT_TYPE)
