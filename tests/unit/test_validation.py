"""Validation against the registry and catalogue, and the pipeline that joins it all."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from ingest.pipeline import Pipeline
from pantau.city import City
from pantau.decoding import RawReading
from pantau.errors import RejectedInput
from pantau.settings import IngestSettings
from pantau.topics import Topics
from pantau.validation import Validator
from pantau.wire import Sample, encode_native, encode_senml

NOW = datetime(2026, 11, 27, 20, 0, tzinfo=UTC)


@pytest.fixture
def validator(city: City) -> Validator:
    return Validator(
        city.catalogue,
        city.devices,
        max_future_skew=timedelta(minutes=5),
        max_age=timedelta(days=7),
    )


def station(city: City) -> str:
    return next(d.id for d in city.devices.values() if d.kind == "water_level_station")


def raw(
    device: str, metric: str, value: float, unit: str | None, when: datetime = NOW
) -> RawReading:
    return RawReading(device, metric, value, unit, when, 1)


def test_units_convert_to_canonical(city: City, validator: Validator) -> None:
    dev = station(city)
    assert validator.reading(raw(dev, "water_level", 1.25, "m"), NOW).value == 125.0
    assert validator.reading(raw(dev, "water_level", 80, "cm"), NOW).value == 80.0
    assert validator.reading(raw(dev, "water_level", 80, None), NOW).unit == "cm"


@pytest.mark.parametrize(
    ("metric", "value", "unit", "when", "reason"),
    [
        ("water_level", 1, "furlong", NOW, "bad_unit"),
        ("water_level", 1, "mm/h", NOW, "bad_unit"),
        ("water_level", -1, "cm", NOW, "out_of_range"),
        ("water_level", 16, "m", NOW, "out_of_range"),
        ("rainfall_rate", 5, "mm/h", NOW, "unknown_metric"),  # not a metric of this kind
        ("wind_speed", 5, None, NOW, "unknown_metric"),
        ("water_level", 1, "cm", NOW + timedelta(minutes=6), "bad_timestamp"),
        ("water_level", 1, "cm", NOW - timedelta(days=8), "bad_timestamp"),
    ],
)
def test_rejections(
    city: City,
    validator: Validator,
    metric: str,
    value: float,
    unit: str | None,
    when: datetime,
    reason: str,
) -> None:
    with pytest.raises(RejectedInput) as info:
        validator.reading(raw(station(city), metric, value, unit, when), NOW)
    assert info.value.reason == reason


def test_clock_skew_within_the_allowance_is_accepted(city: City, validator: Validator) -> None:
    when = NOW + timedelta(minutes=4)
    assert validator.reading(raw(station(city), "battery", 50, "%", when), NOW).time == when


def test_pipeline_keeps_good_readings_of_a_pack_and_rejects_the_bad_one(city: City) -> None:
    pipeline = Pipeline(city, Topics("pantau"), IngestSettings())
    dev = station(city)
    payload = encode_senml(
        dev, NOW, [Sample("water_level", 1.0, "m"), Sample("battery", 150.0, "%")]
    )
    out = pipeline.handle(f"pantau/sensors/{dev}/up", payload, None, NOW)
    assert len(out.lines) == 1 and out.lines[0].startswith("water_level,")
    assert [r.reason for r in out.rejections] == ["out_of_range"]
    assert out.rejections[0].payload == payload


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        ("pantau/sensors/no such/up", b"{}", "bad_device_id"),
        ("pantau/sensors/ghost-device/up", b"{}", "unknown_device"),
        ("pantau/sensors/{dev}/up", b"x" * 300_000, "too_large"),
        ("pantau/sensors/{dev}/up", b"{not json", "malformed_json"),
    ],
)
def test_pipeline_rejects_whole_messages(
    city: City, topic: str, payload: bytes, reason: str
) -> None:
    pipeline = Pipeline(city, Topics("pantau"), IngestSettings())
    out = pipeline.handle(topic.format(dev=station(city)), payload, None, NOW)
    assert out.lines == []
    assert [r.reason for r in out.rejections] == [reason]


def test_pipeline_native_message_becomes_tagged_lines(city: City) -> None:
    pipeline = Pipeline(city, Topics("pantau"), IngestSettings())
    dev = city.devices[station(city)]
    payload = encode_native(dev.id, 42, NOW, [Sample("water_level", 123.5, "cm")])
    (line,) = pipeline.handle(f"pantau/sensors/{dev.id}/up", payload, None, NOW).lines
    millis = int(NOW.timestamp()) * 1000
    assert line == (
        f"water_level,agency={dev.agency},device={dev.id},kecamatan={dev.kecamatan_id},"
        f"kelurahan={dev.kelurahan_id},kind=water_level_station value=123.5,seq=42i {millis}"
    )
    assert json.loads(payload)["seq"] == 42
