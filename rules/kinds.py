"""Rule kinds: one evaluator class per `kind`, registered by name in a plain registry.

An evaluator watches a fixed set of devices, is fed their readings by the engine and
says, per dedup key (rule, zone, hazard), what the condition is. A *series-local* kind
(`series_local = True`: threshold, rate of change, flatline without peers) judges each
device on its own series alone, so the engine feeds it each series in order as readings
arrive; the others (absence, zone aggregate, composite, flatline with moving peers,
cross-check) get the fleet's readings in event-time order once the watermark passes
them. Kinds that wait for time to pass (absence, no data, a cross-check's stale side)
expose deadlines the engine fires once the watermark is past them; a series-local kind
also fires a device's own silence deadline when that device's next reading shows it
passed (`catch_up`). No evaluator reads a clock.
"""

from __future__ import annotations

import heapq
import math
import operator
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Generic, TypeVar

from pantau.city import City
from pantau.devices import Device
from pantau.incidents import ConditionChange, ConditionState, DedupKey, Severity
from pantau.readings import Reading
from rules.cameras import CameraDevice
from rules.rulespec import (
    AbsenceRule,
    CompositeRule,
    Condition,
    CrossCheckRule,
    FlatlineRule,
    RateOfChangeRule,
    Rule,
    ThresholdRule,
    ZoneAggregateRule,
    resolve_level,
)
from rules.state import Debounce, KeyTracker, worst

S = ConditionState
T = TypeVar("T")
ANY_METRIC = "*"

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}


class Registry(Generic[T]):
    """Name -> implementation; registering a name twice is a start-up error."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(item: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.what} {name!r} registered twice")
            self._items[name] = item
            return item

        return add

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items))
            raise KeyError(f"unknown {self.what} {name!r} (known: {known})") from None

    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self._items))


def zone_of(device: Device, zone_level: str) -> str:
    return device.kecamatan_id if zone_level == "kecamatan" else device.kelurahan_id


def _minutes(delta: timedelta) -> str:
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


@dataclass(slots=True)
class _Series:
    """Per-device state for kinds judged device by device, then combined per zone."""

    debounce: Debounce
    severity: Severity
    value: float | None = None


class _PerDevice(Evaluator):
    """Each device has its own hold machine; the zone takes the most alarming one."""

    def __init__(self, rule: Rule, city: City) -> None:
        super().__init__(rule, city)
        self.higher_is_worse = True  # for the evidence's peak value
        self.evidence_metric = ANY_METRIC
        self.series: dict[str, _Series] = {}
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
        s = self.series[device.id]
        if self.no_data_after is not None and s.debounce.state not in (S.CLEARED, S.NO_DATA):
            heapq.heappush(self.silences, (reading.time + self.no_data_after, device.id))
        if (s.debounce.state, s.severity) == before:
            t = self.trackers.get(self.zone(device))
            if t is None or not t.open:
                return []
        return self.settle_zone(reading.time, device, reason)

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
            f" {_minutes(deadline - self.last_at[device_id])}: cannot judge"
        )
        return self.settle_zone(deadline, self.devices[device_id], reason)

    def series_of(self, device_id: str, raise_for: timedelta, clear_for: timedelta) -> _Series:
        s = self.series.get(device_id)
        if s is None:
            s = self.series[device_id] = _Series(Debounce(raise_for, clear_for), self.rule.severity)
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


@EVALUATORS.register("threshold")
class ThresholdEvaluator(_PerDevice):
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
        self.means: dict[str, _Mean] = {}

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
            v = self.means.setdefault(device.id, _Mean(rule.mean_over)).add(reading.time, v)
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
                unit += f" ({_minutes(rule.mean_over)} mean)"
            if state is S.CLEARED or state is S.RECOVERING:
                back_sign = "<" if self.above else ">"
                return (
                    f"{rule.metric} {v:g} {unit} {back_sign} clear {clear_v:g} {unit}"
                    f" at {device.id}"
                )
            return (
                f"{rule.metric} {v:g} {unit} {sign} raise {raise_v:g} {unit} at {device.id}"
                f" ({s.severity.name.lower()}, hold {_minutes(rule.raise_for)})"
            )

        return self.judged(reading, device, before, reason)


def _rate_per_min(window: deque[tuple[datetime, float]], span: timedelta) -> float | None:
    """Rise per minute over the window, once at least half of it is covered."""
    if len(window) < 2:
        return None
    (t0, v0), (t1, v1) = window[0], window[-1]
    if t1 - t0 < span / 2:
        return None
    return (v1 - v0) / ((t1 - t0).total_seconds() / 60)


class _Mean:
    """Mean of the readings of the last `span` (BMKG's hourly rain is a 60-minute mean)."""

    __slots__ = ("span", "window")

    def __init__(self, span: timedelta) -> None:
        self.span = span
        self.window: deque[tuple[datetime, float]] = deque()

    def add(self, at: datetime, value: float) -> float:
        self.window.append((at, value))
        while self.window[0][0] <= at - self.span:
            self.window.popleft()
        return math.fsum(v for _, v in self.window) / len(self.window)


def _push(
    window: deque[tuple[datetime, float]], at: datetime, value: float, span: timedelta
) -> None:
    """Append and drop what is older than `span`, keeping one point at or before its start."""
    window.append((at, value))
    while len(window) >= 2 and window[1][0] <= at - span:
        window.popleft()


class _Spread:
    """A flatline window (as `_push` keeps it: one point at or before its start) and the
    spread of its values, in O(1) amortised per reading: monotonic deques of the
    window's minima and maxima instead of a scan of the whole window (a 60-minute
    window of a device reporting every second is 3,600 points)."""

    __slots__ = ("highs", "lows", "n", "span", "window")

    def __init__(self, span: timedelta) -> None:
        self.span = span
        self.window: deque[tuple[datetime, int]] = deque()  # (time, sequence number)
        self.lows: deque[tuple[float, int]] = deque()  # increasing values
        self.highs: deque[tuple[float, int]] = deque()  # decreasing values
        self.n = 0

    @property
    def start(self) -> datetime:
        return self.window[0][0]

    def add(self, at: datetime, value: float) -> float:
        n = self.n
        self.n += 1
        self.window.append((at, n))
        lows, highs = self.lows, self.highs
        while lows and lows[-1][0] >= value:
            lows.pop()
        lows.append((value, n))
        while highs and highs[-1][0] <= value:
            highs.pop()
        highs.append((value, n))
        window = self.window
        while len(window) >= 2 and window[1][0] <= at - self.span:
            _, gone = window.popleft()
            if lows[0][1] == gone:
                lows.popleft()
            if highs[0][1] == gone:
                highs.popleft()
        return highs[0][0] - lows[0][0]


@EVALUATORS.register("rate_of_change")
class RateOfChangeEvaluator(_PerDevice):
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
        _push(window, reading.time, reading.value, rule.window)
        rate = _rate_per_min(window, rule.window)
        s = self.series_of(device.id, rule.raise_for, rule.clear_for)
        before = (s.debounce.state, s.severity)
        s.value = rate
        s.debounce.update(
            reading.time,
            breaching=rate is not None and rate >= rule.raise_per_min,
            clearing=rate is not None and rate < rule.clear_per_min,
        )

        def reason() -> str:
            shown = "n/a" if rate is None else f"{rate:.2f}"
            unit = self.units.get(rule.metric, "")
            return (
                f"{rule.metric} at {device.id} rising {shown} {unit}/min over"
                f" {_minutes(rule.window)} (raise >= {rule.raise_per_min:g},"
                f" clear < {rule.clear_per_min:g})"
            )

        return self.judged(reading, device, before, reason)


@EVALUATORS.register("flatline")
class FlatlineEvaluator(_PerDevice):
    rule: FlatlineRule

    def __init__(self, rule: Rule, city: City) -> None:
        assert isinstance(rule, FlatlineRule)
        super().__init__(rule, city)
        # Comparing with peers' spreads makes the verdict depend on other series.
        self.series_local = not rule.require_moving_peers
        self.metrics = frozenset({rule.metric})
        self.evidence_metric = rule.metric
        self.windows: dict[str, _Spread] = {}
        self.ranges: dict[str, float] = {}  # each device's spread over its latest window

    def on_reading(self, reading: Reading, device: Device) -> list[ConditionChange]:
        self.heard(reading)
        rule = self.rule
        window = self.windows.get(device.id)
        if window is None:
            window = self.windows[device.id] = _Spread(rule.for_)
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
                f" in {_minutes(rule.for_)}"
            )

        return self.judged(reading, device, before, reason)


@EVALUATORS.register("absence")
class AbsenceEvaluator(_PerDevice):
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
        reason = f"{device.id} reports again after {_minutes(silent)} of silence"
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
                f" {self.last_seen[device_id]:%Y-%m-%d %H:%M:%S}Z ({_minutes(self.rule.after)})"
            )
            out += self.settle_zone(deadline, self.devices[device_id], reason)
        return out


class _Probe:
    """A per-device condition on its latest reading (or its rise per minute)."""

    def __init__(self, cond: Condition, devices: dict[str, Device], kinds: set[str]) -> None:
        self.cond = cond
        self.compare = _OPS[cond.op]
        self.levels = {
            d.id: lv
            for d in devices.values()
            if d.kind in kinds and (lv := resolve_level(cond.value, d)) is not None
        }
        self.latest: dict[str, tuple[datetime, float]] = {}
        self.windows: dict[str, deque[tuple[datetime, float]]] = {}
        self.means: dict[str, _Mean] = {}

    def feed(self, reading: Reading) -> None:
        if reading.metric != self.cond.metric or reading.device_id not in self.levels:
            return
        if self.cond.of == "value":
            value = reading.value
            if self.cond.mean_over is not None:
                mean = self.means.setdefault(reading.device_id, _Mean(self.cond.mean_over))
                value = mean.add(reading.time, value)
            self.latest[reading.device_id] = (reading.time, value)
            return
        window = self.windows.setdefault(reading.device_id, deque())
        _push(window, reading.time, reading.value, self.cond.window)
        rate = _rate_per_min(window, self.cond.window)
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


class Rechecks:
    """One pending re-judgement time per key (zone, camera), earliest first: a heap
    with lazy deletion, so rescheduling a key is O(log n) and stale entries are skipped."""

    def __init__(self) -> None:
        self._heap: list[tuple[datetime, str]] = []
        self._at: dict[str, datetime] = {}

    def cancel(self, key: str) -> None:
        self._at.pop(key, None)

    def schedule(self, key: str, when: datetime) -> None:
        self._at[key] = when
        heapq.heappush(self._heap, (when, key))

    def next(self) -> datetime | None:
        while self._heap and self._at.get(self._heap[0][1]) != self._heap[0][0]:
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None

    def due(self, at: datetime) -> Iterator[tuple[datetime, str]]:
        """Each (time, key) due by `at`, removed as it is handed out."""
        while (nxt := self.next()) is not None and nxt <= at:
            when, key = heapq.heappop(self._heap)
            del self._at[key]
            yield when, key


class _PerZone(Evaluator):
    """Kinds judged on a whole zone: one hold machine per zone."""

    probes: list[_Probe]
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

    def _fresh(self, probe: _Probe, zone: str, now: datetime) -> bool:
        return any((e := probe.expiry(m)) is not None and e > now for m in self.zone_members[zone])

    def meeting(self, probe: _Probe, zone: str, now: datetime) -> list[tuple[str, float]]:
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


@EVALUATORS.register("zone_aggregate")
class ZoneAggregateEvaluator(_PerZone):
    rule: ZoneAggregateRule

    def __init__(self, rule: Rule, city: City) -> None:
        assert isinstance(rule, ZoneAggregateRule)
        super().__init__(rule, city)
        self.raise_for, self.clear_for = rule.raise_for, rule.clear_for
        self.probes = [_Probe(rule.condition, self.devices, set(rule.applies_to.kinds))]
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


@EVALUATORS.register("composite")
class CompositeEvaluator(_PerZone):
    rule: CompositeRule

    def __init__(self, rule: Rule, city: City) -> None:
        assert isinstance(rule, CompositeRule)
        super().__init__(rule, city)
        self.raise_for, self.clear_for = rule.raise_for, rule.clear_for
        self.probes = [
            _Probe(c, self.devices, set(c.kinds or rule.applies_to.kinds)) for c in rule.conditions
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


def _hold(delta: timedelta) -> str:
    return f"{delta.total_seconds():g} s" if delta < timedelta(minutes=1) else _minutes(delta)


@EVALUATORS.register("cross_check")
class CrossCheckEvaluator(Evaluator):
    """Each camera of the rule's kinds against the station its registry entry names.

    The pair's hold machine is judged at each reading of either side on both sides'
    latest readings, while both are younger than `max_age`; the station's level less
    the camera's `station_offset_cm`, clipped to what the gauge can show (0 .. its top
    mark), is the depth the camera should read. A pair whose side went silent cannot be
    judged: an open one turns no_data when the older reading expires, a closed one
    stays closed (the absence rule reports the silence). The zone (the camera's) takes
    its most alarming pair. A watermark kind: it compares two devices' series."""

    rule: CrossCheckRule

    def __init__(self, rule: Rule, city: City) -> None:
        assert isinstance(rule, CrossCheckRule)
        super().__init__(rule, city)
        self.pairs: dict[str, CameraDevice] = {}
        for d in list(self.devices.values()):
            if isinstance(d, CameraDevice) and d.station in city.devices:
                self.pairs[d.id] = d
            else:
                del self.devices[d.id]
        self.zone_members = {}
        for cid, cam in self.pairs.items():
            self.zone_members.setdefault(self.zone(cam), []).append(cid)
        self.cameras_of: dict[str, list[str]] = {}  # station -> its cameras
        for cid, cam in self.pairs.items():
            assert cam.station is not None
            self.cameras_of.setdefault(cam.station, []).append(cid)
            self.devices[cam.station] = city.devices[cam.station]
        self.metrics = frozenset({rule.metric, rule.against})
        self.latest: dict[str, tuple[datetime, float]] = {}  # device -> its side's latest
        self.debounces: dict[str, Debounce] = {}  # camera -> its pair's hold machine
        self.judged: dict[str, tuple[float, float, float]] = {}  # camera, station, expected
        self.rechecks = Rechecks()
        self.clear = rule.clear if rule.clear is not None else rule.tolerance

    def on_reading(self, reading: Reading, device: Device) -> list[ConditionChange]:
        rule = self.rule
        if device.id in self.pairs and reading.metric == rule.metric:
            cameras = [device.id]
        elif device.id in self.cameras_of and reading.metric == rule.against:
            cameras = self.cameras_of[device.id]
        else:
            return []
        seen = self.latest.get(device.id)
        if seen is not None and reading.time <= seen[0]:
            return []
        self.latest[device.id] = (reading.time, reading.value)
        out: list[ConditionChange] = []
        for cid in cameras:
            out += self._judge(cid, reading.time)
        return out

    def _fresh(self, device_id: str, now: datetime) -> tuple[datetime, float] | None:
        seen = self.latest.get(device_id)
        return seen if seen is not None and now - seen[0] < self.rule.max_age else None

    def _judge(self, camera_id: str, now: datetime) -> list[ConditionChange]:
        cam = self.pairs[camera_id]
        assert cam.station is not None
        debounce = self.debounces.get(camera_id)
        if debounce is None:
            debounce = self.debounces[camera_id] = Debounce(
                self.rule.raise_for, self.rule.clear_for
            )
        mine, theirs = self._fresh(camera_id, now), self._fresh(cam.station, now)
        self.rechecks.cancel(camera_id)
        if mine is None or theirs is None:
            if debounce.state in (S.CLEARED, S.NO_DATA):
                return []
            debounce.force(S.NO_DATA, now)
            silent = camera_id if mine is None else cam.station
            return self._settle(
                camera_id, now, f"no fresh reading from {silent}: cannot cross-check {camera_id}"
            )
        expected = theirs[1] - cam.station_offset_cm
        expected = max(
            0.0, expected if cam.gauge_top_cm is None else min(expected, cam.gauge_top_cm)
        )
        diff = abs(mine[1] - expected)
        self.judged[camera_id] = (mine[1], theirs[1], expected)
        state = debounce.update(
            now, breaching=diff > self.rule.tolerance, clearing=diff <= self.clear
        )
        if state not in (S.CLEARED, S.NO_DATA):
            self.rechecks.schedule(camera_id, min(mine[0], theirs[0]) + self.rule.max_age)
        return self._settle(camera_id, now, lambda: self._reason(camera_id, diff, state))

    def _reason(self, camera_id: str, diff: float, state: ConditionState) -> str:
        rule, cam = self.rule, self.pairs[camera_id]
        depth, level, expected = self.judged[camera_id]
        du, lu = self.units.get(rule.metric, ""), self.units.get(rule.against, "")
        if state in (S.CLEARED, S.RECOVERING):
            verdict = f"differ by {diff:.1f} {du} <= clear {self.clear:g} {du}"
        else:
            verdict = (
                f"differ by {diff:.1f} {du} > tolerance {rule.tolerance:g} {du}"
                f" (hold {_hold(rule.raise_for)})"
            )
        offset = f" - offset {cam.station_offset_cm:g}" if cam.station_offset_cm else ""
        return (
            f"{rule.metric} {depth:g} {du} at {camera_id} vs {rule.against} {level:g} {lu}"
            f" at {cam.station} (expected on the gauge: {level:g}{offset} -> {expected:g} {du}):"
            f" {verdict}"
        )

    def _settle(
        self, camera_id: str, at: datetime, reason: str | Callable[[], str]
    ) -> list[ConditionChange]:
        zone = self.zone(self.pairs[camera_id])
        members = [m for m in self.zone_members[zone] if m in self.debounces]
        state = worst([self.debounces[m].state for m in members])
        involved: list[str] = []
        for m in members:
            if self.debounces[m].state is not S.CLEARED:
                station = self.pairs[m].station
                involved += [m] if station is None else [m, station]
        value = None
        if self.debounces[camera_id].state not in (S.CLEARED, S.NO_DATA):
            value = self.judged[camera_id][0]
        tracker = self.tracker(zone, self.rule.metric)
        change = tracker.settle(
            at, state, self.rule.severity, devices=tuple(involved), value=value, reason=reason
        )
        return [] if change is None else [change]

    def next_deadline(self) -> datetime | None:
        return self.rechecks.next()

    def on_deadline(self, at: datetime) -> list[ConditionChange]:
        out: list[ConditionChange] = []
        for when, camera_id in self.rechecks.due(at):
            out += self._judge(camera_id, when)
        return out


def build_evaluator(rule: Rule, city: City) -> Evaluator:
    return EVALUATORS.get(rule.kind)(rule, city)
