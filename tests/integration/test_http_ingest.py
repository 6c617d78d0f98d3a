"""The HTTP intake (ingest.http) against the real broker and InfluxDB: the same decoding,
validation, dead letters and spool as MQTT, the reason in the answer, per-device tokens
stored hashed and rotated by `pantau ingest token`, and the device's message budget."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cbor2
import httpx
import pytest

from ingest import deadletter
from ingest.__main__ import main as ingest_main
from ingest.http import HttpIntake
from ingest.service import IngestService
from pantau.city import City, load_city
from pantau.influx.writers import make_writer
from pantau.local.ports import free_port
from pantau.settings import Settings
from pantau.topics import Topics
from pantau.wire import SENML_CBOR_CONTENT_TYPE, SENML_CONTENT_TYPE, Sample, encode_native
from testkit.mqtt import Collector, wait_for
from tests.integration.test_ingest import stored_per_device

pytestmark = pytest.mark.integration

GATE = "fg-poris-jaya-001"
STATION = "wl-alam-jaya-001"


@pytest.fixture(scope="module")
def city() -> City:
    return load_city()


@dataclass
class Intake:
    url: str
    service: IngestService
    http: HttpIntake
    settings: Settings

    def post(
        self, device: str, body: bytes, token: str, content_type: str = "application/json"
    ) -> httpx.Response:
        return httpx.post(
            f"{self.url}/ingest/{device}",
            content=body,
            headers={"Authorization": f"Bearer {token}", "Content-Type": content_type},
            timeout=20,
        )


def start_intake(settings: Settings, city: City) -> Iterator[Intake]:
    service = IngestService(settings, city, make_writer(settings.influx))
    port = free_port()
    http = HttpIntake(service, settings.ingest, port)
    service.start()
    assert service.wait_subscribed(10)
    http.start()
    yield Intake(f"http://127.0.0.1:{port}", service, http, settings)
    http.stop()
    service.stop()


@pytest.fixture
def intake(settings: Settings, city: City, tmp_path: Path) -> Iterator[Intake]:
    settings.ingest.http_tokens = tmp_path / "tokens.json"
    yield from start_intake(settings, city)


def native(device: str, when: datetime, *samples: Sample) -> bytes:
    return encode_native(device, None, when, list(samples))


def test_readings_are_spooled_before_the_answer_and_stored(intake: Intake) -> None:
    token = intake.http.tokens.rotate(STATION)
    when = datetime.now(UTC) - timedelta(minutes=5)
    spooled = intake.service.spool.appended_records
    r = intake.post(STATION, native(STATION, when, Sample("water_level", 120.0, "cm")), token)
    assert r.status_code == 200, r.text
    assert r.json() == {"accepted": 1, "rejected": []}
    assert intake.service.spool.appended_records > spooled  # durable before the 2xx
    wait_for(lambda: stored_per_device(intake.settings)[STATION] == 1, 30, "stored")


def test_a_bad_record_is_refused_alone_with_its_reason_in_answer_and_dead_letter(
    intake: Intake,
) -> None:
    topics = Topics(intake.settings.mqtt.root)
    dead = Collector(intake.settings.mqtt, topics.all_deadletter)
    token = intake.http.tokens.rotate(GATE)
    pack = [
        {"bn": f"{GATE}/", "n": "water_level", "u": "cm", "v": 140},
        {"n": "gate_opening", "vs": "ajar"},
        {"n": "gate_opening", "vs": "open", "t": -1},
    ]
    r = intake.post(GATE, json.dumps(pack).encode(), token, SENML_CONTENT_TYPE)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["accepted"] == 2
    assert [x["reason"] for x in body["rejected"]] == ["unsupported_value"]
    assert body["rejected"][0]["detail"].startswith("record 1:")
    wait_for(lambda: len(dead.snapshot()) >= 1, 10, "the dead letter")
    letter = deadletter.decode(bytes(dead.snapshot()[0].payload))
    assert (letter.reason, letter.topic) == ("unsupported_value", topics.sensor_up(GATE))
    assert letter.payload == json.dumps(pack).encode()
    dead.close()

    r = intake.post(GATE, b'{"device": ', token)  # nothing decodes: 400 and why
    assert r.status_code == 400
    assert [x["reason"] for x in r.json()["rejected"]] == ["malformed_json"]
    cbor = cbor2.dumps([{-2: f"{GATE}/", 0: "gate_opening", 3: "closed"}])
    r = intake.post(GATE, cbor, token, SENML_CBOR_CONTENT_TYPE)
    assert (r.status_code, r.json()["accepted"]) == (200, 1)
    r = intake.post(GATE, b"x" * (intake.settings.ingest.max_payload_bytes + 10), token)
    assert (r.status_code, r.json()["rejected"][0]["reason"]) == (413, "too_large")


def test_tokens_are_per_device_hashed_and_rotated_by_the_cli(
    intake: Intake, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    body = native(STATION, datetime.now(UTC), Sample("battery", 80.0, "%"))
    monkeypatch.setenv("PANTAU_INGEST__HTTP_TOKENS", str(intake.settings.ingest.http_tokens))
    assert ingest_main(["token", STATION]) == 0
    first = capsys.readouterr().out.strip()
    assert intake.post(STATION, body, first).status_code == 200
    assert intake.post(STATION, body, "wrong").status_code == 401
    assert intake.post(GATE, body, first).status_code == 401  # another device's token
    assert httpx.post(f"{intake.url}/ingest/{STATION}", content=body).status_code == 401
    assert ingest_main(["token", STATION]) == 0
    second = capsys.readouterr().out.strip()
    assert second != first
    assert intake.post(STATION, body, first).status_code == 401  # rotated out
    assert intake.post(STATION, body, second).status_code == 200
    stored = intake.settings.ingest.http_tokens.read_text()
    assert first not in stored and second not in stored and "$7$" in stored
    assert ingest_main(["token", "no-such-device"]) == 2


def test_http_is_held_to_the_device_budget(settings: Settings, city: City, tmp_path: Path) -> None:
    settings.ingest.http_tokens = tmp_path / "tokens.json"
    settings.ingest.rate_limit_factor = 2  # two messages per report interval
    for intake in start_intake(settings, city):
        token = intake.http.tokens.rotate(STATION)
        when = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=3)
        codes = [
            intake.post(STATION, native(STATION, when, Sample("battery", 80.0 + i)), token)
            for i in range(3)
        ]
        assert [c.status_code for c in codes] == [200, 200, 429]
        assert codes[2].json()["rejected"][0]["reason"] == "rate_limited"
