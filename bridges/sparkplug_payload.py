"""Sparkplug B on the wire: topics, the protobuf payload (eclipse/tahu's
sparkplug_b.proto, compiled to pantau/sparkplug_b_pb2.py) and metric values.

Topic namespace: `spBv1.0/{group}/{message type}/{edge node}[/{device}]`. Each metric
of a BIRTH carries its name, an alias (a number the later DATA messages use instead of
the name) and its datatype; a DATA metric may carry only the alias and the value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

from google.protobuf.message import DecodeError

from pantau.errors import RejectedInput
from pantau.sparkplug_b_pb2 import Payload

NAMESPACE = "spBv1.0"
MESSAGE_TYPES = ("NBIRTH", "NDEATH", "NDATA", "DBIRTH", "DDEATH", "DDATA")
REBIRTH = "Node Control/Rebirth"
BD_SEQ = "bdSeq"

# Sparkplug B datatypes (the .proto lists them in a comment).
INT8, INT16, INT32, INT64 = 1, 2, 3, 4
UINT8, UINT16, UINT32, UINT64 = 5, 6, 7, 8
FLOAT, DOUBLE, BOOLEAN, STRING, DATETIME, TEXT = 9, 10, 11, 12, 13, 14
_SIGNED_BITS = {INT8: 8, INT16: 16, INT32: 32, INT64: 64}


@dataclass(frozen=True, slots=True)
class SparkplugTopic:
    group: str
    kind: str  # NBIRTH, DDATA, ...
    node: str
    device: str | None

    @property
    def node_key(self) -> tuple[str, str]:
        return self.group, self.node


def filters(groups: list[str]) -> list[str]:
    return [
        f"{NAMESPACE}/{g}/{kind}/+" + ("/+" if kind.startswith("D") else "")
        for g in groups
        for kind in MESSAGE_TYPES
    ]


def parse_topic(topic: str) -> SparkplugTopic:
    parts = topic.split("/")
    if len(parts) not in (4, 5) or parts[0] != NAMESPACE or parts[2] not in MESSAGE_TYPES:
        raise RejectedInput("unexpected_topic", f"{topic[:120]!r} is no Sparkplug B topic")
    device = parts[4] if len(parts) == 5 else None
    if (device is None) == parts[2].startswith("D"):
        raise RejectedInput("unexpected_topic", f"{parts[2]} on {topic[:120]!r}")
    return SparkplugTopic(parts[1], parts[2], parts[3], device)


def decode(payload: bytes) -> Payload:
    message = Payload()
    try:
        message.ParseFromString(payload)
    except (DecodeError, RecursionError) as err:
        raise RejectedInput("malformed_protobuf", f"not a Sparkplug B payload: {err}") from err
    return message


def value_of(metric: Payload.Metric, datatype: int | None) -> float | bool | str | None:
    """The metric's value as a reading value; None for a null. `datatype` from the
    birth when the DATA metric does not repeat it."""
    if metric.is_null:
        return None
    kind = metric.datatype if metric.HasField("datatype") else datatype
    field = metric.WhichOneof("value")
    if field in {"int_value", "long_value"}:
        raw = metric.int_value if field == "int_value" else metric.long_value
        bits = _SIGNED_BITS.get(kind or 0)
        if bits is not None and raw >= 1 << (bits - 1):
            raw -= 1 << bits  # two's complement in an unsigned field
        if kind == DATETIME:
            raise RejectedInput("unsupported_value", "a DateTime metric is no reading")
        return float(raw)
    if field in {"float_value", "double_value"}:
        number = metric.float_value if field == "float_value" else metric.double_value
        if not math.isfinite(number):
            raise RejectedInput("out_of_range", "not a finite number")
        return number
    if field == "boolean_value":
        return metric.boolean_value
    if field == "string_value":
        return metric.string_value
    if field is None:
        raise RejectedInput("invalid_payload", "the metric has no value and is not null")
    raise RejectedInput("unsupported_value", f"a {field.removesuffix('_value')} is no reading")


def when(metric: Payload.Metric | Payload, payload: Payload, received_at: datetime) -> datetime:
    """The metric's own timestamp (ms), else the payload's, else the time of receipt."""
    for holder in (metric, payload):
        if holder.HasField("timestamp"):
            try:
                return datetime.fromtimestamp(holder.timestamp / 1000, UTC)
            except (OverflowError, OSError, ValueError) as err:
                raise RejectedInput(
                    "bad_timestamp", f"timestamp {holder.timestamp} ms is not a time"
                ) from err
    return received_at


def rebirth_request(now: datetime) -> bytes:
    """NCMD `Node Control/Rebirth` = true: the edge node publishes its births again."""
    command = Payload(timestamp=int(now.timestamp() * 1000))
    command.metrics.add(name=REBIRTH, datatype=BOOLEAN, boolean_value=True)
    return command.SerializeToString()
