"""The common message, straight to line protocol: a well-formed native JSON object or
SenML JSON pack whose every reading is accepted.

The general path (pantau.device_messages: decode -> RawReading -> Validator -> Reading ->
line) builds four objects and re-checks the device per reading, and the stdlib JSON
decoder hands it dicts to pick apart. Here msgspec decodes the payload straight into
typed records (wrong types, unknown or must-understand fields, explicit nulls fail the
decode), and one loop applies the same checks the general path applies: name, catalogue
metric of the device's kind, unit, valid range, device-time window. Anything this path
does not take whole (an error of any kind, a SenML sum, a string or data value, a
version, a CBOR pack) returns None and the message goes the general way, which then
finds the same readings or says exactly why not: every rejection and its reason comes
from there. `tests/unit/test_ingest_fastpath.py` holds the two paths to the same lines.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import msgspec
from msgspec import UNSET, UnsetType

from pantau.catalogue import MetricSpec
from pantau.city import City
from pantau.decoding import MAX_RECORDS, SENML_RELATIVE_LIMIT, device_time, epoch_time
from pantau.errors import RejectedInput
from pantau.influx.lineprotocol import EPOCH, MILLISECOND, series_key
from pantau.native_fast import Unfit, native_body
from pantau.senml import NAME_PATTERN, SenmlNames
from pantau.settings import IngestSettings
from pantau.wire import NATIVE_CONTENT_TYPE, SENML_CONTENT_TYPE

_MEASUREMENT_ESCAPES = str.maketrans({",": r"\,", " ": r"\ "})


class SenmlRecord(msgspec.Struct, forbid_unknown_fields=True):
    """The fields of a plain numeric or boolean record; any other field (bver, bs, s,
    vs, vd, ut, extensions, `..._`) fails the decode and sends the pack the general way."""

    bn: str | UnsetType = UNSET
    bt: float | UnsetType = UNSET
    bu: str | UnsetType = UNSET
    bv: float | UnsetType = UNSET
    n: str | UnsetType = UNSET
    u: str | UnsetType = UNSET
    v: float | UnsetType = UNSET
    vb: bool | UnsetType = UNSET
    t: float | UnsetType = UNSET


_SENML = msgspec.json.Decoder(list[SenmlRecord])


Target = tuple[str, MetricSpec]  # escaped measurement, catalogue spec


class FastLines:
    """Accepted messages -> (lines, newest device time in epoch seconds), else None."""

    def __init__(self, city: City, names: SenmlNames, settings: IngestSettings) -> None:
        self._names = names
        self._max_bytes = settings.max_payload_bytes
        self._skew = timedelta(seconds=settings.max_future_skew_s)
        self._max_age = timedelta(seconds=settings.max_age_s)
        metrics = city.catalogue.metrics
        kinds = city.catalogue.kinds
        # device -> (its tags, metric -> what a reading of it becomes)
        self._devices: dict[str, tuple[str, dict[str, Target]]] = {
            device_id: (
                series_key(device),
                {
                    m: (metrics[m].name.translate(_MEASUREMENT_ESCAPES), metrics[m])
                    for m in kinds[device.kind].metrics
                },
            )
            for device_id, device in city.devices.items()
        }
        # device -> SenML name -> target, for names already resolved (only accepted ones
        # are kept, so the cache is bounded by the registry, not by what devices send)
        self._senml_names: dict[str, dict[str, Target]] = {}

    def lines(
        self, device_id: str, payload: bytes, content_type: str | None, received_at: datetime
    ) -> tuple[list[str], float] | None:
        device = self._devices.get(device_id)
        if device is None or len(payload) > self._max_bytes:
            return None
        if content_type == SENML_CONTENT_TYPE:
            read: Callable[..., tuple[list[str], float]] = self._senml
        elif content_type in (None, "", NATIVE_CONTENT_TYPE):
            first = payload.lstrip()[:1]
            if first == b"{":
                read = self._native
            elif first == b"[":
                read = self._senml
            else:
                return None  # CBOR, or not JSON at all
        else:
            return None
        try:
            return read(device_id, device, payload, received_at)
        except (msgspec.DecodeError, Unfit, RejectedInput, OverflowError, ValueError):
            return None

    def _native(
        self,
        device_id: str,
        device: tuple[str, dict[str, Target]],
        payload: bytes,
        received_at: datetime,
    ) -> tuple[list[str], float]:
        body = native_body(payload, device_id)
        seq = body.seq
        readings = body.readings
        tags, targets = device
        base_time = device_time(body.time, "time")
        window = (received_at + self._skew, received_at - self._max_age)  # newest, oldest
        seq_field = f",seq={seq}i" if seq is not None else ""
        lines = []
        newest = None
        for item in readings:
            target = targets.get(item.metric)
            if target is None:
                raise Unfit
            measurement, spec = target
            raw = item.value
            value = (1.0 if raw else 0.0) if isinstance(raw, bool) else raw
            when = base_time if item.time is UNSET else device_time(item.time, "time")
            self._check(spec, value, item.unit, when, window)
            factor = spec.factors[spec.unit if item.unit is None else item.unit]
            millis = (when - EPOCH) // MILLISECOND
            lines.append(f"{measurement}{tags} value={value * factor!r}{seq_field} {millis}")
            if newest is None or when > newest:
                newest = when
        assert newest is not None
        return lines, newest.timestamp()

    def _senml(
        self,
        device_id: str,
        device: tuple[str, dict[str, Target]],
        payload: bytes,
        received_at: datetime,
    ) -> tuple[list[str], float]:
        records = _SENML.decode(payload)
        if not records or len(records) > MAX_RECORDS:
            raise Unfit
        tags, targets = device
        known = self._senml_names.setdefault(device_id, {})
        window = (received_at + self._skew, received_at - self._max_age)  # newest, oldest
        base_name, base_time, base_unit, base_value = "", 0.0, None, 0.0
        lines = []
        newest = None
        for i, r in enumerate(records):
            if r.bn is not UNSET:
                base_name = r.bn
            if r.bt is not UNSET:
                base_time = r.bt
            if r.bu is not UNSET:
                base_unit = r.bu
            if r.bv is not UNSET:
                base_value = r.bv
            v, vb = r.v, r.vb
            if isinstance(vb, bool):
                if v is not UNSET:
                    raise Unfit  # two values
                value = 1.0 if vb else 0.0
            elif isinstance(v, float):
                value = base_value + v
            else:
                if r.n is not UNSET or r.t is not UNSET or r.u is not UNSET:
                    raise Unfit  # a value is required (RFC 8428 4.2)
                continue  # a base-only record
            name = base_name if r.n is UNSET else base_name + r.n
            target = known.get(name) or self._resolve(device_id, targets, known, name, i)
            measurement, spec = target
            unit = base_unit if r.u is UNSET else r.u
            t = base_time if r.t is UNSET else base_time + r.t
            if t < SENML_RELATIVE_LIMIT:
                when = received_at + timedelta(seconds=t)
            else:
                when = epoch_time(t, "time")
            self._check(spec, value, unit, when, window)
            factor = spec.factors[spec.unit if unit is None else unit]
            millis = (when - EPOCH) // MILLISECOND
            lines.append(f"{measurement}{tags} value={value * factor!r} {millis}")
            if newest is None or when > newest:
                newest = when
        if newest is None:
            raise Unfit  # no values: the general path says so
        return lines, newest.timestamp()

    def _resolve(
        self,
        device_id: str,
        targets: dict[str, Target],
        known: dict[str, Target],
        name: str,
        i: int,
    ) -> Target:
        """A SenML name not seen before: checked as pantau.senml checks it, then cached."""
        if not name or not NAME_PATTERN.match(name):
            raise Unfit
        target = targets.get(self._names.metric(device_id, name, i))
        if target is None:
            raise Unfit
        known[name] = target
        return target

    @staticmethod
    def _check(
        spec: MetricSpec,
        value: float,
        unit: str | None,
        when: datetime,
        window: tuple[datetime, datetime],
    ) -> None:
        """pantau.validation's checks of a numeric reading, as a yes or no."""
        factor = spec.factors.get(spec.unit if unit is None else unit)
        if factor is None or not spec.valid_min <= value * factor <= spec.valid_max:
            raise Unfit  # also a NaN or infinity: no comparison holds
        if when > window[0] or when < window[1]:
            raise Unfit
