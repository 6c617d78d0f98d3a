"""SenML by RFC 8428: every example of the RFC resolved as section 4.6 says, the CBOR example of
section 6 decoded from its hex dump, RFC-style names matched to registry devices, string
states and sums through the catalogue, and each bad record refused on its own.

The example packs are copied from the RFC's text (sections 5.1.1-5.1.7 and 6); the
expected resolved forms are the RFC's own for 5.1.4 and, for the others, the rules of
4.6 applied by hand: base fields applied, relative times counted from receipt, `bver`
kept when it is not 10, chronological order.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import cbor2
import pytest
import yaml

from ingest.pipeline import Pipeline
from pantau.city import City, load_city
from pantau.device_messages import DeviceMessageReader, ReadOutcome
from pantau.errors import ConfigErrors, RejectedInput
from pantau.senml import load_cbor, resolved_form
from pantau.settings import IngestSettings
from pantau.topics import Topics

NOW = datetime(2026, 11, 27, 20, 0, tzinfo=UTC)
NOW_S = NOW.timestamp()
OW = "urn:dev:ow:10e2073a01080063"


def same(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> None:
    """Equal record by record, numbers to double precision (bt + t is a float sum)."""
    assert [sorted(r) for r in got] == [sorted(r) for r in want]
    for g, w in zip(got, want, strict=True):
        for key, value in w.items():
            if isinstance(value, float):
                assert g[key] == pytest.approx(value, rel=1e-15), (key, g, w)
            else:
                assert g[key] == value, (key, g, w)


def test_5_1_1_single_data_point() -> None:
    pack = [{"n": "urn:dev:ow:10e2073a01080063", "u": "Cel", "v": 23.1}]
    same(resolved_form(pack, NOW), [{"n": OW, "u": "Cel", "v": 23.1, "t": NOW_S}])


def test_5_1_2_multiple_data_points_now() -> None:
    pack = [
        {"bn": "urn:dev:ow:10e2073a01080063:", "n": "voltage", "u": "V", "v": 120.1},
        {"n": "current", "u": "A", "v": 1.2},
    ]
    same(
        resolved_form(pack, NOW),
        [
            {"n": f"{OW}:voltage", "u": "V", "v": 120.1, "t": NOW_S},
            {"n": f"{OW}:current", "u": "A", "v": 1.2, "t": NOW_S},
        ],
    )


RFC_5_1_2_VERSION_5 = [
    {
        "bn": "urn:dev:ow:10e2073a0108006:",
        "bt": 1.276020076001e09,
        "bu": "A",
        "bver": 5,
        "n": "voltage",
        "u": "V",
        "v": 120.1,
    },
    {"n": "current", "t": -5, "v": 1.2},
    {"n": "current", "t": -4, "v": 1.3},
    {"n": "current", "t": -3, "v": 1.4},
    {"n": "current", "t": -2, "v": 1.5},
    {"n": "current", "t": -1, "v": 1.6},
    {"n": "current", "v": 1.7},
]


def resolved_5_1_2_version_5() -> list[dict[str, Any]]:
    """Version 5 is below 10, so it is read (4.4) and kept in every record (4.6)."""
    bt, n = 1.276020076001e09, "urn:dev:ow:10e2073a0108006:"
    currents = [
        {"n": f"{n}current", "u": "A", "v": v, "t": bt + dt, "bver": 5}
        for dt, v in [(-5, 1.2), (-4, 1.3), (-3, 1.4), (-2, 1.5), (-1, 1.6)]
    ]
    return [
        *currents,
        {"n": f"{n}voltage", "u": "V", "v": 120.1, "t": bt, "bver": 5},
        {"n": f"{n}current", "u": "A", "v": 1.7, "t": bt, "bver": 5},
    ]


def test_5_1_2_multiple_data_points_version_5_in_time_order() -> None:
    same(resolved_form(RFC_5_1_2_VERSION_5, NOW), resolved_5_1_2_version_5())


def test_5_1_2_sensml_stream() -> None:
    # The RFC's stream goes on ("..."); its first nine records.
    pack: list[dict[str, Any]] = [
        {"bn": "urn:dev:ow:10e2073a01080063", "bt": 1.320067464e09, "bu": "%RH", "v": 21.2},
        {"t": 10, "v": 21.3},
        {"t": 20, "v": 21.4},
        {"t": 30, "v": 21.4},
        {"t": 40, "v": 21.5},
        {"t": 50, "v": 21.5},
        {"t": 60, "v": 21.5},
        {"t": 70, "v": 21.6},
        {"t": 80, "v": 21.7},
    ]
    values = [21.2, 21.3, 21.4, 21.4, 21.5, 21.5, 21.5, 21.6, 21.7]
    same(
        resolved_form(pack, NOW),
        [{"n": OW, "u": "%RH", "v": v, "t": 1.320067464e09 + 10 * i} for i, v in enumerate(values)],
    )


def test_5_1_3_multiple_measurements_resolve_to_5_1_4() -> None:
    pack: list[dict[str, Any]] = [
        {"bn": "urn:dev:ow:10e2073a01080063", "bt": 1.320067464e09, "bu": "%RH", "v": 20},
        {"u": "lon", "v": 24.30621},
        {"u": "lat", "v": 60.07965},
        {"t": 60, "v": 20.3},
        {"u": "lon", "t": 60, "v": 24.30622},
        {"u": "lat", "t": 60, "v": 60.07965},
        {"t": 120, "v": 20.7},
        {"u": "lon", "t": 120, "v": 24.30623},
        {"u": "lat", "t": 120, "v": 60.07966},
        {"u": "%EL", "t": 150, "v": 98},
        {"t": 180, "v": 21.2},
        {"u": "lon", "t": 180, "v": 24.30628},
        {"u": "lat", "t": 180, "v": 60.07967},
    ]
    # 5.1.4, as the RFC prints it
    resolved: list[dict[str, Any]] = [
        {"n": "urn:dev:ow:10e2073a01080063", "u": "%RH", "t": 1.320067464e09, "v": 20},
        {"n": "urn:dev:ow:10e2073a01080063", "u": "lon", "t": 1.320067464e09, "v": 24.30621},
        {"n": "urn:dev:ow:10e2073a01080063", "u": "lat", "t": 1.320067464e09, "v": 60.07965},
        {"n": "urn:dev:ow:10e2073a01080063", "u": "%RH", "t": 1.320067524e09, "v": 20.3},
        {"n": "urn:dev:ow:10e2073a01080063", "u": "lon", "t": 1.320067524e09, "v": 24.30622},
        {"n": "urn:dev:ow:10e2073a01080063", "u": "lat", "t": 1.320067524e09, "v": 60.07965},
        {"n": "urn:dev:ow:10e2073a01080063", "u": "%RH", "t": 1.320067584e09, "v": 20.7},
        {"n": "urn:dev:ow:10e2073a01080063", "u": "lon", "t": 1.320067584e09, "v": 24.30623},
        {"n": "urn:dev:ow:10e2073a01080063", "u": "lat", "t": 1.320067584e09, "v": 60.07966},
        {"n": "urn:dev:ow:10e2073a01080063", "u": "%EL", "t": 1.320067614e09, "v": 98},
        {"n": "urn:dev:ow:10e2073a01080063", "u": "%RH", "t": 1.320067644e09, "v": 21.2},
        {"n": "urn:dev:ow:10e2073a01080063", "u": "lon", "t": 1.320067644e09, "v": 24.30628},
        {"n": "urn:dev:ow:10e2073a01080063", "u": "lat", "t": 1.320067644e09, "v": 60.07967},
    ]
    same(resolved_form(pack, NOW), resolved)


def test_5_1_5_multiple_data_types() -> None:
    pack = [
        {"bn": "urn:dev:ow:10e2073a01080063:", "n": "temp", "u": "Cel", "v": 23.1},
        {"n": "label", "vs": "Machine Room"},
        {"n": "open", "vb": False},
        {"n": "nfv-reader", "vd": "aGkgCg"},
    ]
    same(
        resolved_form(pack, NOW),
        [
            {"n": f"{OW}:temp", "u": "Cel", "v": 23.1, "t": NOW_S},
            {"n": f"{OW}:label", "vs": "Machine Room", "t": NOW_S},
            {"n": f"{OW}:open", "vb": False, "t": NOW_S},
            {"n": f"{OW}:nfv-reader", "vd": "aGkgCg", "t": NOW_S},
        ],
    )


def test_5_1_6_collection_of_resources() -> None:
    pack = [
        {"bn": "2001:db8::2/", "bt": 1.320078429e09, "n": "temperature", "u": "Cel", "v": 25.2},
        {"n": "humidity", "u": "%RH", "v": 30},
        {"bn": "2001:db8::1/", "n": "temperature", "u": "Cel", "v": 12.3},
        {"n": "humidity", "u": "%RH", "v": 67},
    ]
    t = 1.320078429e09  # the last record: base name of the 3rd, base time of the 1st
    same(
        resolved_form(pack, NOW),
        [
            {"n": "2001:db8::2/temperature", "u": "Cel", "v": 25.2, "t": t},
            {"n": "2001:db8::2/humidity", "u": "%RH", "v": 30, "t": t},
            {"n": "2001:db8::1/temperature", "u": "Cel", "v": 12.3, "t": t},
            {"n": "2001:db8::1/humidity", "u": "%RH", "v": 67, "t": t},
        ],
    )


def test_5_1_7_setting_an_actuator() -> None:
    pack = [
        {"bn": "urn:dev:ow:10e2073a01080063:"},
        {"n": "temp", "u": "Cel", "v": 23.1},
        {"n": "heat", "u": "/", "v": 1},
        {"n": "fan", "u": "/", "v": 0},
    ]
    same(
        resolved_form(pack, NOW),
        [
            {"n": f"{OW}:temp", "u": "Cel", "v": 23.1, "t": NOW_S},
            {"n": f"{OW}:heat", "u": "/", "v": 1, "t": NOW_S},
            {"n": f"{OW}:fan", "u": "/", "v": 0, "t": NOW_S},
        ],
    )


def test_5_1_7_two_lights_on() -> None:
    pack = [
        {"bt": 1.320078429e09, "bu": "/", "n": "2001:db8::3", "v": 1},
        {"n": "2001:db8::4", "v": 1},
    ]
    same(
        resolved_form(pack, NOW),
        [
            {"n": "2001:db8::3", "u": "/", "v": 1, "t": 1.320078429e09},
            {"n": "2001:db8::4", "u": "/", "v": 1, "t": 1.320078429e09},
        ],
    )


def test_5_1_7_two_lights_dimmed_then_off() -> None:
    pack = [
        {"bt": 1.320078429e09, "bu": "/", "n": "2001:db8::3", "v": 0.5},
        {"n": "2001:db8::4", "v": 0.5},
        {"n": "2001:db8::3", "t": 0.1, "v": 0},
        {"n": "2001:db8::4", "t": 0.1, "v": 0},
    ]
    t = 1.320078429e09
    same(
        resolved_form(pack, NOW),
        [
            {"n": "2001:db8::3", "u": "/", "v": 0.5, "t": t},
            {"n": "2001:db8::4", "u": "/", "v": 0.5, "t": t},
            {"n": "2001:db8::3", "u": "/", "v": 0, "t": t + 0.1},
            {"n": "2001:db8::4", "u": "/", "v": 0, "t": t + 0.1},
        ],
    )


# Section 6: the hex dump of the CBOR form of 5.1.2's second example.
RFC_6_CBOR_HEX = """
87 a7 21 78 1b 75 72 6e 3a 64 65 76 3a 6f 77 3a 31 30 65 32 30 37 33 61 30 31 30 38 30 30 36 3a
22 fb 41 d3 03 a1 5b 00 10 62 23 61 41 20 05 00 67 76 6f 6c 74 61 67 65 01 61 56 02 fb 40 5e 06
66 66 66 66 66 a3 00 67 63 75 72 72 65 6e 74 06 24 02 fb 3f f3 33 33 33 33 33 33 a3 00 67 63 75
72 72 65 6e 74 06 23 02 fb 3f f4 cc cc cc cc cc cd a3 00 67 63 75 72 72 65 6e 74 06 22 02 fb 3f
f6 66 66 66 66 66 66 a3 00 67 63 75 72 72 65 6e 74 06 21 02 f9 3e 00 a3 00 67 63 75 72 72 65 6e
74 06 20 02 fb 3f f9 99 99 99 99 99 9a a3 00 67 63 75 72 72 65 6e 74 06 00 02 fb 3f fb 33 33 33
33 33 33
"""


def test_6_cbor_example_resolves_like_its_json() -> None:
    payload = bytes.fromhex(RFC_6_CBOR_HEX)
    assert len(payload) == 0xC3  # the dump's length
    same(resolved_form(load_cbor(payload), NOW), resolved_5_1_2_version_5())


# --- registry names, states, sums, one record at a time -----------------------------
GATE = "fg-poris-jaya-001"
STATION = "wl-alam-jaya-001"
GAUGE = "rg-alam-jaya-001"


@pytest.fixture(scope="module")
def city(tmp_path_factory: pytest.TempPathFactory) -> City:
    """The shipped config with SenML names given to three devices."""
    config = tmp_path_factory.mktemp("senml") / "config"
    shutil.copytree(load_city().config_dir, config)
    with_names(
        config,
        {
            STATION: {"senml_name": f"{OW}:", "senml_aliases": {"level": "water_level"}},
            GATE: {
                "senml_name": "urn:dev:mac:0024befffe804ff1:",
                "senml_aliases": {"gate": "gate_opening", "upstream": "water_level"},
            },
            GAUGE: {"senml_aliases": {"rain": "rainfall_rate"}},
        },
    )
    return load_city(config)


def with_names(config: Path, fields: dict[str, dict[str, Any]]) -> None:
    path = config / "devices.yaml"
    doc = yaml.safe_load(path.read_text())
    for device in doc["devices"]:
        device.update(fields.get(device["id"], {}))
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


def read(
    city: City, device: str, pack: object, content_type: str = "application/senml+json"
) -> ReadOutcome:
    reader = DeviceMessageReader(city, Topics("t"), IngestSettings())
    body = cbor2.dumps(pack) if content_type.endswith("cbor") else json.dumps(pack).encode()
    return reader.read(Topics("t").sensor_up(device), body, content_type, NOW)


def test_rfc_style_names_resolve_to_the_registry_device_and_metric(city: City) -> None:
    pack = [{"bn": f"{OW}:", "n": "level", "u": "m", "v": 1.25}, {"n": "battery", "v": 80}]
    out = read(city, STATION, pack)
    assert [(r.device_id, r.metric, r.value) for r in out.readings] == [
        (STATION, "water_level", 125.0),
        (STATION, "battery", 80.0),
    ]
    assert not out.rejections
    # the same base name on another device's topic is not that device's
    out = read(city, GATE, pack)
    assert not out.readings
    assert [r.reason for r in out.rejections] == ["device_mismatch", "device_mismatch"]


def test_the_issue_pack_numeric_then_string_keeps_the_number(city: City) -> None:
    """A numeric record followed by a string one: the number is stored, the string is
    mapped through the catalogue's states (a gate's open/closed) or refused by itself."""
    pack = [
        {"bn": "urn:dev:mac:0024befffe804ff1:", "n": "upstream", "u": "cm", "v": 140},
        {"n": "gate", "vs": "closed"},
        {"n": "gate", "vs": "ajar", "t": -1},
        {"n": "gate", "vd": "aGkgCg", "t": -2},
        {"n": "gate", "vb": True, "t": -3},
    ]
    out = read(city, GATE, pack)
    assert [(r.metric, r.value) for r in out.readings] == [
        ("water_level", 140.0),
        ("gate_opening", 0.0),
        ("gate_opening", 1.0),  # a boolean is 1 / 0, whatever the metric
    ]
    assert [(r.reason, r.detail.split(":")[0]) for r in out.rejections] == [
        ("unsupported_value", "record 2"),
        ("unsupported_value", "record 3"),
    ]
    assert "open, closed" in out.rejections[0].detail


def test_a_sum_is_stored_where_the_catalogue_says(city: City) -> None:
    # 36000 mm/h x s over the hour = 10 mm fallen; the rate beside it stays a rate
    pack = [{"bn": f"{GAUGE}/", "n": "rain", "u": "mm/h", "v": 4.5, "s": 36000}]
    out = read(city, GAUGE, pack)
    assert [(r.metric, r.value, r.unit) for r in out.readings] == [
        ("rainfall_rate", 4.5, "mm/h"),
        ("rainfall", pytest.approx(10.0), "mm"),
    ]
    out = read(city, STATION, [{"n": "battery", "s": 5}])  # battery has no sum metric
    assert [r.reason for r in out.rejections] == ["unsupported_value"]


def test_versions_5_and_10_are_read_11_is_refused(city: City) -> None:
    for version in (5, 10):
        out = read(city, STATION, [{"bver": version, "n": "battery", "v": 80}])
        assert [r.value for r in out.readings] == [80.0]
    out = read(city, STATION, [{"bver": 11, "n": "battery", "v": 80}])
    assert [r.reason for r in out.rejections] == ["unsupported_version"]
    assert not out.readings


def test_senml_cbor_with_integer_labels_and_decimal_fractions(city: City) -> None:
    pack = [{-2: f"{OW}:", 0: "level", 1: "cm", 2: Decimal("123.5")}, {0: "battery", 2: 77}]
    out = read(city, STATION, pack, "application/senml+cbor")
    assert [(r.metric, r.value) for r in out.readings] == [("water_level", 123.5), ("battery", 77)]
    reader = DeviceMessageReader(city, Topics("t"), IngestSettings())
    bad = reader.read(Topics("t").sensor_up(STATION), b"\x9f\x01", "application/senml+cbor", NOW)
    assert [r.reason for r in bad.rejections] == ["malformed_cbor"]


def test_senml_fields_are_checked_at_load(city: City, tmp_path: Path) -> None:
    config = tmp_path / "config"
    shutil.copytree(city.config_dir, config)
    with_names(
        config,
        {
            GATE: {"senml_name": f"{OW}:", "senml_aliases": {"level": "rainfall_rate"}},
        },
    )
    with pytest.raises(ConfigErrors) as info:
        load_city(config)
    problems = [e.problem for e in info.value.errors]
    assert any("also device" in p and STATION in p for p in problems), problems
    assert any("'rainfall_rate' is not a metric of a flood_gate" in p for p in problems), problems


def test_a_relative_time_is_counted_from_receipt(city: City) -> None:
    out = read(city, STATION, [{"n": "battery", "v": 80, "t": -30}])
    assert [r.time for r in out.readings] == [NOW - timedelta(seconds=30)]


def test_a_pack_is_refused_whole_only_for_pack_faults() -> None:
    with pytest.raises(RejectedInput) as info:
        resolved_form([{"n": "x", "v": 1, "must_": 1}], NOW)
    assert info.value.reason == "invalid_payload"


def test_senml_cbor_and_json_packs_share_the_device_budget(city: City) -> None:
    """Whatever the form, a device gets `rate_limit_factor` messages per report interval
    of its own clock; the rest is dead-lettered as rate_limited."""
    topics = Topics("t")
    pipeline = Pipeline(city, topics, IngestSettings(rate_limit_factor=2))
    pack = [{-2: f"{STATION}/", -3: NOW.timestamp() - 30, 0: "battery", 2: 80}]
    forms = [
        (cbor2.dumps(pack), "application/senml+cbor"),
        (json.dumps([{"n": "battery", "v": 81, "t": -20}]).encode(), "application/senml+json"),
        (cbor2.dumps(pack), "application/senml+cbor"),
    ]
    outcomes = [pipeline.handle(topics.sensor_up(STATION), p, c, NOW) for p, c in forms]
    assert [len(o.lines) for o in outcomes] == [1, 1, 0]
    assert [r.reason for r in outcomes[2].rejections] == ["rate_limited"]
