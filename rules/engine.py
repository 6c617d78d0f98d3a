"""The rule engine: readings in, ConditionChanges out, on event time.

Two paths, chosen per rule kind (`Evaluator.series_local`):

- **Series-local kinds** (threshold incl. steps and holds, rate of change, flatline
  without peers: a device's verdict depends on its own series only) get a reading as
  soon as it arrives *in order for its series* (device, metric): its time is after
  the last one applied to that series. Devices report in real time, so a crew alert
  leaves as soon as the reading that completes a hold is in, not a lateness bound
  later. Each series is applied in event-time order, so a device's verdicts are those
  of the ordered stream whatever the order *between* devices.
- **Watermark kinds** (absence, zone aggregate, composite, flatline with moving peers,
  cross-check: they compare devices or judge silence) see every accepted reading in event-time order
  (time, device, metric) once the watermark (the latest event time seen across the
  fleet, ignoring the few devices most ahead, minus the allowed lateness) has passed it,
  so their results do not depend on arrival order at all. Deadlines (absence, no data)
  fire in event-time order among those readings, so an accelerated replay behaves
  exactly like real time.

Why not everything on the watermark (the first design): every alert then waited for
the lateness bound (2 min) by construction. Why not everything on arrival: k-of-n and
composite verdicts, and silence, would then depend on which device's message came
first. The split keeps the cross-device kinds exactly deterministic and makes the
per-device kinds (the fast alerts: water levels, rain) immediate. The backtest, which
has no alert to hurry, runs every kind on the watermark (`series_local=False`), so its
result never depends on the order of the stored readings.

The price, and what is defined for it:

- A reading older than its series' last applied reading but not older than the
  watermark (*reordered*: it was overtaken within the lateness bound) cannot be
  applied to series-local state retroactively. It goes to the watermark kinds only and
  is counted in `EngineStats.reordered`. So under reordering a series-local verdict can
  miss one reading (a hold may end a reading later, a one-reading peak may be lost);
  per series nothing else changes, and nothing is ever applied twice.
- A second copy of a reading (QoS 1 redelivery) is dropped whole: a copy of a buffered
  reading is a duplicate, a copy older than the watermark is late; a series-local
  evaluator never sees a time twice because it only takes times after the last applied.
  So duplicates never open an extra incident.
- Series-local changes of different devices of one zone key interleave in arrival
  order, so the zone key's change list (not its incidents) can differ from the ordered
  stream's when devices' messages overtake each other.
- A device's own silence deadline (`no_data_after`) fires when the watermark passes it
  or when the device's next reading shows it passed, whichever comes first; the verdict
  (no data at the deadline) is the same either way. Known limit: when the watermark
  fires it, the zone key is judged against the other devices' *current* verdicts, which
  are up to the lateness ahead of the deadline. Seen once: storm-karawaci over 120
  minutes, delivered twice and 10 % shuffled (seed 0), gives `heavy-rain` in
  kec-periuk a NO_DATA and a second ACTIVE where the ordered stream stays ACTIVE (the
  store keeps one incident: its workflow is still open); over the first 50 minutes
  eight seeds give identical incidents. A fix would judge zones on each device's
  verdict as of the deadline (a short verdict history per series).

A reading older than the watermark already processed is too late and is dropped from
both paths (counted).
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from pantau.city import City
from pantau.clock import Clock
from pantau.incidents import ConditionChange
from pantau.readings import Reading
from rules.kinds import ANY_METRIC, Evaluator, build_evaluator
from rules.rulespec import RuleSet

log = logging.getLogger(__name__)

FRONT_IGNORES_ONE_DEVICE_IN = 20  # the watermark ignores the 5 % of devices most ahead
FRONT_STEP = timedelta(seconds=1)
_SeriesKey = tuple[str, str, datetime]  # device, metric, event time: a reading's identity


@dataclass(slots=True)
class EngineStats:
    accepted: int = 0
    late: int = 0  # older than the processed watermark (includes late duplicates)
    duplicates: int = 0  # a second copy of a reading still in the buffer
    reordered: int = 0  # accepted, but overtaken in its series: watermark kinds only
    unknown_device: int = 0


class RuleEngine:
    def __init__(
        self, city: City, rules: RuleSet, clock: Clock, *, series_local: bool = True
    ) -> None:
        """`series_local=False`: every kind on the watermark, so the changes do not depend
        on arrival order at all (the backtest's choice: it has no alert to hurry)."""
        self._city = city
        self._series_local = series_local
        self._clock = clock
        self._lateness = rules.lateness
        self._evaluators: dict[str, Evaluator] = {
            r.id: build_evaluator(r, city) for r in rules.rules
        }
        self._index: dict[tuple[str, str], list[Evaluator]] = {}  # watermark kinds
        self._local: dict[tuple[str, str], list[Evaluator]] = {}  # series-local kinds
        self._reindex()
        self._applied: dict[tuple[str, str], datetime] = {}  # series -> last time applied
        self._buffer: list[tuple[datetime, str, str, Reading]] = []
        self._buffered: set[_SeriesKey] = set()
        self._latest: dict[str, datetime] = {}  # each device's latest event time
        self._front_at: datetime | None = None
        self._front_from: datetime | None = None  # the latest time when it was computed
        self._watermark: datetime | None = None  # everything before it is processed
        self._started = False  # evaluators know the engine's first event time
        self._due: dict[str, datetime] = {}  # rule id -> its evaluator's next deadline
        self.stats = EngineStats()

    @property
    def watermark(self) -> datetime | None:
        return self._watermark

    @property
    def rule_ids(self) -> tuple[str, ...]:
        return tuple(self._evaluators)

    def ingest(self, readings: Iterable[Reading]) -> list[ConditionChange]:
        """Series-local changes first (as the readings arrive), then what the watermark
        passed."""
        out: list[ConditionChange] = []
        moved = False
        for r in readings:
            if r.device_id not in self._city.devices:
                self.stats.unknown_device += 1
                continue
            if self._watermark is not None and r.time < self._watermark:
                self.stats.late += 1
                continue
            key = (r.device_id, r.metric, r.time)
            if key in self._buffered:
                self.stats.duplicates += 1
                continue
            self._buffered.add(key)
            heapq.heappush(self._buffer, (r.time, r.device_id, r.metric, r))
            self.stats.accepted += 1
            series = (r.device_id, r.metric)
            applied = self._applied.get(series)
            if applied is None or r.time > applied:
                self._applied[series] = r.time
                local = self._local.get(series)
                if local is not None:
                    out += self._apply_local(r, local)
            else:
                self.stats.reordered += 1
            latest = self._latest.get(r.device_id)
            if latest is None or r.time > latest:
                self._latest[r.device_id] = r.time
                # Recompute the front once per FRONT_STEP of event time, not per
                # reading: a front lagging by that step only holds readings back longer.
                if (
                    latest is None
                    or self._front_from is None
                    or r.time - self._front_from >= FRONT_STEP
                ):
                    moved = True
        if moved:
            self._front_at = self._front()
            self._front_from = max(self._latest.values())
        if self._front_at is None:
            return out
        return out + self.advance_watermark(self._front_at - self._lateness)

    def _apply_local(self, r: Reading, evaluators: list[Evaluator]) -> list[ConditionChange]:
        out: list[ConditionChange] = []
        device = self._city.devices[r.device_id]
        for ev in evaluators:
            out += ev.catch_up(r.device_id, r.time)
            out += ev.on_reading(r, device)
            self._note_deadline(ev)
        return out

    def _front(self) -> datetime:
        """The fleet's event-time front: the k-th latest device time, not the maximum.

        A device whose clock runs ahead (ingest accepts up to a few minutes) would
        otherwise drag the watermark forward and make everybody else's readings late;
        ignoring the top 5 % of devices bounds that. A small fleet uses the maximum.
        """
        k = 1 + len(self._latest) // FRONT_IGNORES_ONE_DEVICE_IN
        if k == 1:
            return max(self._latest.values())
        return heapq.nlargest(k, self._latest.values())[-1]

    def advance_watermark(self, to: datetime) -> list[ConditionChange]:
        """Process everything before `to`; the watermark never moves back."""
        if self._watermark is not None and to <= self._watermark:
            return []
        out: list[ConditionChange] = []
        if not self._started and not self._buffer:
            self._start(to)  # a fleet that never said anything still ages
        while self._buffer and self._buffer[0][0] < to:
            _, _, _, r = heapq.heappop(self._buffer)
            if not self._started:
                # The earliest reading that is not late: the same whatever the arrival
                # order, so absence baselines do not depend on it.
                self._start(r.time)
            self._buffered.discard((r.device_id, r.metric, r.time))
            out += self._fire_deadlines(before=r.time)
            device = self._city.devices[r.device_id]
            for key in ((r.device_id, r.metric), (r.device_id, ANY_METRIC)):
                for ev in self._index.get(key, ()):
                    out += ev.on_reading(r, device)
                    self._note_deadline(ev)
        out += self._fire_deadlines(before=to)
        self._watermark = to
        return out

    def _start(self, at: datetime) -> None:
        self._started = True
        for ev in self._evaluators.values():
            ev.start(at)
            self._note_deadline(ev)

    def _note_deadline(self, ev: Evaluator) -> None:
        due = ev.next_deadline()
        if due is None:
            self._due.pop(ev.rule.id, None)
        else:
            self._due[ev.rule.id] = due

    def tick(self) -> list[ConditionChange]:
        """Move the watermark with the injected clock (a silent fleet still ages).

        In a replay, give the engine the replay's clock; in service, the system clock.
        """
        return self.advance_watermark(self._clock.now() - self._lateness)

    def _fire_deadlines(self, before: datetime) -> list[ConditionChange]:
        # Each evaluator's next deadline is cached in `_due` (refreshed whenever it is
        # fed), so a reading costs one scan of a small dict, not a call per rule.
        out: list[ConditionChange] = []
        while self._due:
            at, rid = min((d, rid) for rid, d in self._due.items())
            if at >= before:
                return out
            ev = self._evaluators[rid]
            out += ev.on_deadline(at)
            self._note_deadline(ev)
        return out

    def reload(self, rules: RuleSet) -> list[ConditionChange]:
        """Swap the rule set: unchanged rules keep their state, changed ones start fresh.

        Open keys of removed or changed rules are CLEARED at the watermark so no
        incident stays open on a verdict nobody maintains any more.
        """
        out: list[ConditionChange] = []
        fresh: dict[str, Evaluator] = {}
        new_local: list[Evaluator] = []
        for rule in rules.rules:
            old = self._evaluators.get(rule.id)
            if old is not None and old.rule == rule:
                fresh[rule.id] = old
            else:
                fresh[rule.id] = ev = build_evaluator(rule, self._city)
                if self._started and self._watermark is not None:
                    ev.start(self._watermark)
                if ev.series_local and self._series_local:
                    new_local.append(ev)
        for rid, old in self._evaluators.items():
            if fresh.get(rid) is not old and self._watermark is not None:
                why = "changed" if rid in fresh else "removed"
                out += old.close(self._watermark, f"rule {rid} {why} in a reload")
        kept = sum(1 for rid, ev in fresh.items() if self._evaluators.get(rid) is ev)
        log.info("rules reloaded: %d rules, %d kept their state", len(fresh), kept)
        self._evaluators = fresh
        self._lateness = rules.lateness
        self._reindex()
        # A new series-local evaluator catches up on what is still buffered (already
        # applied to the old one), in event-time order, so it starts where the
        # watermark kinds start.
        if new_local:
            for _, device_id, metric, r in sorted(self._buffer, key=lambda b: b[:3]):
                device = self._city.devices[device_id]
                for ev in new_local:
                    if device_id in ev.devices and metric in ev.metrics:
                        out += ev.catch_up(device_id, r.time)
                        out += ev.on_reading(r, device)
        self._due = {}
        for ev in fresh.values():
            self._note_deadline(ev)
        return out

    def current(self) -> list[ConditionChange]:
        """The latest change of every open key (what a restarted store needs to see)."""
        return [c for ev in self._evaluators.values() for c in ev.current()]

    @classmethod
    def rebuild(
        cls,
        city: City,
        rules: RuleSet,
        clock: Clock,
        history: Iterable[Reading],
        until: datetime | None = None,
    ) -> tuple[RuleEngine, list[ConditionChange]]:
        """A restarted rules process: replay recent history, return the open verdicts.

        Re-emitted ACTIVE changes carry their episode's original `first_at`, so a store
        that already holds the incident recognises it instead of opening a second one.
        """
        engine = cls(city, rules, clock)
        # In event-time order, so every series is applied whole (InfluxDB answers
        # series by series).
        engine.ingest(sorted(history, key=lambda r: (r.time, r.device_id, r.metric)))
        if until is not None:
            engine.advance_watermark(until)
        return engine, engine.current()

    def _reindex(self) -> None:
        index: dict[tuple[str, str], list[Evaluator]] = {}
        local: dict[tuple[str, str], list[Evaluator]] = {}
        for ev in self._evaluators.values():
            target = local if ev.series_local and self._series_local else index
            for device_id in ev.devices:
                for metric in ev.metrics:
                    target.setdefault((device_id, metric), []).append(ev)
        self._index, self._local = index, local
