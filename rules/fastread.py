"""The common device message, straight to Readings: a well-formed native JSON object
whose every reading is accepted.

The general path (pantau.device_messages: topic parse, stdlib JSON to dicts, RawReading,
Validator, Reading) was a third of the rules worker's time per message (py-spy,
2026-12-06). Here the topic is looked up among the registered devices' own topics,
msgspec decodes the payload straight into typed records (wrong types, unknown fields,
explicit nulls and malformed JSON fail the decode) and one loop applies the checks the
general path applies: non-empty metric of the device's kind, accepted unit, valid
range, device-time window. Anything it does not take whole (any error, SenML, CBOR, a
content type other than JSON) returns None and the message goes the general way, which
finds the same readings or says exactly why not: every rejection comes from there.
ingest.fastpath does the same for line protocol; `tests/unit/test_rules_fastread.py`
holds this one to the general path's readings.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import msgspec
from msgspec import UNSET

from pantau.catalogue import MetricSpec
from pantau.city import City
from pantau.decoding import device_time
from pantau.native_fast import Unfit, native_body
from pantau.readings import Reading
from pantau.settings import IngestSettings
from pantau.topics import Topics
from pantau.wire import NATIVE_CONTENT_TYPE


class FastReadings:
    """A device's native JSON message -> (device id, its readings), else None."""

    def __init__(self, city: City, topics: Topics, settings: IngestSettings) -> None:
        self._max_bytes = settings.max_payload_bytes
        self._skew = timedelta(seconds=settings.max_future_skew_s)
        self._max_age = timedelta(seconds=settings.max_age_s)
        metrics, kinds = city.catalogue.metrics, city.catalogue.kinds
        # topic -> (device id, metric -> its catalogue spec), for registered devices only
        self._topics: dict[str, tuple[str, dict[str, MetricSpec]]] = {
            topics.sensor_up(device_id): (
                device_id,
                {m: metrics[m] for m in kinds[device.kind].metrics},
            )
            for device_id, device in city.devices.items()
            if device.kind in kinds
        }

    def read(
        self, topic: str, payload: bytes, content_type: str | None, received_at: datetime
    ) -> tuple[str, list[Reading]] | None:
        device = self._topics.get(topic)
        if device is None or len(payload) > self._max_bytes:
            return None
        if content_type not in (None, "", NATIVE_CONTENT_TYPE):
            return None
        if payload.lstrip()[:1] != b"{":
            return None  # SenML, CBOR or not JSON: the general path
        try:
            return device[0], self._native(device, payload, received_at)
        except (msgspec.DecodeError, Unfit, OverflowError, ValueError):
            return None

    def _native(
        self, device: tuple[str, dict[str, MetricSpec]], payload: bytes, received_at: datetime
    ) -> list[Reading]:
        device_id, specs = device
        body = native_body(payload, device_id)
        seq, items = body.seq, body.readings
        base_time = _time(body.time)
        newest, oldest = received_at + self._skew, received_at - self._max_age
        out = []
        for item in items:
            spec = specs.get(item.metric)
            if spec is None:
                raise Unfit  # also an empty metric: no catalogue name is empty
            raw = item.value
            factor = spec.factors.get(spec.unit if item.unit is None else item.unit)
            if factor is None:
                raise Unfit
            value = ((1.0 if raw else 0.0) if isinstance(raw, bool) else raw) * factor
            if not spec.valid_min <= value <= spec.valid_max:
                raise Unfit  # also a NaN or an infinity: no comparison holds
            when = base_time if item.time is UNSET else _time(item.time)
            if when > newest or when < oldest:
                raise Unfit
            out.append(
                Reading(
                    device_id=device_id,
                    metric=spec.name,
                    value=value,
                    unit=spec.unit,
                    time=when,
                    seq=seq,
                )
            )
        return out


def _time(value: str | float) -> datetime:
    try:
        return device_time(value, "time")
    except Exception as err:  # RejectedInput: the general path words it
        raise Unfit from err
