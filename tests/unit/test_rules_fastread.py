"""rules.fastread against the general path (pantau.device_messages): on near-valid
native messages (the real fields, values mostly right, now and then wrong in every way
a device gets them wrong) whatever the fast path takes, the general path reads to the
same readings with no rejection; and the common messages do take the fast path."""

from __future__ import annotations

import json
from datetime import timedelta

import hypothesis.strategies as st
from hypothesis import HealthCheck, given, settings

from pantau.device_messages import DeviceMessageReader
from pantau.settings import IngestSettings
from pantau.wire import SENML_CONTENT_TYPE, Sample, encode_native, encode_senml
from rules.fastread import FastReadings
from tests.unit import native_strategies as ns
from tests.unit.native_strategies import CITY, DEVICE, NOW, OTHER, TOPICS

SETTINGS = IngestSettings()
FAST = FastReadings(CITY, TOPICS, SETTINGS)
GENERAL = DeviceMessageReader(CITY, TOPICS, SETTINGS)

# Beyond what the ingest test feeds: local-zone times, a null reading time, a value
# past a signed 64-bit integer, and a device, time or readings list of the wrong type.
times = ns.times(local_offset=True)
readings = ns.readings(
    ns.METRICS, ns.numbers(more_extremes=[2**63 + 1]) | st.booleans(), times | st.none()
)
plain = ns.plain_messages
anything = ns.any_messages(times, readings, odd_fields=True)
bodies = st.one_of(plain, plain, anything)
content_types = st.sampled_from([None, "", "application/json", SENML_CONTENT_TYPE, "text/x"])
compare = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def assert_agrees(topic: str, payload: bytes, content_type: str | None) -> bool:
    """True when the fast path took the message (then the general one reads the same)."""
    fast = FAST.read(topic, payload, content_type, NOW)
    if fast is None:
        return False
    general = GENERAL.read(topic, payload, content_type, NOW)
    assert general.rejections == []
    assert fast == (general.device_id, general.readings)
    return True


@compare
@given(bodies, content_types)
def test_what_the_fast_path_takes_the_general_path_reads_the_same(
    body: dict[str, object], content_type: str | None
) -> None:
    assert_agrees(TOPICS.sensor_up(DEVICE), json.dumps(body).encode(), content_type)


@compare
@given(plain)
def test_a_plain_message_on_another_devices_topic_is_not_taken(body: dict[str, object]) -> None:
    payload = json.dumps(body).encode()
    assert FAST.read(TOPICS.sensor_up(OTHER), payload, None, NOW) is None
    assert FAST.read(f"other/sensors/{DEVICE}/up", payload, None, NOW) is None


def test_the_common_messages_take_the_fast_path_and_the_rest_do_not() -> None:
    topic = TOPICS.sensor_up(DEVICE)
    when = NOW - timedelta(seconds=30)
    samples = [Sample("water_level", 1.5, "m"), Sample("rssi", -70.0, "dBm")]
    native = encode_native(DEVICE, 7, when, samples)
    assert assert_agrees(topic, native, None)
    assert assert_agrees(topic, native, "application/json")
    taken = FAST.read(topic, native, None, NOW)
    assert taken is not None
    assert [(r.metric, r.value, r.unit, r.seq) for r in taken[1]] == [
        ("water_level", 150.0, "cm", 7),
        ("rssi", -70.0, "dBm", 7),
    ]
    # SenML, a NaN, a reading out of range and a time out of the window: general path
    assert FAST.read(topic, encode_senml(DEVICE, when, samples), SENML_CONTENT_TYPE, NOW) is None
    assert FAST.read(topic, native.replace(b"1.5", b"NaN"), None, NOW) is None
    assert FAST.read(topic, native.replace(b"1.5", b"9000"), None, NOW) is None
    late = encode_native(DEVICE, 7, NOW - timedelta(days=30), samples)
    assert FAST.read(topic, late, None, NOW) is None
    assert GENERAL.read(topic, late, None, NOW).rejections
