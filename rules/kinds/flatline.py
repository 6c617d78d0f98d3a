"""`flatline`: a series that stops moving (a stuck sensor)."""

from __future__ import annotations

from datetime import timedelta

from pantau.city import City
from pantau.devices import Device
from pantau.incidents import ConditionChange
from pantau.readings import Reading
from rules.kinds.base import EVALUATORS, minutes
from rules.kinds.per_device import PerDeviceEvaluator
from rules.kinds.windows import Spread
from rules.rulespec import (
    FlatlineRule,
    Rule,
)


@EVALUATORS.register("flatline")
class FlatlineEvaluator(PerDeviceEvaluator):
    rule: FlatlineRule

    def __init__(self, rule: Rule, city: City) -> None:
        assert isinstance(rule, FlatlineRule)
        super().__init__(rule, city)
        # Comparing with peers' spreads makes the verdict depend on other series.
        self.series_local = not rule.require_moving_peers
        self.metrics = frozenset({rule.metric})
        self.evidence_metric = rule.metric
        self.windows: dict[str, Spread] = {}
        self.ranges: dict[str, float] = {}  # each device's spread over its latest window

    def on_reading(self, reading: Reading, device: Device) -> list[ConditionChange]:
        self.heard(reading)
        rule = self.rule
        window = self.windows.get(device.id)
        if window is None:
            window = self.windows[device.id] = Spread(rule.for_)
        spread = window.add(reading.time, reading.value)
        self.ranges[device.id] = spread
        covered = window.start <= reading.time - rule.for_
        stuck = covered and spread <= rule.epsilon
        if stuck and rule.require_moving_peers:
            peers = [m for m in self.zone_members[self.zone(device)] if m != device.id]
            stuck = any(self.ranges.get(m, 0.0) > rule.epsilon for m in peers)
        s = self.series_of(device.id, timedelta(0), timedelta(0))
        before = (s.debounce.state, s.severity)
        s.value = reading.value
        s.debounce.update(reading.time, breaching=stuck, clearing=not stuck)

        def reason() -> str:
            return (
                f"{rule.metric} at {device.id} changed {spread:g} (epsilon {rule.epsilon:g})"
                f" in {minutes(rule.for_)}"
            )

        return self.judged(reading, device, before, reason)
