"""The native JSON message as typed msgspec records, for the fast paths of ingest
(ingest.fastpath: to line protocol) and rules (rules.fastread: to Readings).

Both take only the common, fully valid message and leave everything else to the
general path (pantau.device_messages), which words every rejection; so both need the
same shape and the same envelope checks, kept here once.
"""

from __future__ import annotations

import msgspec
from msgspec import UNSET, UnsetType

from pantau.decoding import MAX_RECORDS

SEQ_LIMIT = 2**63  # as pantau.decoding.decode_native: a non-negative int64


class Unfit(Exception):
    """Not for a fast path: the general one decides."""


class NativeReading(msgspec.Struct, forbid_unknown_fields=True):
    metric: str
    value: float | bool
    unit: str | None = None
    time: str | float | UnsetType = UNSET  # present but null is an error, as in decoding


class NativeBody(msgspec.Struct, forbid_unknown_fields=True):
    device: str
    time: str | float
    readings: list[NativeReading]
    seq: int | None = None


_NATIVE = msgspec.json.Decoder(NativeBody)


def native_body(payload: bytes, device_id: str) -> NativeBody:
    """The message of `device_id`, decoded; raises msgspec.DecodeError when it is not a
    well-formed native object and Unfit when its envelope is not the common case
    (another device's id, no readings or too many, a seq out of range)."""
    body = _NATIVE.decode(payload)
    seq, items = body.seq, body.readings
    if (
        body.device != device_id
        or not items
        or len(items) > MAX_RECORDS
        or (seq is not None and not 0 <= seq < SEQ_LIMIT)
    ):
        raise Unfit
    return body
