"""Kinds judged device by device, then combined per zone: the shared base."""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from pantau.city import City
from pantau.devices import Device
from pantau.incidents import ConditionChange, ConditionState, Severity
from pantau.readings import Reading
from rules.kinds.base import ANY_METRIC, Evaluator, S, minutes
from rules.rulespec import (
    Rule,
)
from rules.state import CLEARED, NO_DATA, Debounce, worst


@dataclass(slots=True)
class Series:
    """Per-device state for kinds judged device by device, then combined per zone."""

    debounce: Debounce
    severity: Severity
    value: float | None = None


class PerDeviceEvaluator(Evaluator):
    """Each device has its own hold machine; the zone takes the most alarming one."""

    def __init__(self, rule: Rule, city: City) -> None:
        super().__init__(rule, city)
        self.higher_is_worse = True  # for the evidence's peak value
        self.evidence_metric = ANY_METRIC
        self.series: dict[str, Series] = {}
        self.no_data_after = getattr(rule, "no_data_after", None)
        self.last_at: dict[str, datetime] = {}
        self.silences: list[tuple[datetime, str]] = []  # (when silence starts to count, id)

    def heard(self, reading: Reading) -> None:
        """Note a reading so an open condition on a silent device turns no_data."""
        if self.no_data_after is not None:
            self.last_at[reading.device_id] = reading.time

    def judged(
        self,
        reading: Reading,
        device: Device,
        before: tuple[ConditionState, Severity],
        reason: Callable[[], str],
    ) -> list[ConditionChange]:
        """After a reading updated the device's series (`before`: its state and severity
        until then): arm its silence deadline while its condition is open, and judge the
        zone again unless nothing can have changed there (the device's verdict did not
        move and the zone has no open episode collecting evidence)."""
        if self.unmoved(reading, device, before):
            return []
        return self.settle_zone(reading.time, device, reason)

    def unmoved(
        self, reading: Reading, device: Device, before: tuple[ConditionState, Severity]
    ) -> bool:
        """`judged` up to the zone: True when the zone need not be judged again. A kind
        calls it first to word its reason (a closure) only for the few readings that
        need one: building it for every reading was a tenth of the worker's time.

        A device that was clear and stays clear changes nothing in its zone either, open
        or not: the zone's state, severity and breaching devices were settled when a
        member last moved, and a clear device gives no evidence value."""
        s = self.series[device.id]
        state = s.debounce.state
        if self.no_data_after is not None and state is not CLEARED and state is not NO_DATA:
            heapq.heappush(self.silences, (reading.time + self.no_data_after, device.id))
        if state is before[0] and s.severity == before[1]:
            if state is CLEARED:
                return True
            t = self.trackers.get(self.zone(device))
            if t is None or not t.open:
                return True
        return False

    def _silent(self, deadline: datetime, device_id: str) -> bool:
        s = self.series.get(device_id)
        return (
            self.no_data_after is not None
            and self.last_at[device_id] + self.no_data_after == deadline
            and s is not None
            and s.debounce.state not in (S.CLEARED, S.NO_DATA)
        )

    def next_deadline(self) -> datetime | None:
        while self.silences and not self._silent(*self.silences[0]):
            heapq.heappop(self.silences)
        return self.silences[0][0] if self.silences else None

    def on_deadline(self, at: datetime) -> list[ConditionChange]:
        out: list[ConditionChange] = []
        while (nxt := self.next_deadline()) is not None and nxt <= at:
            deadline, device_id = heapq.heappop(self.silences)
            out += self._go_silent(deadline, device_id)
        return out

    def catch_up(self, device_id: str, before: datetime) -> list[ConditionChange]:
        if self.no_data_after is None or (last := self.last_at.get(device_id)) is None:
            return []
        deadline = last + self.no_data_after
        if deadline >= before or not self._silent(deadline, device_id):
            return []
        # Its heap entry stays; next_deadline drops it (no longer silent).
        return self._go_silent(deadline, device_id)

    def _go_silent(self, deadline: datetime, device_id: str) -> list[ConditionChange]:
        s = self.series[device_id]
        s.debounce.force(S.NO_DATA, deadline)
        s.value = None
        reason = (
            f"no {self.evidence_metric} from {device_id} for"
            f" {minutes(deadline - self.last_at[device_id])}: cannot judge"
        )
        return self.settle_zone(deadline, self.devices[device_id], reason)

    def series_of(self, device_id: str, raise_for: timedelta, clear_for: timedelta) -> Series:
        s = self.series.get(device_id)
        if s is None:
            s = self.series[device_id] = Series(Debounce(raise_for, clear_for), self.rule.severity)
        return s

    def settle_zone(
        self, at: datetime, device: Device, reason: str | Callable[[], str]
    ) -> list[ConditionChange]:
        zone = self.zone(device)
        members = [self.series[m] for m in self.zone_members[zone] if m in self.series]
        named = [m for m in self.zone_members[zone] if m in self.series]
        state = worst([s.debounce.state for s in members])
        judged = [s for s in members if s.debounce.state is state]
        severity = max((s.severity for s in judged), default=None)
        breaching = tuple(
            m for m, s in zip(named, members, strict=True) if s.debounce.state is not S.CLEARED
        )
        mine = self.series[device.id]
        value = mine.value if mine.debounce.state is not S.CLEARED else None
        tracker = self.tracker(zone, self.evidence_metric, self.higher_is_worse)
        change = tracker.settle(at, state, severity, devices=breaching, value=value, reason=reason)
        return [] if change is None else [change]
