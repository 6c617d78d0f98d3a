"""Faults: what goes wrong with real devices, and the bad payloads ingest must refuse.

Signal faults change values but keep them inside the catalogue's valid range, so
ingest stores them and the rules have to notice: *stuck* holds the value of the
first report in the window (a flatline), *drift* adds a growing offset, *spike*
adds short jumps. *dropout* silences a device (its sequence number keeps counting,
so ingest sees the gap) and *clock_skew* shifts its timestamps.

Malformed payloads each carry exactly one defect, so the dead-letter reason is
unambiguous whatever order ingest checks in, and each gives one dead letter:

| reason            | variants                                                            |
|-------------------|---------------------------------------------------------------------|
| malformed_json    | truncated JSON; bytes that are not UTF-8; a `NaN` token (JSON has    |
|                   | no NaN: json.dumps writes it, RFC 8259 parsers refuse it)            |
| invalid_payload   | a JSON array of numbers; `readings` not a list; a value that is a    |
|                   | word; a SenML `v` that is a string                                   |
| unknown_device    | topic and payload name a device that is not registered               |
| device_mismatch   | payload (`device` / SenML `bn`) names another registered device      |
| unknown_metric    | a metric not in the catalogue; a catalogue metric of another kind    |
| bad_unit          | a SenML unit the metric does not accept; a unit that is no SenML one |
| out_of_range      | finite values above / below the valid range; `1e999` (parses as inf) |
| bad_timestamp     | time 5 days ahead; 30 days old; native time that is not RFC 3339     |

A NaN or infinite value is therefore `malformed_json` when written as a `NaN` /
`Infinity` token and `out_of_range` when written as a number too large for a
double (`1e999`): the first is not JSON, the second is JSON that is not finite.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from pantau.catalogue import Catalogue
from pantau.topics import Topics
from pantau.wire import (
    NATIVE_CONTENT_TYPE,
    SENML_CONTENT_TYPE,
    Sample,
    encode_native,
    encode_senml,
    rfc3339,
)
from simulators.reasons import Reason

FUTURE_TIME = timedelta(days=5)
PAST_TIME = timedelta(days=30)
_SENTINEL = 1.2345678901234567e-300  # replaced by a literal the encoder cannot write


@dataclass(frozen=True, slots=True)
class BadMessage:
    topic: str
    payload: bytes
    content_type: str
    reason: Reason
    variant: str


@dataclass(frozen=True, slots=True)
class MessageContext:
    """What a device would have sent; a malformed message is built from it."""

    device_id: str
    kind_metrics: tuple[str, ...]
    other_device_id: str  # a registered device, for device_mismatch
    ghost_device_id: str  # not registered, for unknown_device
    seq: int
    time: datetime
    sample: Sample  # a numeric reading of the device's main metric
    senml: bool


def _encode(
    ctx: MessageContext,
    samples: Sequence[Sample],
    *,
    device: str | None = None,
    time: datetime | None = None,
) -> tuple[bytes, str]:
    who = device or ctx.device_id
    when = time or ctx.time
    if ctx.senml:
        return encode_senml(who, when, samples), SENML_CONTENT_TYPE
    return encode_native(who, ctx.seq, when, samples), NATIVE_CONTENT_TYPE


def _with_literal(ctx: MessageContext, literal: bytes) -> tuple[bytes, str]:
    sample = Sample(ctx.sample.metric, _SENTINEL, ctx.sample.unit)
    payload, content_type = _encode(ctx, [sample])
    return payload.replace(repr(_SENTINEL).encode(), literal), content_type


def _native_body(ctx: MessageContext, readings: object) -> bytes:
    body = {
        "device": ctx.device_id,
        "seq": ctx.seq,
        "time": rfc3339(ctx.time),
        "readings": readings,
    }
    return json.dumps(body, separators=(",", ":")).encode()


def malformed(
    reason: Reason, draw: float, ctx: MessageContext, topics: Topics, catalogue: Catalogue
) -> BadMessage:
    """A message with exactly one defect of the given reason; `draw` in [0, 1) picks the
    variant, so the choice is deterministic per device."""
    topic = topics.sensor_up(ctx.device_id)
    s = ctx.sample
    spec = catalogue.metrics[s.metric]
    variants: list[tuple[str, tuple[bytes, str]]]
    if reason is Reason.MALFORMED_JSON:
        full, ct = _encode(ctx, [s])
        variants = [
            ("truncated", (full[: len(full) // 2], ct)),
            ("not_utf8", (b"\xff\xfe" + full[2:], ct)),
            ("nan_token", _with_literal(ctx, b"NaN")),
        ]
    elif reason is Reason.INVALID_PAYLOAD:
        numbers = json.dumps([s.value, 1, 2]).encode()
        variants = [
            (
                "array_of_numbers",
                (numbers, SENML_CONTENT_TYPE if ctx.senml else NATIVE_CONTENT_TYPE),
            ),
        ]
        if ctx.senml:
            variants.append(("senml_string_value", _with_literal(ctx, b'"12.5"')))
        else:
            variants += [
                ("readings_not_list", (_native_body(ctx, "lots"), NATIVE_CONTENT_TYPE)),
                ("value_is_word", _with_literal(ctx, b'"high"')),
            ]
    elif reason is Reason.UNKNOWN_DEVICE:
        topic = topics.sensor_up(ctx.ghost_device_id)
        variants = [("unregistered", _encode(ctx, [s], device=ctx.ghost_device_id))]
    elif reason is Reason.DEVICE_MISMATCH:
        variants = [("other_device", _encode(ctx, [s], device=ctx.other_device_id))]
    elif reason is Reason.UNKNOWN_METRIC:
        foreign = next(m for m in catalogue.metrics if m not in ctx.kind_metrics)
        variants = [
            ("not_in_catalogue", _encode(ctx, [Sample("humidity", 71.5, "%RH")])),
            ("other_kind", _encode(ctx, [Sample(foreign, s.value, None)])),
        ]
    elif reason is Reason.BAD_UNIT:
        variants = [
            ("unaccepted_unit", _encode(ctx, [Sample(s.metric, s.value, "Cel")])),
            ("not_a_unit", _encode(ctx, [Sample(s.metric, s.value, "furlong")])),
        ]
    elif reason is Reason.OUT_OF_RANGE:
        high = spec.valid_max + max(10.0, abs(spec.valid_max))
        low = spec.valid_min - max(10.0, abs(spec.valid_min))
        variants = [
            ("above", _encode(ctx, [Sample(s.metric, high, spec.unit)])),
            ("below", _encode(ctx, [Sample(s.metric, low, spec.unit)])),
            ("overflow", _with_literal(ctx, b"1e999")),
        ]
    else:
        variants = [
            ("future", _encode(ctx, [s], time=ctx.time + FUTURE_TIME)),
            ("ancient", _encode(ctx, [s], time=ctx.time - PAST_TIME)),
        ]
        if not ctx.senml:
            body = json.loads(_native_body(ctx, [{"metric": s.metric, "value": s.value}]))
            body["time"] = ctx.time.strftime("%d/%m/%Y %H:%M:%S")
            variants.append(
                (
                    "not_rfc3339",
                    (json.dumps(body, separators=(",", ":")).encode(), NATIVE_CONTENT_TYPE),
                )
            )
    name, (payload, content_type) = variants[min(int(draw * len(variants)), len(variants) - 1)]
    return BadMessage(topic, payload, content_type, reason, name)
