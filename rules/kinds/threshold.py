"""`threshold`: a metric against a level, with hysteresis and holds."""

from __future__ import annotations

from collections.abc import Callable

from pantau.city import City
from pantau.devices import Device
from pantau.incidents import ConditionChange, ConditionState, Severity
from pantau.readings import Reading
from rules.kinds.base import EVALUATORS, S, minutes
from rules.kinds.per_device import PerDeviceEvaluator, Series
from rules.kinds.windows import Mean
from rules.rulespec import (
    Rule,
    ThresholdRule,
    resolve_level,
)
from rules.state import CLEARED


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
        # Per device: raise, clear, and each step's (severity, level, clear, level name).
        self.levels: dict[str, tuple[float, float, list[tuple[Severity, float, float, str]]]] = {}
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
                    resolved.append((s.severity, at, back, _named(s.at)))
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
        if state is CLEARED:
            s.severity = rule.severity
        else:
            severity = rule.severity
            for step_sev, at, back, _ in steps:
                held = s.severity >= step_sev and not (v < back if self.above else v > back)
                if self.beyond(v, at) or held:
                    severity = max(severity, step_sev)
            s.severity = severity
        if self.unmoved(reading, device, before):
            return []
        return self.settle_zone(reading.time, device, self._reason(v, state, s, device, levels))

    def _reason(
        self,
        v: float,
        state: ConditionState,
        s: Series,
        device: Device,
        levels: tuple[float, float, list[tuple[Severity, float, float, str]]],
    ) -> Callable[[], str]:
        """The reason of a change as a closure, made only when the zone is judged again
        (`unmoved`): made in on_reading it cost every reading its locals as cells."""
        rule = self.rule
        raise_v, clear_v, steps = levels

        def reason() -> str:
            unit = self.units.get(rule.metric, "")
            sign = ">=" if self.above else "<="
            back_sign = "<" if self.above else ">"
            if rule.mean_over is not None:
                unit += f" ({minutes(rule.mean_over)} mean)"
            if state is S.CLEARED or state is S.RECOVERING:
                return (
                    f"{rule.metric} {v:g} {unit} {back_sign} clear {clear_v:g} {unit}"
                    f" at {device.id}"
                )
            # Name the level of the severity reached, not the rule's first one: an awas
            # reads "... >= awas 310 cm (levels.danger_cm)", not the waspada level.
            sev = s.severity.name.lower()
            step = next(((at, back, e) for sv, at, back, e in steps if sv == s.severity), None)
            if step is None:
                return (
                    f"{rule.metric} {v:g} {unit} {sign} {sev} {raise_v:g} {unit}"
                    f"{_named(rule.raise_level)} at {device.id} (hold {minutes(rule.raise_for)})"
                )
            at, back, expr = step
            if self.beyond(v, at):
                return f"{rule.metric} {v:g} {unit} {sign} {sev} {at:g} {unit}{expr} at {device.id}"
            named = f": {expr.strip(' ()')}" if expr else ""
            return (  # between the step's clear and its level: the step holds
                f"{rule.metric} {v:g} {unit} {sign} {sev} clear {back:g} {unit} at {device.id}:"
                f" still {sev} (its level {at:g} {unit}{named})"
            )

        return reason


def _named(level: float | str) -> str:
    """ " (levels.danger_cm)" for a level named in the device's registry entry."""
    return f" ({level})" if isinstance(level, str) else ""
