"""docs/connect-a-device.md says what each example does: its payloads go through ingest's
pipeline here and give the readings and dead-letter details the page quotes."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

from bridges.lorawan import LorawanTranslator, load_lorawan
from ingest.pipeline import Outcome, Pipeline
from pantau.city import load_city
from pantau.settings import IngestSettings
from pantau.topics import Topics

CONFIG = Path(__file__).resolve().parents[2] / "config"

DOC = (Path(__file__).resolve().parents[2] / "docs" / "connect-a-device.md").read_text()
BLOCKS = re.findall(r"```(\w+)\n(.*?)```", DOC, re.S)
JSON = [json.loads(body) for lang, body in BLOCKS if lang == "json"]
RECEIVED = datetime(2026, 11, 27, 20, 0, 5, tzinfo=UTC)  # just after the examples' times
TOPICS = Topics("pantau")
PIPELINE = Pipeline(load_city(), TOPICS, IngestSettings(rate_limit_factor=0))


def handle(device: str, payload: bytes, content_type: str | None = None) -> Outcome:
    return PIPELINE.handle(TOPICS.sensor_up(device), payload, content_type, RECEIVED)


def quoted(detail: str) -> None:
    """The page quotes `detail` (line breaks in the Markdown aside)."""
    assert detail in " ".join(DOC.split()), detail


def test_native_example_and_its_mistake() -> None:
    native = JSON[0]
    out = handle("wl-alam-jaya-001", json.dumps(native).encode())
    assert [line.split(",")[0] for line in out.lines] == ["water_level", "battery"]
    assert " value=132.0," in out.lines[0] and not out.rejections
    native["readings"] = [{"metric": "water_level", "value": 1.32, "unit": "ft"}]
    (bad,) = handle("wl-alam-jaya-001", json.dumps(native).encode()).rejections
    assert bad.reason == "bad_unit"
    quoted(bad.detail)


def test_senml_example_keeps_the_good_records_and_refuses_the_bad_one() -> None:
    out = handle("fg-poris-jaya-001", json.dumps(JSON[1]).encode(), "application/senml+json")
    assert [line.split(",")[0] for line in out.lines] == ["water_level", "gate_opening"]
    assert " value=0.0 " in out.lines[1]  # closed
    (bad,) = out.rejections
    assert bad.reason == "unsupported_value"
    quoted(bad.detail)
    newer = json.dumps([{"bver": 11, "n": "gate_opening", "v": 50}]).encode()
    assert [r.reason for r in handle("fg-poris-jaya-001", newer).rejections] == [
        "unsupported_version"
    ]


def test_cbor_example_is_what_the_page_says() -> None:
    (hexdump,) = re.findall(r"`([0-9a-f]{40,})`", DOC)
    payload = bytes.fromhex(hexdump)
    assert f"{len(payload)} bytes" in DOC
    out = handle("fg-poris-jaya-001", payload, "application/senml+cbor")
    assert [line.split(",")[0] for line in out.lines] == ["gate_opening"]
    assert " value=100.0 " in out.lines[0] and not out.rejections


def test_rfc_style_name_without_registry_entry_is_the_quoted_mismatch() -> None:
    pack = [{"bn": "urn:dev:ow:10e2073a01080063:", "n": "level", "u": "m", "v": 1.25}]
    assert json.dumps(pack[0]) in DOC
    (bad,) = handle("wl-alam-jaya-001", json.dumps(pack).encode()).rejections
    assert bad.reason == "device_mismatch"
    quoted(bad.detail)


def test_curl_example_body_is_accepted() -> None:
    curl = next(body for kind, body in BLOCKS if kind == "sh" and "curl" in body)
    body = re.search(r"-d '(.*?)'", curl, re.S)
    assert body is not None
    out = handle("wl-alam-jaya-001", body.group(1).encode(), "application/json")
    assert len(out.lines) == 1 and not out.rejections
    assert "/ingest/wl-alam-jaya-001" in curl


def lorawan_readings(kind: str, topic: str, body: dict[str, object]) -> list[str]:
    city = load_city()
    config = load_lorawan(CONFIG / "lorawan.yaml", city)
    server = config.network_server.model_copy(update={"kind": kind})
    translator = LorawanTranslator(
        config.model_copy(update={"network_server": server}), city, TOPICS
    )
    out = translator.translate(topic, json.dumps(body).encode(), RECEIVED)
    assert not out.rejections
    (pack,) = out.publishes
    handled = PIPELINE.handle(pack.topic, pack.payload, pack.content_type, RECEIVED)
    assert not handled.rejections and pack.topic == TOPICS.sensor_up("wl-alam-jaya-001")
    return [line.split(" ")[0].split(",")[0] + " " + line.split(" ")[1] for line in handled.lines]


def test_lorawan_examples_give_the_readings_the_page_names() -> None:
    expected = ["water_level value=132.0", "battery value=87.0", "rssi value=-97.0"]
    chirpstack = JSON[2]
    topic = "application/1/device/0004a30b001c0530/event/up"
    assert lorawan_readings("chirpstack", topic, chirpstack) == expected
    tts = JSON[3]
    assert lorawan_readings("tts", "v3/drainage@tangerang/devices/level-1/up", tts) == expected
