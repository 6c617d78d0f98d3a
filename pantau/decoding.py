"""Payload decoders: bytes from the wire -> samples with device time, or RejectedInput.

Decoders know the wire forms (pantau/wire.py) and nothing about the catalogue; the
validator (pantau/validation.py) decides what is acceptable. Each decoder registers
under its name. They live in the kernel because every consumer of device topics
(ingest, rules) reads the same payloads.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple, Protocol

from pantau import senml
from pantau.errors import RejectedInput
from pantau.registry import Registry
from pantau.senml import NO_NAMES, SenmlNames
from pantau.wire import SENML_CBOR_CONTENT_TYPE, SENML_CONTENT_TYPE

SENML_RELATIVE_LIMIT = senml.RELATIVE_LIMIT
MAX_RECORDS = senml.MAX_RECORDS


class RawReading(NamedTuple):
    """One decoded value before catalogue validation.

    A NamedTuple rather than a frozen dataclass: it is built once per reading on the
    hot path, and a frozen dataclass's __init__ costs several times more.
    """

    device_id: str
    metric: str
    value: float | str  # a string (SenML vs) is a state the catalogue may map to a number
    unit: str | None
    time: datetime
    seq: int | None
    record: int | None = None  # the SenML record it came from, for the reason of a rejection
    is_sum: bool = False  # a SenML sum (s): the value's integral over time (RFC 8428 4.2)


class Decoder(Protocol):
    def __call__(
        self, device_id: str, payload: bytes, received_at: datetime, names: SenmlNames = ...
    ) -> list[RawReading | RejectedInput]: ...


DECODERS: Registry[Decoder] = Registry("decoder")
_BY_CONTENT_TYPE = {SENML_CONTENT_TYPE: "senml", SENML_CBOR_CONTENT_TYPE: "senml_cbor"}


def decode(
    device_id: str,
    payload: bytes,
    received_at: datetime,
    content_type: str | None,
    names: SenmlNames = NO_NAMES,
) -> list[RawReading | RejectedInput]:
    """Pick the decoder by content type, else by the payload's first byte (MQTT 3.1.1
    has no content type): a CBOR array (0x80-0x9f, never the first byte of UTF-8 JSON)
    is SenML CBOR, a JSON array SenML JSON, anything else native JSON. A rejection in
    the list refuses one record; a message that cannot be decoded raises RejectedInput."""
    name = _BY_CONTENT_TYPE.get(content_type or "")
    if name is None:
        if content_type not in (None, "", "application/json"):
            raise RejectedInput("invalid_payload", f"unsupported content type {content_type!r}")
        if not content_type and payload[:1] and 0x80 <= payload[0] <= 0x9F:
            name = "senml_cbor"
        else:
            name = "senml" if payload.lstrip()[:1] == b"[" else "native"
    return DECODERS.get(name)(device_id, payload, received_at, names)


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


def epoch_time(seconds: float, what: str) -> datetime:
    """Epoch seconds -> UTC time; RejectedInput (bad_timestamp) outside datetime's range."""
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError) as err:
        raise RejectedInput(
            "bad_timestamp", f"{what} {seconds!r} is not a representable time"
        ) from err


def device_time(value: Any, what: str) -> datetime:
    """A device time as sent (RFC 3339 with offset, or epoch seconds) -> UTC; else
    RejectedInput."""
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
        return epoch_time(seconds, what)
    raise RejectedInput("invalid_payload", f"{what} must be an RFC 3339 string or epoch seconds")


def _str(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise RejectedInput("invalid_payload", f"{what} must be a non-empty string")
    return value


@DECODERS.register("native")
def decode_native(
    device_id: str, payload: bytes, received_at: datetime, names: SenmlNames = NO_NAMES
) -> list[RawReading | RejectedInput]:
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
    base_time = device_time(body["time"], "time")
    readings = body.get("readings")
    if not isinstance(readings, list) or not readings:
        raise RejectedInput("invalid_payload", "readings must be a non-empty list")
    if len(readings) > MAX_RECORDS:
        raise RejectedInput("invalid_payload", f"more than {MAX_RECORDS} readings in one message")
    out: list[RawReading | RejectedInput] = []
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
                time=(
                    device_time(item["time"], f"readings[{i}].time")
                    if "time" in item
                    else base_time
                ),
                seq=seq,
            )
        )
    return out


@DECODERS.register("senml")
def decode_senml(
    device_id: str, payload: bytes, received_at: datetime, names: SenmlNames = NO_NAMES
) -> list[RawReading | RejectedInput]:
    """RFC 8428 JSON, record by record (pantau.senml)."""
    return _senml_readings(device_id, senml.resolve(_parse_json(payload)), received_at, names)


@DECODERS.register("senml_cbor")
def decode_senml_cbor(
    device_id: str, payload: bytes, received_at: datetime, names: SenmlNames = NO_NAMES
) -> list[RawReading | RejectedInput]:
    """RFC 8428 section 6 CBOR: the same records with integer labels."""
    return _senml_readings(device_id, senml.resolve(senml.load_cbor(payload)), received_at, names)


def _senml_readings(
    device_id: str,
    records: list[senml.Record | RejectedInput],
    received_at: datetime,
    names: SenmlNames,
) -> list[RawReading | RejectedInput]:
    out: list[RawReading | RejectedInput] = []
    for record in records:
        if isinstance(record, RejectedInput):
            out.append(record)
            continue
        try:
            out.extend(_senml_record(device_id, record, received_at, names))
        except RejectedInput as err:
            out.append(err)
    return out


def _senml_record(
    device_id: str, r: senml.Record, received_at: datetime, names: SenmlNames
) -> list[RawReading]:
    i = r.at
    metric = names.metric(device_id, r.name, i)
    if r.kind == "vd":  # opaque bytes: no catalogue metric is a blob
        raise RejectedInput("unsupported_value", f"record {i}: data values (vd) carry no reading")
    if r.time < SENML_RELATIVE_LIMIT:
        try:  # a large negative relative time leaves datetime's range (found by atheris)
            time = received_at + timedelta(seconds=r.time)
        except OverflowError as err:
            raise RejectedInput(
                "bad_timestamp",
                f"record {i} time {r.time!r} s from now is not a representable time",
            ) from err
    else:
        time = epoch_time(r.time, f"record {i} time")
    out = []
    if r.kind is not None:
        value = r.value
        # strings are judged by the validator (catalogue states); booleans are 1 / 0
        number: float | str = float(value) if isinstance(value, bool | float) else str(value)
        out.append(RawReading(device_id, metric, number, r.unit, time, None, i))
    if r.sum is not None:
        out.append(RawReading(device_id, metric, r.sum, r.unit, time, None, i, True))
    return out
