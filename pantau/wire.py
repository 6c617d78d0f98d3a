"""Payload forms on `{root}/sensors/{device}/up` — the contract between devices and ingest.

Two forms are accepted; both carry device timestamps and units.

**Native JSON** (an object)::

    {"device": "wl-sukasari-001",            # must equal the topic's device id
     "seq": 42,                               # per-device sequence number, optional
     "time": "2026-11-27T20:00:00.000Z",      # RFC 3339 with offset, or epoch seconds
     "readings": [
        {"metric": "water_level", "value": 123.4, "unit": "cm"},
        {"metric": "pump_running", "value": true},          # unit optional: canonical
        {"metric": "battery", "value": 88, "time": 1764273590}  # per-reading time
     ]}

**SenML JSON** (RFC 8428, an array; content type `application/senml+json`)::

    [{"bn": "wl-sukasari-001/", "bt": 1764273600, "bu": "cm", "n": "water_level", "v": 123.4},
     {"n": "battery", "u": "%", "v": 88, "t": -10}]

The SenML name is `bn + n`; its last `/`-separated part is the metric and anything
before it must be the topic's device id (so `n` alone, without `bn`, is fine), or the
device's `senml_name` of the registry (pantau.senml.SenmlNames). Times are `bt + t`;
values below 2**28 are relative to the time of receipt (RFC 8428 4.5.3). The same pack
in CBOR (`application/senml+cbor`) is read too (pantau.senml).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

NATIVE_CONTENT_TYPE = "application/json"
SENML_CONTENT_TYPE = "application/senml+json"
SENML_CBOR_CONTENT_TYPE = "application/senml+cbor"


@dataclass(frozen=True, slots=True)
class Sample:
    """One value as a device sends it (before validation): metric, value, unit."""

    metric: str
    value: float | bool
    unit: str | None = None


def rfc3339(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def encode_native(
    device_id: str, seq: int | None, time: datetime, samples: Sequence[Sample]
) -> bytes:
    body: dict[str, object] = {"device": device_id}
    if seq is not None:
        body["seq"] = seq
    body["time"] = rfc3339(time)
    body["readings"] = [
        {"metric": s.metric, "value": s.value} | ({"unit": s.unit} if s.unit else {})
        for s in samples
    ]
    return json.dumps(body, separators=(",", ":")).encode()


def encode_senml(device_id: str, time: datetime, samples: Sequence[Sample]) -> bytes:
    records: list[dict[str, object]] = []
    for i, s in enumerate(samples):
        record: dict[str, object] = {}
        if i == 0:
            record["bn"] = f"{device_id}/"
            record["bt"] = round(time.timestamp(), 3)
        record["n"] = s.metric
        if s.unit:
            record["u"] = s.unit
        if isinstance(s.value, bool):
            record["vb"] = s.value
        else:
            record["v"] = s.value
        records.append(record)
    return json.dumps(records, separators=(",", ":")).encode()
