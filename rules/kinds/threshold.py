"""`threshold`: a metric against a level, with hysteresis and holds."""

from __future__ import annotations

from pantau.city import City
from pantau.devices import Device
from pantau.incidents import ConditionChange, Severity
from pantau.readings import Reading
from rules.kinds.base import EVALUATORS, S, minutes
from rules.kinds.per_device import PerDeviceEvaluator
from rules.kinds.windows import Mean
from rules.rulespec import (
    Rule,
    ThresholdRule,
    resolve_level,
)


@EVALUATORS.register("threshold")
class ThresholdEvaluator(PerDeviceEvaluator):
    rule: ThresholdRule
    series_local = True

    def __init__(self, rule: Rule, city: City) -> None:
        assert isinstance(rule, ThresholdRule)
        super().__init__(rule, city)
        self.metrics = frozenset({rule.metric})
        self.evidence_metric = rule.metric
        self.above = rule.direction == "above"
        self.higher_is_worse = self.above
        steps = sorted(rule.steps, key=lambda s: s.severity)
        self.levels: dict[str, tuple[float, float, list[tuple[Severity, float, float]]]] = {}
        for d in self.devices.values():
            raise_v = resolve_level(rule.raise_level, d)
            clear_v = resolve_level(rule.clear_level, d)
            if raise_v is None or clear_v is None:
                continue  # validated at load; a device without levels is not watched
            resolved = []
            for s in steps:
                at = resolve_level(s.at, d)
                back = resolve_level(s.clear, d) if s.clear is not None else at
                if at is not None and back is not None:
                    resolved.append((s.severity, at, back))
            self.levels[d.id] = (raise_v, clear_v, resolved)
        self.means: dict[str, Mean] = {}

    def beyond(self, value: float, level: float) -> bool:
        return value >= level if self.above else value <= level

    def on_reading(self, reading: Reading, device: Device) -> list[ConditionChange]:
        self.heard(reading)
        levels = self.levels.get(device.id)
        if levels is None:
            return []
        raise_v, clear_v, steps = levels
        rule = self.rule
        v = reading.value
        if rule.mean_over is not None:
            v = self.means.setdefault(device.id, Mean(rule.mean_over)).add(reading.time, v)
        s = self.series_of(device.id, rule.raise_for, rule.clear_for)
        before = (s.debounce.state, s.severity)
        s.value = v
        clearing = v < clear_v if self.above else v > clear_v
        state = s.debounce.update(
            reading.time, breaching=self.beyond(v, raise_v), clearing=clearing
        )
        if state is S.CLEARED:
            s.severity = rule.severity
        else:
            severity = rule.severity
            for step_sev, at, back in steps:
                held = s.severity >= step_sev and not (v < back if self.above else v > back)
                if self.beyond(v, at) or held:
                    severity = max(severity, step_sev)
            s.severity = severity

        def reason() -> str:
            unit = self.units.get(rule.metric, "")
            sign = ">=" if self.above else "<="
            if rule.mean_over is not None:
                unit += f" ({minutes(rule.mean_over)} mean)"
            if state is S.CLEARED or state is S.RECOVERING:
                back_sign = "<" if self.above else ">"
                return (
                    f"{rule.metric} {v:g} {unit} {back_sign} clear {clear_v:g} {unit}"
                    f" at {device.id}"
                )
            return (
                f"{rule.metric} {v:g} {unit} {sign} raise {raise_v:g} {unit} at {device.id}"
                f" ({s.severity.name.lower()}, hold {minutes(rule.raise_for)})"
            )

        return self.judged(reading, device, before, reason)
