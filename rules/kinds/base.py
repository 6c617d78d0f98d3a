"""What every rule kind shares: the `Evaluator` base, the kind registry and small helpers."""

from __future__ import annotations

import operator
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import TypeVar

from pantau.city import City
from pantau.devices import Device
from pantau.incidents import ConditionChange, ConditionState, DedupKey
from pantau.readings import Reading
from pantau.registry import Registry
from rules.rulespec import (
    Rule,
)
from rules.state import KeyTracker

S = ConditionState
T = TypeVar("T")
ANY_METRIC = "*"

OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}


def zone_of(device: Device, zone_level: str) -> str:
    return device.kecamatan_id if zone_level == "kecamatan" else device.kelurahan_id


def minutes(delta: timedelta) -> str:
    return f"{delta.total_seconds() / 60:g} min"


class Evaluator(ABC):
    """Base of every kind: the watched devices, their zones and one tracker per zone."""

    metrics: frozenset[str]  # metrics fed to on_reading; ANY_METRIC for all
    # True: a device's verdict depends on that device's own series only (in order), so
    # the engine may feed readings as they arrive instead of on the watermark.
    series_local: bool = False

    def __init__(self, rule: Rule, city: City, kinds: Iterable[str] | None = None) -> None:
        self.rule = rule
        wanted = set(kinds if kinds is not None else rule.applies_to.kinds)
        zones = set(rule.applies_to.zones)
        self.devices: dict[str, Device] = {
            d.id: d
            for d in sorted(city.devices.values(), key=lambda d: d.id)
            if d.kind in wanted
            and (not zones or d.kelurahan_id in zones or d.kecamatan_id in zones)
        }
        self.zone_members: dict[str, list[str]] = {}
        for d in self.devices.values():
            self.zone_members.setdefault(zone_of(d, rule.zone_level), []).append(d.id)
        self.trackers: dict[str, KeyTracker] = {}
        self.units = {name: m.unit for name, m in city.catalogue.metrics.items()}

    def tracker(self, zone: str, metric: str, higher_is_worse: bool = True) -> KeyTracker:
        t = self.trackers.get(zone)
        if t is None:
            key = DedupKey(self.rule.id, zone, self.rule.hazard)
            t = self.trackers[zone] = KeyTracker(key, metric, higher_is_worse)
        return t

    def zone(self, device: Device) -> str:
        return zone_of(device, self.rule.zone_level)

    def start(self, at: datetime) -> None:  # noqa: B027 - most kinds need no start
        """The engine's first event time (or the reload's watermark)."""

    @abstractmethod
    def on_reading(self, reading: Reading, device: Device) -> list[ConditionChange]:
        """Feed one reading (in event-time order); the changes it causes."""

    def next_deadline(self) -> datetime | None:
        return None

    def on_deadline(self, at: datetime) -> list[ConditionChange]:
        return []

    def catch_up(self, device_id: str, before: datetime) -> list[ConditionChange]:
        """Fire the device's own deadlines before `before` (series-local kinds: its next
        reading proves them passed, whatever the watermark says)."""
        return []

    def close(self, at: datetime, reason: str) -> list[ConditionChange]:
        """CLEARED for every open key (the rule was removed or changed)."""
        out = []
        for t in self.trackers.values():
            if t.open and (c := t.settle(at, S.CLEARED, None, reason=reason)) is not None:
                out.append(c)
        return out

    def current(self) -> list[ConditionChange]:
        return [t.last for t in self.trackers.values() if t.open and t.last is not None]


EVALUATORS: Registry[Callable[[Rule, City], Evaluator]] = Registry("rule kind")


def build_evaluator(rule: Rule, city: City) -> Evaluator:
    return EVALUATORS.get(rule.kind)(rule, city)
