"""`composite`: several conditions in a zone combined with and / or."""

from __future__ import annotations

from datetime import datetime

from pantau.city import City
from rules.kinds.base import EVALUATORS
from rules.kinds.per_zone import PerZoneEvaluator, Probe
from rules.rulespec import (
    CompositeRule,
    Rule,
)


@EVALUATORS.register("composite")
class CompositeEvaluator(PerZoneEvaluator):
    rule: CompositeRule

    def __init__(self, rule: Rule, city: City) -> None:
        assert isinstance(rule, CompositeRule)
        super().__init__(rule, city)
        self.raise_for, self.clear_for = rule.raise_for, rule.clear_for
        self.probes = [
            Probe(c, self.devices, set(c.kinds or rule.applies_to.kinds)) for c in rule.conditions
        ]
        self.metrics = frozenset(c.metric for c in rule.conditions)
        if rule.evidence is not None:
            self.evidence_index = [c.metric for c in rule.conditions].index(rule.evidence)

    def judge(self, zone: str, now: datetime) -> tuple[bool, tuple[str, ...], float | None, str]:
        parts = [self.meeting(p, zone, now) for p in self.probes]
        if self.rule.same_device:
            # Keep only devices that meet the conditions by themselves.
            sets = [{m for m, _ in hits} for hits in parts]
            both = set.intersection(*sets) if self.rule.op == "and" else set.union(*sets)
            parts = [[(m, x) for m, x in hits if m in both] for hits in parts]
        met = all(parts) if self.rule.op == "and" else any(parts)
        devices = tuple(sorted({m for hits in parts for m, _ in hits}))
        shown_probe = self.probes[self.evidence_index]
        values = [x for _, x in parts[self.evidence_index]]
        lower = shown_probe.cond.op in ("<", "<=")
        peak = (min(values) if lower else max(values)) if values else None
        shown = f" {self.rule.op.upper()} ".join(
            f"{p.cond.metric} {p.cond.op} {p.cond.value} [{'yes' if hits else 'no'}]"
            for p, hits in zip(self.probes, parts, strict=True)
        )
        return met, devices, peak, f"{shown} in {zone}"
