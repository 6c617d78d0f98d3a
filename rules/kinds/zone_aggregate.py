"""`zone_aggregate`: enough devices of a zone meet a condition."""

from __future__ import annotations

from datetime import datetime

from pantau.city import City
from rules.kinds.base import EVALUATORS
from rules.kinds.per_zone import PerZoneEvaluator, Probe
from rules.rulespec import (
    Rule,
    ZoneAggregateRule,
)


@EVALUATORS.register("zone_aggregate")
class ZoneAggregateEvaluator(PerZoneEvaluator):
    rule: ZoneAggregateRule

    def __init__(self, rule: Rule, city: City) -> None:
        assert isinstance(rule, ZoneAggregateRule)
        super().__init__(rule, city)
        self.raise_for, self.clear_for = rule.raise_for, rule.clear_for
        self.probes = [Probe(rule.condition, self.devices, set(rule.applies_to.kinds))]
        self.metrics = frozenset({rule.condition.metric})

    def judge(self, zone: str, now: datetime) -> tuple[bool, tuple[str, ...], float | None, str]:
        c = self.rule.condition
        hits = self.meeting(self.probes[0], zone, now)
        n = len(self.zone_members[zone])
        met = len(hits) >= self.rule.k
        peak = max((x for _, x in hits), default=None)
        reason = (
            f"{len(hits)} of {n} devices with {c.metric} {c.op} {c.value}"
            f" (k = {self.rule.k}) in {zone}"
        )
        return met, tuple(m for m, _ in hits), peak, reason
