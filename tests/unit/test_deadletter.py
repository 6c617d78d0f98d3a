from __future__ import annotations

import json
from datetime import UTC, datetime

from ingest import deadletter
from ingest.deadletter import Rejection

NOW = datetime(2026, 11, 27, 20, 0, tzinfo=UTC)


def test_envelope_keeps_the_payload_byte_exact() -> None:
    payload = b"\xff\x00 not utf-8"
    rejection = Rejection("malformed_json", "not UTF-8", "pantau/sensors/x/up", payload, NOW)
    body = json.loads(deadletter.encode(rejection))
    assert "payload_text" not in body
    assert deadletter.decode(deadletter.encode(rejection)) == rejection


def test_text_payloads_get_a_readable_preview() -> None:
    rejection = Rejection("invalid_payload", "why", "t", b'{"a": "\xc3\xa9"}', NOW)
    body = json.loads(deadletter.encode(rejection))
    assert body["payload_text"] == '{"a": "é"}'
    assert body["reason"] == "invalid_payload" and body["detail"] == "why"
