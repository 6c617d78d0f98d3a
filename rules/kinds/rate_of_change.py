"""`rate_of_change`: a rise per minute over a window."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from datetime import datetime

from pantau.city import City
from pantau.devices import Device
from pantau.incidents import ConditionChange
from pantau.readings import Reading
from rules.kinds.base import EVALUATORS, minutes
from rules.kinds.per_device import PerDeviceEvaluator
from rules.kinds.windows import push_window, rate_per_min
from rules.rulespec import (
    RateOfChangeRule,
    Rule,
)


@EVALUATORS.register("rate_of_change")
class RateOfChangeEvaluator(PerDeviceEvaluator):
    rule: RateOfChangeRule
    series_local = True

    def __init__(self, rule: Rule, city: City) -> None:
        assert isinstance(rule, RateOfChangeRule)
        super().__init__(rule, city)
        self.metrics = frozenset({rule.metric})
        self.evidence_metric = rule.metric
        self.windows: dict[str, deque[tuple[datetime, float]]] = {}

    def on_reading(self, reading: Reading, device: Device) -> list[ConditionChange]:
        self.heard(reading)
        rule = self.rule
        window = self.windows.setdefault(device.id, deque())
        push_window(window, reading.time, reading.value, rule.window)
        rate = rate_per_min(window, rule.window)
        s = self.series_of(device.id, rule.raise_for, rule.clear_for)
        before = (s.debounce.state, s.severity)
        s.value = rate
        s.debounce.update(
            reading.time,
            breaching=rate is not None and rate >= rule.raise_per_min,
            clearing=rate is not None and rate < rule.clear_per_min,
        )

        if self.unmoved(reading, device, before):
            return []
        return self.settle_zone(reading.time, device, self._reason(rate, device))

    def _reason(self, rate: float | None, device: Device) -> Callable[[], str]:
        """Worded only for a change (threshold.py says why the closure is made here)."""
        rule = self.rule

        def reason() -> str:
            shown = "n/a" if rate is None else f"{rate:.2f}"
            unit = self.units.get(rule.metric, "")
            return (
                f"{rule.metric} at {device.id} rising {shown} {unit}/min over"
                f" {minutes(rule.window)} (raise >= {rule.raise_per_min:g},"
                f" clear < {rule.clear_per_min:g})"
            )

        return reason
