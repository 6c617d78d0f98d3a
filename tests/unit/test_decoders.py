"""Decoders: the native JSON form and SenML (RFC 8428) including its edge cases."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from pantau.decoding import (
    SENML_RELATIVE_LIMIT,
    RawReading,
    decode,
    decode_native,
    decode_senml,
)
from pantau.errors import RejectedInput
from pantau.wire import Sample, encode_native, encode_senml

NOW = datetime(2026, 11, 27, 20, 0, tzinfo=UTC)
DEV = "wl-sukasari-001"


def senml(records: list[dict[str, object]]) -> bytes:
    return json.dumps(records).encode()


def ok(out: list[RawReading | RejectedInput]) -> list[RawReading]:
    """The readings of a decoded message; fails if any record was refused."""
    assert all(isinstance(r, RawReading) for r in out), out
    return [r for r in out if isinstance(r, RawReading)]


def readings(payload: bytes) -> list[RawReading]:
    return ok(decode_senml(DEV, payload, NOW))


def reason_of(payload: bytes, decoder: str = "auto") -> str:
    with pytest.raises(RejectedInput) as info:
        if decoder == "senml":
            readings(payload)
        elif decoder == "native":
            decode_native(DEV, payload, NOW)
        else:
            decode(DEV, payload, NOW, None)
    return info.value.reason


# --- native --------------------------------------------------------------------------
def test_native_round_trip_from_the_encoder() -> None:
    when = NOW - timedelta(seconds=5)
    payload = encode_native(
        DEV, 7, when, [Sample("water_level", 123.4, "cm"), Sample("pump_running", True)]
    )
    out = ok(decode(DEV, payload, NOW, "application/json"))
    assert [(r.metric, r.value, r.unit, r.time, r.seq) for r in out] == [
        ("water_level", 123.4, "cm", when, 7),
        ("pump_running", 1.0, None, when, 7),
    ]


def test_native_epoch_seconds_and_per_reading_time() -> None:
    payload = json.dumps(
        {
            "device": DEV,
            "time": NOW.timestamp() + 0.5,
            "readings": [
                {"metric": "battery", "value": 80},
                {"metric": "rssi", "value": -70, "time": "2026-11-27T19:59:00+07:00"},
            ],
        }
    ).encode()
    first, second = ok(decode_native(DEV, payload, NOW))
    assert first.time == datetime(2026, 11, 27, 20, 0, 0, 500000, tzinfo=UTC)
    assert second.time == datetime(2026, 11, 27, 12, 59, tzinfo=UTC)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{broken", "malformed_json"),
        (b"\xff\xfe{}", "malformed_json"),
        (b'{"device": "wl-sukasari-001", "time": NaN, "readings": []}', "malformed_json"),
        (b"[" * 100_000 + b"]" * 100_000, "malformed_json"),
        (b'"just a string"', "invalid_payload"),
        (
            b'{"device": "other", "time": 1, "readings": [{"metric": "x", "value": 1}]}',
            "device_mismatch",
        ),
        (
            b'{"device": "wl-sukasari-001", "readings": [{"metric": "x", "value": 1}]}',
            "bad_timestamp",
        ),
        (b'{"device": "wl-sukasari-001", "time": "yesterday", "readings": []}', "bad_timestamp"),
        (
            b'{"device": "wl-sukasari-001", "time": "2026-11-27T20:00:00", '
            b'"readings": [{"metric": "x", "value": 1}]}',
            "bad_timestamp",
        ),
        (
            b'{"device": "wl-sukasari-001", "time": 1e300, '
            b'"readings": [{"metric": "x", "value": 1}]}',
            "bad_timestamp",
        ),
        (b'{"device": "wl-sukasari-001", "time": 1, "readings": []}', "invalid_payload"),
        (
            b'{"device": "wl-sukasari-001", "time": 1, '
            b'"readings": [{"metric": "x", "value": "7"}]}',
            "invalid_payload",
        ),
        (
            b'{"device": "wl-sukasari-001", "time": 1, '
            b'"readings": [{"metric": "x", "value": 1e999}]}',
            "out_of_range",
        ),
        (
            b'{"device": "wl-sukasari-001", "time": 1, "readings": [{"metric": "x", "value": '
            + b"9" * 400
            + b"}]}",
            "out_of_range",
        ),
        (
            b'{"device": "wl-sukasari-001", "time": 1, "color": "red", "readings": []}',
            "invalid_payload",
        ),
        (b'{"device": "wl-sukasari-001", "seq": -1, "time": 1, "readings": []}', "invalid_payload"),
    ],
)
def test_native_rejections(payload: bytes, reason: str) -> None:
    assert reason_of(payload) == reason


# --- SenML ---------------------------------------------------------------------------
def test_senml_round_trip_from_the_encoder() -> None:
    when = datetime(2026, 11, 27, 19, 59, 30, 250000, tzinfo=UTC)
    payload = encode_senml(
        DEV, when, [Sample("water_level", 1.5, "m"), Sample("pump_running", False)]
    )
    out = ok(decode(DEV, payload, NOW, "application/senml+json"))
    assert [(r.metric, r.value, r.unit, r.time) for r in out] == [
        ("water_level", 1.5, "m", when),
        ("pump_running", 0.0, None, when),
    ]


def test_senml_base_fields_carry_forward() -> None:
    payload = senml(
        [
            {"bn": f"{DEV}/", "bt": 1764273600, "bu": "cm", "bv": 100, "n": "water_level", "v": 5},
            {"n": "water_level", "v": 7, "t": 60},
            {"n": "battery", "u": "%", "v": 90, "t": 60},
        ]
    )
    a, b, c = readings(payload)
    base = datetime.fromtimestamp(1764273600, UTC)
    assert (a.value, a.unit, a.time) == (105, "cm", base)
    assert (b.value, b.unit, b.time) == (107, "cm", base + timedelta(seconds=60))
    # the base value applies to every record's "v", whatever its unit (RFC 8428 4.1)
    assert (c.value, c.unit) == (190, "%")


def test_senml_relative_and_missing_times_are_relative_to_receipt() -> None:
    payload = senml(
        [
            {"bn": f"{DEV}/", "n": "water_level", "v": 1},  # no time: now
            {"n": "water_level", "v": 2, "t": -30},  # 30 s ago
            {"n": "water_level", "v": 3, "t": SENML_RELATIVE_LIMIT - 1},  # still relative
        ]
    )
    a, b, c = readings(payload)
    assert a.time == NOW
    assert b.time == NOW - timedelta(seconds=30)
    assert c.time == NOW + timedelta(seconds=SENML_RELATIVE_LIMIT - 1)


def test_senml_absolute_time_at_the_limit() -> None:
    payload = senml([{"bn": f"{DEV}/", "n": "battery", "v": 1, "t": SENML_RELATIVE_LIMIT}])
    (r,) = readings(payload)
    assert r.time == datetime.fromtimestamp(SENML_RELATIVE_LIMIT, UTC)


def test_senml_name_without_base_and_urn_base() -> None:
    (a,) = readings(senml([{"n": "battery", "v": 50}]))
    (b,) = readings(senml([{"bn": f"urn:dev:{DEV}/", "n": "battery", "v": 50}]))
    assert a.metric == b.metric == "battery"


def test_senml_ignores_unknown_fields_but_not_must_understand_ones() -> None:
    (r,) = readings(senml([{"n": "battery", "v": 50, "seq": 3}]))
    assert r.value == 50
    assert reason_of(senml([{"n": "battery", "v": 50, "crit_": 1}]), "senml") == "invalid_payload"


def test_senml_base_only_records_are_allowed() -> None:
    payload = senml([{"bn": f"{DEV}/", "bt": 1764273600}, {"n": "battery", "v": 1}])
    (r,) = readings(payload)
    assert r.time == datetime.fromtimestamp(1764273600, UTC)


@pytest.mark.parametrize(
    ("records", "reason"),
    [
        ([], "invalid_payload"),
        ([{"bn": f"{DEV}/"}], "invalid_payload"),  # no values at all
        ([{"n": "battery", "v": 1, "bver": 11}], "unsupported_version"),  # newer than 10
        ([{"n": "battery", "v": 1, "bver": 0}], "invalid_payload"),
        ([{"bver": 5}, {"n": "battery", "v": 1, "bver": 6}], "invalid_payload"),  # mixed
        ([{"n": "battery", "v": 1, "crit_": 1}], "invalid_payload"),  # must understand
        ([{"bt": "yesterday"}, {"n": "battery", "v": 1}], "invalid_payload"),  # base field
        ([12.5, 1, 2], "invalid_payload"),  # no record at all: not a pack, one rejection
    ],
)
def test_senml_pack_rejections(records: list[object], reason: str) -> None:
    assert reason_of(json.dumps(records).encode(), "senml") == reason


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ({"n": "battery"}, "invalid_payload"),  # name without value
        ({"n": "battery", "v": 1, "vb": True}, "invalid_payload"),
        ({"n": "battery", "vb": 1}, "invalid_payload"),
        ({"n": "battery", "v": True}, "invalid_payload"),  # a boolean is not a Number
        ({"bn": "other-device/", "n": "battery", "v": 1}, "device_mismatch"),
        ({"bn": f"{DEV}/", "v": 1}, "invalid_payload"),  # name ends in "/": no metric
        ({"n": "battery", "v": "1"}, "invalid_payload"),
        ({"n": "bat tery", "v": 1}, "invalid_payload"),  # 4.5.1 character set
        ({"n": "battery", "v": 1, "t": 1e300}, "bad_timestamp"),
        ({"n": "blob", "vd": "aGkgCg"}, "unsupported_value"),
        ("not a record", "invalid_payload"),
    ],
)
def test_senml_record_rejections_cost_only_their_record(record: object, reason: str) -> None:
    """Each bad record sits between two good ones: they are kept, it is refused alone."""
    good = {"n": "battery", "v": 50}
    out = decode_senml(DEV, json.dumps([good, record, good]).encode(), NOW)
    if isinstance(record, dict) and "bn" in record:  # its base name carries to record 2
        out = out[:2]
    assert isinstance(out[0], RawReading)
    assert isinstance(out[1], RejectedInput)
    assert (out[1].reason, out[1].detail.startswith("record 1")) == (reason, True)


def test_senml_versions_up_to_10_are_read() -> None:
    """RFC 8428 4.4: only a version above the one understood is refused."""
    for version in (1, 5, 10):
        (r,) = readings(senml([{"bver": version, "n": "battery", "v": 50}]))
        assert r.value == 50


def test_senml_sum_is_decoded_beside_the_value() -> None:
    a, b = readings(senml([{"bs": 10, "n": "rainfall_rate", "u": "mm/h", "v": 3, "s": 2}]))
    assert (a.metric, a.value, a.is_sum) == ("rainfall_rate", 3, False)
    assert (b.metric, b.value, b.unit, b.is_sum) == ("rainfall_rate", 12, "mm/h", True)
    (only,) = readings(senml([{"n": "rainfall_rate", "s": 7200}]))  # sum only: allowed
    assert (only.value, only.is_sum) == (7200, True)


def test_senml_string_values_go_to_the_validator_as_strings() -> None:
    (r,) = readings(senml([{"n": "gate_opening", "vs": "open"}]))
    assert r.value == "open"


def test_content_type_picks_the_decoder_and_unknown_types_are_refused() -> None:
    senml_body = senml([{"n": "battery", "v": 1}])
    assert ok(decode(DEV, senml_body, NOW, None))[0].metric == "battery"  # sniffed
    with pytest.raises(RejectedInput) as info:
        decode(DEV, senml_body, NOW, "application/cbor")
    assert info.value.reason == "invalid_payload"
