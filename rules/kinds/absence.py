"""`absence`: a device silent for longer than the rule allows."""

from __future__ import annotations

import heapq
from datetime import datetime, timedelta

from pantau.city import City
from pantau.devices import Device
from pantau.incidents import ConditionChange
from pantau.readings import Reading
from rules.kinds.base import ANY_METRIC, EVALUATORS, S, minutes
from rules.kinds.per_device import PerDeviceEvaluator
from rules.rulespec import (
    AbsenceRule,
    Rule,
)


@EVALUATORS.register("absence")
class AbsenceEvaluator(PerDeviceEvaluator):
    """No reading for `after`: judged when the watermark passes last_seen + after."""

    rule: AbsenceRule

    def __init__(self, rule: Rule, city: City) -> None:
        assert isinstance(rule, AbsenceRule)
        super().__init__(rule, city)
        self.metrics = frozenset({rule.metric or ANY_METRIC})
        self.evidence_metric = rule.metric or ANY_METRIC
        self.last_seen: dict[str, datetime] = {}
        self.deadlines: list[tuple[datetime, str]] = []

    def start(self, at: datetime) -> None:
        # Devices never heard from count as silent from the engine's first event time.
        for device_id in self.devices:
            if device_id not in self.last_seen:
                self._seen(device_id, at)

    def _seen(self, device_id: str, at: datetime) -> None:
        self.last_seen[device_id] = at
        heapq.heappush(self.deadlines, (at + self.rule.after, device_id))

    def on_reading(self, reading: Reading, device: Device) -> list[ConditionChange]:
        previous = self.last_seen.get(device.id)
        if previous is not None and reading.time <= previous:
            return []
        self._seen(device.id, reading.time)
        s = self.series_of(device.id, timedelta(0), timedelta(0))
        if s.debounce.state is not S.ACTIVE:
            return []
        s.debounce.force(S.CLEARED, reading.time)
        s.value = None
        silent = reading.time - previous if previous is not None else timedelta(0)
        reason = f"{device.id} reports again after {minutes(silent)} of silence"
        return self.settle_zone(reading.time, device, reason)

    def _valid(self, deadline: datetime, device_id: str) -> bool:
        return self.last_seen[device_id] + self.rule.after == deadline

    def next_deadline(self) -> datetime | None:
        while self.deadlines and not self._valid(*self.deadlines[0]):
            heapq.heappop(self.deadlines)
        return self.deadlines[0][0] if self.deadlines else None

    def on_deadline(self, at: datetime) -> list[ConditionChange]:
        out: list[ConditionChange] = []
        while (nxt := self.next_deadline()) is not None and nxt <= at:
            deadline, device_id = heapq.heappop(self.deadlines)
            s = self.series_of(device_id, timedelta(0), timedelta(0))
            s.debounce.force(S.ACTIVE, deadline)
            s.value = self.rule.after.total_seconds() / 60
            what = self.rule.metric or "reading"
            reason = (
                f"no {what} from {device_id} since"
                f" {self.last_seen[device_id]:%Y-%m-%d %H:%M:%S}Z ({minutes(self.rule.after)})"
            )
            out += self.settle_zone(deadline, self.devices[device_id], reason)
        return out
