"""Validation of decoded readings against the device registry and the metric catalogue."""

from __future__ import annotations

from datetime import datetime, timedelta

from ingest.decoders import RawReading
from pantau.catalogue import Catalogue
from pantau.devices import Device
from pantau.errors import RejectedInput
from pantau.readings import Reading


class Validator:
    """Turns a RawReading into a canonical Reading, or raises RejectedInput with the reason."""

    def __init__(
        self,
        catalogue: Catalogue,
        devices: dict[str, Device],
        *,
        max_future_skew: timedelta,
        max_age: timedelta,
    ) -> None:
        self._catalogue = catalogue
        self._devices = devices
        self._max_future_skew = max_future_skew
        self._max_age = max_age

    def device(self, device_id: str) -> Device:
        device = self._devices.get(device_id)
        if device is None:
            raise RejectedInput("unknown_device", f"{device_id!r} is not in the device registry")
        return device

    def reading(self, raw: RawReading, received_at: datetime) -> Reading:
        device = self.device(raw.device_id)
        spec = self._catalogue.metric(raw.metric)
        if spec is None or raw.metric not in device.metrics:
            raise RejectedInput(
                "unknown_metric",
                f"{raw.metric!r} is not a metric of a {device.kind} "
                f"(expected one of {', '.join(device.metrics)})",
            )
        value = spec.to_canonical(raw.value, raw.unit)
        if value is None:
            accepted = ", ".join(spec.factors)
            raise RejectedInput(
                "bad_unit", f"{raw.metric} in {raw.unit!r}; accepted units: {accepted}"
            )
        if not spec.valid_min <= value <= spec.valid_max:
            raise RejectedInput(
                "out_of_range",
                f"{raw.metric} = {value:g} {spec.unit} outside "
                f"[{spec.valid_min:g}, {spec.valid_max:g}]",
            )
        if raw.time > received_at + self._max_future_skew:
            raise RejectedInput(
                "bad_timestamp",
                f"device time {raw.time.isoformat()} is {raw.time - received_at} in the future",
            )
        if raw.time < received_at - self._max_age:
            raise RejectedInput(
                "bad_timestamp",
                f"device time {raw.time.isoformat()} is older than {self._max_age}",
            )
        return Reading(
            device_id=raw.device_id,
            metric=raw.metric,
            value=value,
            unit=spec.unit,
            time=raw.time,
            seq=raw.seq,
        )
