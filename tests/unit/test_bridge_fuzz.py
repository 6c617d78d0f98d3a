"""The bridges' decoders fuzzed with hypothesis: whatever a network server or an edge
node publishes, the translator answers with publishes, points and rejections whose
reasons are valid dead-letter topics, never an exception; and every SenML pack it
makes goes through ingest's pipeline to lines or reasoned rejections."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
from hypothesis import HealthCheck, given, settings

from bridges.lorawan import LorawanTranslator, load_lorawan
from bridges.relay import Translation
from bridges.sparkplug import SparkplugTranslator, load_sparkplug
from ingest.pipeline import Pipeline
from pantau.city import City, load_city
from pantau.settings import IngestSettings
from pantau.sparkplug_b_pb2 import Payload
from pantau.topics import Topics
from pantau.wire import SENML_CONTENT_TYPE
from testkit import netservers as ns

CONFIG = Path(__file__).resolve().parents[2] / "config"

CITY: City = load_city()
TOPICS = Topics("fuzz")
NOW = datetime.now(UTC).replace(microsecond=0)
PIPELINE = Pipeline(CITY, TOPICS, IngestSettings(rate_limit_factor=0))
EUI = "0004a30b001c0530"
LORAWAN = load_lorawan(CONFIG / "lorawan.yaml", CITY)
SPARKPLUG = load_sparkplug(CONFIG / "sparkplug.yaml", CITY)
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
decoded = st.dictionaries(
    st.sampled_from(["level_cm", "battery_pct", "pump", "sump", "other"]), json_values, max_size=4
)


def check(out: Translation) -> None:
    for rejection in out.rejections:
        TOPICS.deadletter(rejection.reason)  # raises on a reason that is no valid slug
        assert rejection.detail
    for publish in out.publishes:
        if publish.content_type == SENML_CONTENT_TYPE:
            outcome = PIPELINE.handle(publish.topic, publish.payload, SENML_CONTENT_TYPE, NOW)
            for r in outcome.rejections:
                TOPICS.deadletter(r.reason)
        else:
            assert json.loads(publish.payload)["status"] in ("online", "offline")
    for line in out.lines:
        assert line.startswith(("device_link,", "data_quality,"))


def chirpstack(server: str = "chirpstack") -> LorawanTranslator:
    net = LORAWAN.network_server.model_copy(update={"kind": server})
    return LorawanTranslator(LORAWAN.model_copy(update={"network_server": net}), CITY, TOPICS)


@FUZZ
@given(st.binary(max_size=300), st.sampled_from(["up", "join", "status", "ack"]))
def test_chirpstack_any_bytes(payload: bytes, event: str) -> None:
    check(chirpstack().translate(ns.chirpstack_topic(EUI, event), payload, NOW))


@FUZZ
@given(
    obj=decoded | st.none(),
    f_cnt=st.integers(min_value=-5, max_value=2**33),
    radio=st.lists(st.tuples(st.integers(-200, 50), st.floats(-50, 50)), max_size=3),
    shift=st.integers(min_value=-(10**6), max_value=10**6),
    drop=st.sets(st.sampled_from(["time", "deviceInfo", "rxInfo", "fCnt", "object"])),
)
def test_chirpstack_near_valid_uplinks(
    obj: dict[str, Any] | None,
    f_cnt: int,
    radio: list[tuple[int, float]],
    shift: int,
    drop: set[str],
) -> None:
    body = json.loads(ns.chirpstack_up(EUI, NOW + timedelta(seconds=shift), 1, obj, radio))
    body["fCnt"] = f_cnt
    for key in drop:
        body.pop(key, None)
    translator = chirpstack()
    for _ in range(2):  # the second time through the frame-counter tracker
        check(translator.translate(ns.chirpstack_topic(EUI, "up"), json.dumps(body).encode(), NOW))


@FUZZ
@given(
    decoded=decoded | json_values,
    f_cnt=st.integers(min_value=0, max_value=2**32 - 1),
    ids=st.dictionaries(st.sampled_from(["device_id", "dev_eui"]), json_values, max_size=2),
)
def test_the_things_stack_near_valid_uplinks(decoded: Any, f_cnt: int, ids: dict[str, Any]) -> None:
    body = json.loads(ns.tts_up("level-1", EUI, NOW, f_cnt, None))
    body["uplink_message"]["decoded_payload"] = decoded
    body["end_device_ids"].update(ids)
    topic = ns.tts_topic("level-1", "up")
    check(chirpstack("tts").translate(topic, json.dumps(body).encode(), NOW))


def test_a_codec_object_is_read_into_readings_with_units() -> None:
    up = ns.chirpstack_up(EUI, NOW, 3, {"level_cm": 120, "battery_pct": True, "other": [1]})
    out = chirpstack().translate(ns.chirpstack_topic(EUI, "up"), up, NOW)
    (pack,) = out.publishes
    records = json.loads(pack.payload)
    assert [(r["n"], r.get("v", r.get("vb")), r.get("u")) for r in records] == [
        ("water_level", 120, "cm"),
        ("battery", True, "%"),
        ("rssi", -97, "dBm"),
    ]
    assert out.rejections == []  # `other` is no field of the kind: left alone


# --- Sparkplug B ---------------------------------------------------------------------
GROUP, NODE = "Drainage", "PS-Porisgaga-Baru"
metric_values = st.one_of(
    st.builds(lambda v: {"int_value": v}, st.integers(0, 2**32 - 1)),
    st.builds(lambda v: {"long_value": v}, st.integers(0, 2**64 - 1)),
    st.builds(lambda v: {"float_value": v}, st.floats(width=32)),
    st.builds(lambda v: {"double_value": v}, st.floats()),
    st.builds(lambda v: {"boolean_value": v}, st.booleans()),
    st.builds(lambda v: {"string_value": v}, st.text(max_size=10)),
    st.builds(lambda v: {"bytes_value": v}, st.binary(max_size=10)),
    st.just({"is_null": True}),
    st.just({}),
)
metrics = st.lists(
    st.tuples(
        st.sampled_from(["Pump/Running", "Sump/Level", "Level", "bdSeq", "x", ""]),
        st.integers(0, 20),
        st.integers(0, 21),
        metric_values,
        st.integers(0, 2**64 - 1) | st.none(),
    ),
    max_size=5,
)


def _payload(
    ms: list[tuple[str, int, int, dict[str, Any], int | None]], seq: int | None, ts: int | None
) -> bytes:
    p = Payload()
    if seq is not None:
        p.seq = seq
    if ts is not None:
        p.timestamp = ts
    for name, alias, datatype, value, when in ms:
        m = p.metrics.add(alias=alias, datatype=datatype, **value)
        if name:
            m.name = name
        if when is not None:
            m.timestamp = when
    return p.SerializeToString()


payloads = st.builds(
    _payload,
    metrics,
    st.integers(0, 2**64 - 1) | st.none(),
    st.integers(0, 2**64 - 1) | st.none(),
)


@FUZZ
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["NBIRTH", "NDATA", "DBIRTH", "DDATA", "DDEATH", "NDEATH"]),
            payloads | st.binary(max_size=60),
        ),
        max_size=6,
    )
)
def test_sparkplug_any_message_sequence(messages: list[tuple[str, bytes]]) -> None:
    translator = SparkplugTranslator(SPARKPLUG, CITY, TOPICS)
    for kind, payload in messages:
        device = "/Outfall" if kind.startswith("D") else ""
        topic = f"spBv1.0/{GROUP}/{kind}/{NODE}{device}"
        check(translator.translate(topic, payload, NOW))


@FUZZ
@given(st.text(max_size=60), st.binary(max_size=40))
def test_sparkplug_any_topic(topic: str, payload: bytes) -> None:
    check(SparkplugTranslator(SPARKPLUG, CITY, TOPICS).translate(topic, payload, NOW))


def test_sparkplug_keeps_no_state_for_edge_nodes_it_does_not_know() -> None:
    translator = SparkplugTranslator(SPARKPLUG, CITY, TOPICS)
    for i in range(100):
        out = translator.translate(f"spBv1.0/{GROUP}/NDATA/other-{i}", _payload([], 1, 1), NOW)
        assert out == Translation()
    assert translator.ignored == 100 and translator.rebirths == 0


def test_an_uplink_the_network_server_did_not_decode_is_dead_lettered_but_its_rssi_kept() -> None:
    up = ns.chirpstack_up(EUI, NOW, 4, None)
    out = chirpstack().translate(ns.chirpstack_topic(EUI, "up"), up, NOW)
    assert [r.reason for r in out.rejections] == ["invalid_payload"]
    assert "decoded nothing" in out.rejections[0].detail
    (pack,) = out.publishes
    assert [r["n"] for r in json.loads(pack.payload)] == ["rssi"]
    assert out.lines[0].startswith("device_link,")
