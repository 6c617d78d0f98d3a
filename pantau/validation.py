"""Validation of decoded readings against the device registry and the metric catalogue."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta

from pantau.catalogue import Catalogue, MetricSpec
from pantau.decoding import RawReading
from pantau.devices import Device
from pantau.errors import RejectedInput
from pantau.readings import Reading


class Validator:
    """Turns RawReadings into canonical Readings, or says why not (RejectedInput)."""

    def __init__(
        self,
        catalogue: Catalogue,
        devices: dict[str, Device],
        *,
        max_future_skew: timedelta,
        max_age: timedelta,
    ) -> None:
        self._devices = devices
        self._max_future_skew = max_future_skew
        self._max_age = max_age
        self._metrics = catalogue.metrics
        # (device kind, metric) -> spec, for the metrics each kind may report
        self._specs: dict[tuple[str, str], MetricSpec] = {
            (kind.name, metric): catalogue.metrics[metric]
            for kind in catalogue.kinds.values()
            for metric in kind.metrics
        }

    def device(self, device_id: str) -> Device:
        device = self._devices.get(device_id)
        if device is None:
            raise RejectedInput("unknown_device", f"{device_id!r} is not in the device registry")
        return device

    def reading(self, raw: RawReading, received_at: datetime) -> Reading:
        """One reading; raises RejectedInput."""
        for result in self.readings((raw,), received_at):
            if isinstance(result, RejectedInput):
                raise result
            return result
        raise AssertionError("readings() yields one result per input")

    def readings(
        self, raws: Iterable[RawReading | RejectedInput], received_at: datetime
    ) -> Iterator[Reading | RejectedInput]:
        """Each reading of one message, in order: accepted, or the reason it is not (a
        record the decoder refused passes through as its rejection)."""
        newest = received_at + self._max_future_skew
        oldest = received_at - self._max_age
        for raw in raws:
            if isinstance(raw, RejectedInput):
                yield raw
                continue
            try:
                yield self._check(raw, newest, oldest)
            except RejectedInput as err:
                if raw.record is not None:  # say which record of the pack
                    err = RejectedInput(err.reason, f"record {raw.record}: {err.detail}")
                yield err

    def _sum(self, spec: MetricSpec, value: float) -> tuple[MetricSpec, float]:
        target = self._metrics.get(spec.sum_metric or "")
        if target is None:
            raise RejectedInput("unsupported_value", f"the catalogue stores no sum of {spec.name}")
        return target, value * spec.sum_factor

    def _check(self, raw: RawReading, newest: datetime, oldest: datetime) -> Reading:
        device = self.device(raw.device_id)
        spec = self._specs.get((device.kind, raw.metric))
        if spec is None:
            raise RejectedInput(
                "unknown_metric",
                f"{raw.metric!r} is not a metric of a {device.kind} "
                f"(expected one of {', '.join(device.metrics)})",
            )
        if isinstance(raw.value, str):
            value: float | None = spec.states.get(raw.value)
            if value is None:
                known = ", ".join(spec.states) or "none"
                raise RejectedInput(
                    "unsupported_value",
                    f"{raw.metric} has no state {raw.value[:40]!r} (states: {known})",
                )
        else:
            value = spec.to_canonical(raw.value, raw.unit)
        if value is not None and raw.is_sum:
            spec, value = self._sum(spec, value)
        if value is None:
            accepted = ", ".join(spec.factors)
            raise RejectedInput(
                "bad_unit", f"{raw.metric} in {raw.unit!r}; accepted units: {accepted}"
            )
        if not spec.valid_min <= value <= spec.valid_max:
            raise RejectedInput(
                "out_of_range",
                f"{spec.name} = {value:g} {spec.unit} outside "
                f"[{spec.valid_min:g}, {spec.valid_max:g}]",
            )
        if raw.time > newest:
            raise RejectedInput(
                "bad_timestamp",
                f"device time {raw.time.isoformat()} is more than "
                f"{self._max_future_skew} ahead of the time of receipt",
            )
        if raw.time < oldest:
            raise RejectedInput(
                "bad_timestamp",
                f"device time {raw.time.isoformat()} is older than {self._max_age}",
            )
        return Reading(
            device_id=raw.device_id,
            metric=spec.name,
            value=value,
            unit=spec.unit,
            time=raw.time,
            seq=raw.seq,
        )
