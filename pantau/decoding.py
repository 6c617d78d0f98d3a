"""Payload decoders: bytes from the wire -> samples with device time, or RejectedInput.

Decoders know the wire forms (pantau/wire.py) and nothing about the catalogue; the
validator (pantau/validation.py) decides what is acceptable. Each decoder registers
under its name. They live in the kernel because every consumer of device topics
(ingest, rules) reads the same payloads.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from pantau.errors import RejectedInput
from pantau.registry import Registry
from pantau.wire import SENML_CONTENT_TYPE

# RFC 8428 4.5.3: times below 2**28 s are relative to "now" (the time of receipt).
SENML_RELATIVE_LIMIT = 2**28
MAX_RECORDS = 1000  # one message; more is a misbehaving device, not a sensor


class RawReading(NamedTuple):
    """One decoded value before catalogue validation.

    A NamedTuple rather than a frozen dataclass: it is built once per reading on the
    hot path, and a frozen dataclass's __init__ costs several times more.
    """

    device_id: str
    metric: str
    value: float
    unit: str | None
    time: datetime
    seq: int | None


Decoder = Callable[[str, bytes, datetime], list[RawReading]]
DECODERS: Registry[Decoder] = Registry("decoder")


def decode(
    device_id: str, payload: bytes, received_at: datetime, content_type: str | None
) -> list[RawReading]:
    """Pick the decoder by MQTT v5 content type, else by the JSON's outer shape."""
    if content_type == SENML_CONTENT_TYPE:
        name = "senml"
    elif content_type in (None, "", "application/json"):
        name = "senml" if payload.lstrip()[:1] == b"[" else "native"
    else:
        raise RejectedInput("invalid_payload", f"unsupported content type {content_type!r}")
    return DECODERS.get(name)(device_id, payload, received_at)


def _parse_json(payload: bytes) -> Any:
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as err:
        raise RejectedInput(
            "malformed_json", f"not UTF-8: {err.reason} at byte {err.start}"
        ) from err
    try:
        return _JSON.decode(text)
    except RecursionError as err:
        raise RejectedInput("malformed_json", "nesting too deep") from err
    except ValueError as err:
        raise RejectedInput("malformed_json", str(err)) from err


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


# NaN / Infinity are not JSON (RFC 8259); Python accepts them unless told not to.
_JSON = json.JSONDecoder(parse_constant=_reject_constant)


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        try:
            number = float(value)
        except OverflowError:  # an int beyond float range
            number = math.inf
        if math.isfinite(number):
            return number
        raise RejectedInput("out_of_range", f"{what} is not a finite number")
    raise RejectedInput("invalid_payload", f"{what} must be a number, got {type(value).__name__}")


def _epoch(seconds: float, what: str) -> datetime:
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError) as err:
        raise RejectedInput(
            "bad_timestamp", f"{what} {seconds!r} is not a representable time"
        ) from err


def _time(value: Any, what: str) -> datetime:
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError as err:
            raise RejectedInput("bad_timestamp", f"{what} {value!r} is not RFC 3339") from err
        if parsed.tzinfo is None:
            raise RejectedInput("bad_timestamp", f"{what} {value!r} has no UTC offset")
        return parsed.astimezone(UTC)
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            seconds = float(value)
        except OverflowError as err:  # a JSON integer beyond any float
            raise RejectedInput("bad_timestamp", f"{what} {value} is out of range") from err
        return _epoch(seconds, what)
    raise RejectedInput("invalid_payload", f"{what} must be an RFC 3339 string or epoch seconds")


def _str(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise RejectedInput("invalid_payload", f"{what} must be a non-empty string")
    return value


@DECODERS.register("native")
def decode_native(device_id: str, payload: bytes, received_at: datetime) -> list[RawReading]:
    body = _parse_json(payload)
    if not isinstance(body, dict):
        raise RejectedInput("invalid_payload", "native payload must be a JSON object")
    unknown = set(body) - {"device", "seq", "time", "readings"}
    if unknown:
        raise RejectedInput("invalid_payload", f"unknown keys {sorted(unknown)}")
    sender = _str(body.get("device"), "device")
    if sender != device_id:
        raise RejectedInput(
            "device_mismatch", f"payload device {sender!r} on topic of {device_id!r}"
        )
    seq = body.get("seq")
    if seq is not None and (
        not isinstance(seq, int) or isinstance(seq, bool) or not 0 <= seq < 2**63
    ):
        raise RejectedInput("invalid_payload", "seq must be a non-negative 64-bit integer")
    if "time" not in body:
        raise RejectedInput("bad_timestamp", "native payload needs a device `time`")
    base_time = _time(body["time"], "time")
    readings = body.get("readings")
    if not isinstance(readings, list) or not readings:
        raise RejectedInput("invalid_payload", "readings must be a non-empty list")
    if len(readings) > MAX_RECORDS:
        raise RejectedInput("invalid_payload", f"more than {MAX_RECORDS} readings in one message")
    out: list[RawReading] = []
    for i, item in enumerate(readings):
        if not isinstance(item, dict):
            raise RejectedInput("invalid_payload", f"readings[{i}] must be an object")
        extra = set(item) - {"metric", "value", "unit", "time"}
        if extra:
            raise RejectedInput("invalid_payload", f"readings[{i}]: unknown keys {sorted(extra)}")
        unit = item.get("unit")
        if unit is not None and not isinstance(unit, str):
            raise RejectedInput("invalid_payload", f"readings[{i}].unit must be a string")
        if "value" not in item:
            raise RejectedInput("invalid_payload", f"readings[{i}] has no value")
        out.append(
            RawReading(
                device_id=device_id,
                metric=_str(item.get("metric"), f"readings[{i}].metric"),
                value=_number(item["value"], f"readings[{i}].value"),
                unit=unit,
                time=_time(item["time"], f"readings[{i}].time") if "time" in item else base_time,
                seq=seq,
            )
        )
    return out


@dataclass(slots=True)
class _SenmlBase:
    """Base fields in force: each base field applies to the records after it (RFC 8428 4.1)."""

    name: str = ""
    time: float = 0.0
    unit: str | None = None
    value: float = 0.0


@DECODERS.register("senml")
def decode_senml(device_id: str, payload: bytes, received_at: datetime) -> list[RawReading]:
    """RFC 8428 JSON: base fields carry forward, names are bn+n, times bt+t (relative < 2**28)."""
    pack = _parse_json(payload)
    if not isinstance(pack, list) or not pack:
        raise RejectedInput("invalid_payload", "SenML pack must be a non-empty JSON array")
    if len(pack) > MAX_RECORDS:
        raise RejectedInput("invalid_payload", f"more than {MAX_RECORDS} records in one pack")
    base = _SenmlBase()
    out: list[RawReading] = []
    for i, record in enumerate(pack):
        if not isinstance(record, dict):
            raise RejectedInput("invalid_payload", f"record {i} must be an object")
        reading = _senml_record(i, record, base, device_id, received_at)
        if reading is not None:
            out.append(reading)
    if not out:
        raise RejectedInput("invalid_payload", "SenML pack carries no values")
    return out


_BASE_KEYS = frozenset({"bn", "bt", "bu", "bv", "bver"})
_VALUE_KEYS = frozenset({"v", "vb", "vs", "vd", "s"})
_KNOWN_KEYS = _BASE_KEYS | _VALUE_KEYS | {"bs", "n", "u", "t", "ut"}


def _senml_record(
    i: int, record: dict[str, Any], base: _SenmlBase, device_id: str, received_at: datetime
) -> RawReading | None:
    keys = record.keys()
    if not keys <= _KNOWN_KEYS:
        # RFC 8428 4.4: an unknown field ending in "_" must be understood -> reject the
        # pack. Other unknown fields may be ignored.
        must_understand = [k for k in keys if k.endswith("_")]
        if must_understand:
            raise RejectedInput(
                "invalid_payload", f"record {i}: unsupported fields {must_understand}"
            )
    if not _BASE_KEYS.isdisjoint(keys):
        _update_base(i, record, base)
    value_keys = keys & _VALUE_KEYS
    if not value_keys:
        if "n" in record:  # a named record must carry a value (RFC 8428 4.3)
            raise RejectedInput("invalid_payload", f"record {i} has a name but no value")
        return None  # a base-only record
    if len(value_keys) > 1:
        raise RejectedInput(
            "invalid_payload", f"record {i} has several values {sorted(value_keys)}"
        )
    name = base.name + (_str(record["n"], f"record {i}.n") if "n" in record else "")
    device, _, metric = name.rpartition("/")
    if not metric:
        raise RejectedInput("invalid_payload", f"record {i} has no name")
    if device and device.removeprefix("urn:dev:") != device_id:
        raise RejectedInput(
            "device_mismatch", f"record {i} names {device!r} on topic of {device_id!r}"
        )
    if "v" in record:
        value = base.value + _number(record["v"], f"record {i}.v")
    elif "vb" in record and isinstance(record["vb"], bool):
        value = 1.0 if record["vb"] else 0.0
    elif "vb" in record:
        raise RejectedInput("invalid_payload", f"record {i}.vb must be a boolean")
    else:
        raise RejectedInput("invalid_payload", f"record {i}: only numeric and boolean values")
    t = base.time + (_number(record["t"], f"record {i}.t") if "t" in record else 0.0)
    if t < SENML_RELATIVE_LIMIT:
        try:  # a large negative relative time leaves datetime's range (found by atheris)
            time = received_at + timedelta(seconds=t)
        except OverflowError as err:
            raise RejectedInput(
                "bad_timestamp", f"record {i} time {t!r} s from now is not a representable time"
            ) from err
    else:
        time = _epoch(t, f"record {i} time")
    unit = _str(record["u"], f"record {i}.u") if "u" in record else base.unit
    return RawReading(device_id, metric, value, unit, time, None)


def _update_base(i: int, record: dict[str, Any], base: _SenmlBase) -> None:
    if "bver" in record and record["bver"] != 10:
        raise RejectedInput("invalid_payload", f"record {i}: unsupported SenML version")
    if "bn" in record:
        base.name = _str(record["bn"], f"record {i}.bn")
    if "bt" in record:
        base.time = _number(record["bt"], f"record {i}.bt")
    if "bu" in record:
        base.unit = _str(record["bu"], f"record {i}.bu")
    if "bv" in record:
        base.value = _number(record["bv"], f"record {i}.bv")
