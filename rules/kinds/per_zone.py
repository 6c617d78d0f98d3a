"""Kinds judged on a whole zone: probes per device and one hold machine per zone."""

from __future__ import annotations

from abc import abstractmethod
from collections import deque
from datetime import datetime, timedelta

from pantau.city import City
from pantau.devices import Device
from pantau.incidents import ConditionChange
from pantau.readings import Reading
from rules.kinds.base import OPS, Evaluator, S
from rules.kinds.rechecks import Rechecks
from rules.kinds.windows import Mean, push_window, rate_per_min
from rules.rulespec import (
    Condition,
    Rule,
    resolve_level,
)
from rules.state import Debounce


class Probe:
    """A per-device condition on its latest reading (or its rise per minute)."""

    def __init__(self, cond: Condition, devices: dict[str, Device], kinds: set[str]) -> None:
        self.cond = cond
        self.compare = OPS[cond.op]
        self.levels = {
            d.id: lv
            for d in devices.values()
            if d.kind in kinds and (lv := resolve_level(cond.value, d)) is not None
        }
        self.latest: dict[str, tuple[datetime, float]] = {}
        self.windows: dict[str, deque[tuple[datetime, float]]] = {}
        self.means: dict[str, Mean] = {}

    def feed(self, reading: Reading) -> None:
        if reading.metric != self.cond.metric or reading.device_id not in self.levels:
            return
        if self.cond.of == "value":
            value = reading.value
            if self.cond.mean_over is not None:
                mean = self.means.setdefault(reading.device_id, Mean(self.cond.mean_over))
                value = mean.add(reading.time, value)
            self.latest[reading.device_id] = (reading.time, value)
            return
        window = self.windows.setdefault(reading.device_id, deque())
        push_window(window, reading.time, reading.value, self.cond.window)
        rate = rate_per_min(window, self.cond.window)
        if rate is None:
            self.latest.pop(reading.device_id, None)
        else:
            self.latest[reading.device_id] = (reading.time, rate)

    def expiry(self, device_id: str) -> datetime | None:
        """When the device's latest reading stops counting."""
        seen = self.latest.get(device_id)
        return None if seen is None else seen[0] + self.cond.max_age

    def holds(self, device_id: str, now: datetime) -> float | None:
        """The value that meets the condition, or None."""
        seen = self.latest.get(device_id)
        if seen is None or now - seen[0] >= self.cond.max_age:
            return None
        _, x = seen
        return x if self.compare(x, self.levels[device_id]) else None


class PerZoneEvaluator(Evaluator):
    """Kinds judged on a whole zone: one hold machine per zone."""

    probes: list[Probe]
    raise_for: timedelta
    clear_for: timedelta

    def __init__(self, rule: Rule, city: City) -> None:
        super().__init__(rule, city)
        self.debounces: dict[str, Debounce] = {}
        self.evidence_index = 0  # the probe whose metric and extreme go into Evidence
        # An open zone is judged again when a reading it rests on grows too old, so
        # inputs that go silent turn it no_data instead of leaving it open forever.
        self.rechecks = Rechecks()

    def _schedule(self, zone: str, now: datetime) -> None:
        debounce = self.debounces[zone]
        self.rechecks.cancel(zone)
        if debounce.state in (S.CLEARED, S.NO_DATA):
            return
        expiries = [
            e
            for p in self.probes
            for m in self.zone_members[zone]
            if (e := p.expiry(m)) is not None and e > now
        ]
        if expiries:
            self.rechecks.schedule(zone, min(expiries))

    def next_deadline(self) -> datetime | None:
        return self.rechecks.next()

    def on_deadline(self, at: datetime) -> list[ConditionChange]:
        out: list[ConditionChange] = []
        for when, zone in self.rechecks.due(at):
            out += self._settle(zone, when)
        return out

    def _settle(self, zone: str, now: datetime) -> list[ConditionChange]:
        """Judge the zone at `now`; an open zone whose inputs went silent turns no_data."""
        met, devices, value, reason = self.judge(zone, now)
        debounce = self.debounces.get(zone)
        if debounce is None:
            debounce = self.debounces[zone] = Debounce(self.raise_for, self.clear_for)
        cond = self.probes[self.evidence_index].cond
        tracker = self.tracker(zone, cond.metric, cond.op not in ("<", "<="))
        silent = [p.cond.metric for p in self.probes if not self._fresh(p, zone, now)]
        if silent and not met and tracker.state is not S.CLEARED:
            debounce.force(S.NO_DATA, now)
            why = f"no fresh {', '.join(silent)} in {zone}: cannot judge"
            change = tracker.settle(now, S.NO_DATA, None, reason=why)
        else:
            state = debounce.update(now, breaching=met, clearing=not met)
            change = tracker.settle(
                now, state, self.rule.severity, devices=devices, value=value, reason=reason
            )
        self._schedule(zone, now)
        return [] if change is None else [change]

    def _fresh(self, probe: Probe, zone: str, now: datetime) -> bool:
        return any((e := probe.expiry(m)) is not None and e > now for m in self.zone_members[zone])

    def meeting(self, probe: Probe, zone: str, now: datetime) -> list[tuple[str, float]]:
        out = []
        for m in self.zone_members[zone]:
            x = probe.holds(m, now)
            if x is not None:
                out.append((m, x))
        return out

    @abstractmethod
    def judge(self, zone: str, now: datetime) -> tuple[bool, tuple[str, ...], float | None, str]:
        """Whether the zone breaches at `now`, with its devices, peak value and reason."""

    def on_reading(self, reading: Reading, device: Device) -> list[ConditionChange]:
        for p in self.probes:
            p.feed(reading)
        zone = self.zone(device)
        now = reading.time
        debounce = self.debounces.get(zone)
        if (
            debounce is not None
            and debounce.state is S.CLEARED
            and not any(p.holds(device.id, now) is not None for p in self.probes if p.levels)
        ):
            # A cleared zone was last judged "not met"; since then other members only
            # aged (which removes hits) and this device meets nothing: every kind here is
            # monotone in the hits, so it is still not met. Skip the O(members) judge.
            return []
        return self._settle(zone, now)
