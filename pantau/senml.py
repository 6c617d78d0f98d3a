"""SenML (RFC 8428): a pack -> its resolved records (section 4.6), from JSON or CBOR (section 6),
and SenML names -> a registry device's metrics.

Pack-level faults refuse the whole pack: not an array, a version newer than the one
understood (4.4), a must-understand field (`..._`, 4.4), a malformed base field (every
later record would inherit it). Anything else is judged record by record, so one bad
record costs only itself (its index is in the reason).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any, NamedTuple

import cbor2

from pantau.errors import RejectedInput

VERSION = 10  # the version RFC 8428 defines; older ones are read, newer ones refused (4.4)
RELATIVE_LIMIT = 2**28  # 4.5.3: times below are relative to "now" (the time of receipt)
MAX_RECORDS = 1000  # one message; more is a misbehaving device, not a sensor
# 4.5.1: what a concatenated name may consist of
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9\-:./_]*$")

# Section 6, Table 4: CBOR packs use integer labels.
CBOR_LABELS = {
    -1: "bver",
    -2: "bn",
    -3: "bt",
    -4: "bu",
    -5: "bv",
    -6: "bs",
    0: "n",
    1: "u",
    2: "v",
    3: "vs",
    4: "vb",
    5: "s",
    6: "t",
    7: "ut",
    8: "vd",
}
_BASE = frozenset({"bn", "bt", "bu", "bv", "bs", "bver"})
VALUE_KINDS = ("v", "vb", "vs", "vd")


class Record(NamedTuple):
    """A resolved record: base fields applied, `time` still as sent (bt + t)."""

    at: int  # position in the pack
    name: str
    unit: str | None
    kind: str | None  # which value field: v, vb, vs or vd; None for a sum-only record
    value: float | bool | str | bytes | None
    sum: float | None
    time: float
    update_time: float | None
    version: int


@dataclass(slots=True)
class _Base:
    name: str = ""
    time: float = 0.0
    unit: str | None = None
    value: float = 0.0
    sum: float | None = None
    version: int | None = None


def _number(value: Any, what: str) -> float:
    # bool is an int in Python but not a Number in SenML; Decimal/Fraction come from CBOR tags
    if isinstance(value, int | float | Decimal | Fraction) and not isinstance(value, bool):
        try:
            number = float(value)
        except (OverflowError, ValueError):  # an int beyond float range
            number = math.inf
        if math.isfinite(number):
            return number
        raise RejectedInput("out_of_range", f"{what} is not a finite number")
    raise RejectedInput("invalid_payload", f"{what} must be a number, got {type(value).__name__}")


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise RejectedInput("invalid_payload", f"{what} must be a string")
    return value


def load_cbor(payload: bytes) -> list[dict[str, Any]]:
    """An application/senml+cbor pack with its integer labels turned into JSON labels."""
    try:
        pack = cbor2.loads(payload)
    except (cbor2.CBORDecodeError, ValueError, TypeError, RecursionError, OverflowError) as err:
        raise RejectedInput("malformed_cbor", str(err)[:200] or type(err).__name__) from err
    if not isinstance(pack, list):
        raise RejectedInput("invalid_payload", "SenML pack must be a CBOR array")
    return [{_label(k): v for k, v in r.items()} if isinstance(r, dict) else r for r in pack]


def _label(key: Any) -> Any:
    return CBOR_LABELS.get(key, key) if isinstance(key, int) else key


def resolve(pack: Any) -> list[Record | RejectedInput]:
    """Each record of `pack` resolved (4.6), or why not; raises RejectedInput for the pack."""
    if not isinstance(pack, list) or not pack:
        raise RejectedInput("invalid_payload", "SenML pack must be a non-empty array")
    if len(pack) > MAX_RECORDS:
        raise RejectedInput("invalid_payload", f"more than {MAX_RECORDS} records in one pack")
    if not any(isinstance(record, dict) for record in pack):  # e.g. [12.5, 1, 2]: no pack
        raise RejectedInput("invalid_payload", "a SenML pack is an array of records (objects)")
    base = _Base()
    out: list[Record | RejectedInput] = []
    for i, record in enumerate(pack):
        if not isinstance(record, dict):
            out.append(RejectedInput("invalid_payload", f"record {i} must be an object"))
            continue
        must_understand = sorted(str(k) for k in record if str(k).endswith("_"))
        if must_understand:  # 4.4: "an error MUST be generated"
            raise RejectedInput(
                "invalid_payload", f"record {i}: unsupported fields {must_understand}"
            )
        if not _BASE.isdisjoint(record):
            _update_base(i, record, base)
        try:
            resolved = _resolve_record(i, record, base)
        except RejectedInput as err:
            out.append(err)
            continue
        if resolved is not None:
            out.append(resolved)
    if not out:
        raise RejectedInput("invalid_payload", "SenML pack carries no values")
    return out


def _update_base(i: int, record: dict[Any, Any], base: _Base) -> None:
    if "bver" in record:
        version = record["bver"]
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise RejectedInput("invalid_payload", f"record {i}: bver must be a positive integer")
        if version > VERSION:
            raise RejectedInput(
                "unsupported_version",
                f"record {i}: SenML version {version} is newer than {VERSION}, the one understood",
            )
        if base.version is not None and version != base.version:
            raise RejectedInput(
                "invalid_payload",
                f"record {i}: version {version} after {base.version} (one version per pack)",
            )
        base.version = version
    if "bn" in record:
        base.name = _text(record["bn"], f"record {i}.bn")
    if "bt" in record:
        base.time = _number(record["bt"], f"record {i}.bt")
    if "bu" in record:
        base.unit = _text(record["bu"], f"record {i}.bu")
    if "bv" in record:
        base.value = _number(record["bv"], f"record {i}.bv")
    if "bs" in record:
        base.sum = _number(record["bs"], f"record {i}.bs")


def _resolve_record(i: int, record: dict[Any, Any], base: _Base) -> Record | None:
    kinds = [k for k in VALUE_KINDS if k in record]
    has_sum = "s" in record
    if len(kinds) > 1:
        raise RejectedInput("invalid_payload", f"record {i} has several values {kinds}")
    if not kinds and not has_sum:
        if "n" in record or "t" in record or "u" in record:  # 4.2: a value is required
            raise RejectedInput("invalid_payload", f"record {i} has no value")
        return None  # a base-only record
    name = base.name + (_text(record["n"], f"record {i}.n") if "n" in record else "")
    if not name:
        raise RejectedInput("invalid_payload", f"record {i} has no name")
    if not NAME_PATTERN.match(name):
        raise RejectedInput(
            "invalid_payload", f"record {i}: name {name[:80]!r} has characters 4.5.1 forbids"
        )
    kind = kinds[0] if kinds else None
    value: float | bool | str | bytes | None = None
    if kind == "v":
        value = base.value + _number(record["v"], f"record {i}.v")
    elif kind == "vb":
        if not isinstance(record["vb"], bool):
            raise RejectedInput("invalid_payload", f"record {i}.vb must be a boolean")
        value = record["vb"]
    elif kind == "vs":
        value = _text(record["vs"], f"record {i}.vs")
    elif kind == "vd":
        value = record["vd"]  # base64url text in JSON, bytes in CBOR
        if not isinstance(value, str | bytes):
            raise RejectedInput("invalid_payload", f"record {i}.vd must be data")
    total = None
    if has_sum or base.sum is not None:
        total = (base.sum or 0.0) + (_number(record["s"], f"record {i}.s") if has_sum else 0.0)
    unit = _text(record["u"], f"record {i}.u") if "u" in record else base.unit
    time = base.time + (_number(record["t"], f"record {i}.t") if "t" in record else 0.0)
    update = _number(record["ut"], f"record {i}.ut") if "ut" in record else None
    version = VERSION if base.version is None else base.version
    return Record(i, name, unit, kind, value, total, time, update, version)


def resolved_form(pack: Any, received_at: datetime) -> list[dict[str, Any]]:
    """The pack as section 4.6 writes resolved records: no base fields, absolute times (relative
    ones counted from `received_at`), `bver` only when not 10, in chronological order.
    Raises the first rejection: for well-formed packs (the RFC's examples, tools)."""
    now = received_at.timestamp()
    out: list[tuple[float, dict[str, Any]]] = []
    for r in resolve(pack):
        if isinstance(r, RejectedInput):
            raise r
        t = r.time + now if r.time < RELATIVE_LIMIT else r.time
        rec: dict[str, Any] = {"n": r.name}
        if r.unit is not None:
            rec["u"] = r.unit
        if r.kind is not None:
            rec[r.kind] = r.value
        if r.sum is not None:
            rec["s"] = r.sum
        rec["t"] = t
        if r.update_time is not None:
            rec["ut"] = r.update_time
        if r.version != VERSION:
            rec["bver"] = r.version
        out.append((t, rec))
    out.sort(key=lambda pair: pair[0])  # stable: records of one time keep their order
    return [rec for _, rec in out]


@dataclass(frozen=True, slots=True)
class SenmlNames:
    """SenML names -> a registry device's metrics.

    A device answers to `{id}/`, `urn:dev:{id}/` and its `senml_name` (e.g. the RFC's
    `urn:dev:ow:10e2073a01080063:`) as base names, a bare metric name, and its
    `senml_aliases` (a name after the base, or a full name, -> a catalogue metric).
    """

    base_names: Mapping[str, tuple[str, ...]]  # device id -> its base names
    aliases: Mapping[str, Mapping[str, str]]  # device id -> SenML name -> metric

    @staticmethod
    def of(devices: Mapping[str, tuple[str | None, Mapping[str, str]]]) -> SenmlNames:
        """From device id -> (senml_name, aliases)."""
        return SenmlNames(
            {
                d: (f"{d}/", f"urn:dev:{d}/", *((name,) if name else ()))
                for d, (name, _) in devices.items()
            },
            {d: dict(aliases) for d, (_, aliases) in devices.items()},
        )

    def metric(self, device_id: str, name: str, index: int) -> str:
        aliases = self.aliases.get(device_id, {})
        if name in aliases:
            return aliases[name]
        bases = self.base_names.get(device_id, (f"{device_id}/", f"urn:dev:{device_id}/"))
        if name in bases:
            raise RejectedInput("invalid_payload", f"record {index} names the device, no metric")
        for base in bases:
            if name.startswith(base):
                rest = name[len(base) :]
                return aliases.get(rest, rest)
        if "/" not in name and ":" not in name:
            return aliases.get(name, name)  # a bare metric name: the topic names the device
        raise RejectedInput(
            "device_mismatch", f"record {index}: SenML name {name!r} is not one of {device_id!r}"
        )


NO_NAMES = SenmlNames({}, {})
