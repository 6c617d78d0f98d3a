"""The rule engine: readings in, ConditionChanges out, on event time, per source.

Why (issue 18): the engine used to run on one watermark, the fleet's latest event time
less a fixed lateness (2 min), and dropped every reading older than it. A GSM logger
uploading every 10 minutes, a gateway delivering its backlog after an outage, a device
whose clock runs slow: their valid readings were stored and never judged (missed
floods), and their silence was judged by the city's clock (false "sensor offline"). In
an accelerated replay 2 minutes of device time are a fraction of a second, so a busy
machine lost readings too (the demo raised 164 incidents instead of 126 once).

**Sources and kecamatans.** Event time advances per *source*: a device, or the gateway
the registry says it reports through (`gateway`). Rule state never crosses a kecamatan
(zones are kelurahan or kecamatan, flatline peers share a zone, a cross-check pair lives
in its camera's kecamatan), so every rule has one instance per kecamatan (a
*partition*), and each kecamatan has its own watermark: the progress (latest event
time) of its slowest *active* source, less `lateness` (reordering within one source).
One slow logger holds back only its own kecamatan's watermark kinds, by at most its
upload interval, never the city's, and never any series-local alert.

**Idleness.** A source is active from its first reading until it has been silent (on the
engine's clock, checked in `tick`) for its slowest device's report interval or declared
upload interval (`uploads_every_s`) plus `idle_after`; then it stops holding its
kecamatan back (as Flink and Beam mark idle inputs) and `source_idle` is reported (the
service logs it and counts it); its next reading makes it active again (`source_back`).
A kecamatan whose every source is silent, with more than one device behind them, is an
uplink outage, not every sensor dead: it follows the clock `outage_grace` (45 min) late,
so a gateway's backlog delivered within that is judged exactly and nobody is declared
offline; a lone silent device follows the clock at once (`sensor-offline` as before). A
kecamatan nobody has spoken in yet follows the clock (a silent fleet still ages).
Without a clock that moves (a replay as fast as possible, a backtest, the tests), no
source is ever idle: every kecamatan waits for all its sources, and the result is that
of the ordered stream, whatever the speed and the load.

**Two paths**, chosen per rule kind (`Evaluator.series_local`):

- **Series-local kinds** (threshold incl. steps and holds, rate of change, flatline
  without peers: a device's verdict depends on its own series only) get a reading as
  soon as it arrives *in order for its series* (device, metric), however late it is for
  the kecamatan: a crew alert leaves as soon as the reading that completes a hold is in,
  and a logger's batch or a gateway's backlog completes its holds on arrival (the
  change's `at` is the device time; the service records the detection delay).
  `take` returns these changes; the service stores and publishes them before the
  watermark kinds' work (`settle`, bounded per turn), so alerts never queue behind a
  kecamatan catching up.
- **Watermark kinds** (absence, zone aggregate, composite, flatline with moving peers,
  cross-check: they compare devices or judge silence) see every reading of their
  kecamatan in event-time order (time, device, metric) once its watermark has passed
  it, so their results do not depend on arrival order. Deadlines (absence, no data)
  fire in event-time order among those readings, so a device's silence is judged
  against its own source's progress: a logger between uploads or a gateway in an outage
  holds its kecamatan instead of being declared silent.

Why not everything on the watermark: every alert would wait for the slowest source.
Why not everything on arrival: k-of-n and composite verdicts, and silence, would depend
on which device's message came first. The backtest, which has no alert to hurry, runs
every kind on the watermark (`series_local=False`).

Nothing is dropped silently:

- A reading behind its kecamatan's watermark but after its series' last judged
  reading (*late*: its source was idle and came back with a backlog, or its kecamatan
  followed the clock) is fed to the watermark kinds at once, against their current
  state, and counted (`EngineStats.late`). Exact for absence (it proves the device
  alive); for k-of-n and composites it is judged at its time but on the others' state
  of now. This is the price of idleness, and only a clock that moves makes it happen.
- A reading not after its series' last judged reading, behind the watermark (*stale*: a
  redelivered copy, or a reading overtaken in its own series by more than the
  lateness) cannot be applied in order by anything: counted and reported (`stale`).
  A second copy still buffered is a duplicate, dropped whole.
- A reading older than the newest event time by more than `horizon` (24 h) is past any
  rule's state: counted and reported (`too_old`), not judged.

Reports (`drain_quality`) become `data_quality` points in InfluxDB (rules.service).

Known limits: docs/rules.md, "The engine".
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pantau.city import City
from pantau.clock import Clock
from pantau.devices import Device
from pantau.incidents import ConditionChange
from pantau.readings import Reading
from rules.kinds import ANY_METRIC, Evaluator, build_evaluator
from rules.rulespec import Rule, RuleSet

log = logging.getLogger(__name__)

_SeriesKey = tuple[str, str, datetime]  # device, metric, event time: a reading's identity
_Series = tuple[str, str]


@dataclass(slots=True)
class EngineStats:
    accepted: int = 0  # taken by at least one path
    duplicates: int = 0  # a second copy of a reading still buffered
    # Behind its kecamatan's watermark and not after its series' last judged reading:
    # a redelivered copy, or a reading overtaken in its own series by more than the
    # lateness. Nothing can apply it in order; counted, and reported as data quality.
    stale: int = 0
    late: int = 0  # behind its kecamatan's watermark, new for its series: judged on arrival
    too_old: int = 0  # beyond the horizon: reported, not judged
    reordered: int = 0  # accepted, but overtaken in its series: watermark kinds only
    unknown_device: int = 0


@dataclass(frozen=True, slots=True)
class DataQuality:
    """Something about the input the engine reports instead of judging silently."""

    kind: str  # too_old | stale | source_idle | source_back
    subject: str  # a device id (readings) or a source id (a device or its gateway)
    at: datetime  # event time: the reading's, or the source's progress
    detail: str


@dataclass(eq=False, slots=True)
class _Source:
    """A device, or the gateway it reports through: event time advances per source."""

    id: str
    allowance: timedelta  # silent longer than this (wall clock): idle
    progress: datetime | None = None  # its latest event time
    heard: datetime | None = None  # wall clock of its latest reading
    active: bool = False  # heard from and not idle: holds its kecamatans back
    devices: int = 0  # behind it (more than one: a gateway)
    partitions: list[_Partition] = field(default_factory=list)


@dataclass(eq=False, slots=True)
class _Partition:
    """One kecamatan: every rule's instance for its devices, on its own event time.

    Rule state never crosses a kecamatan (zones are kelurahan or kecamatan; flatline
    peers share the zone; a cross-check pair lives in its camera's kecamatan), so each
    partition may advance at the pace of its own sources.
    """

    id: str
    written: dict[str, Rule] = field(default_factory=dict)  # rule id -> as written
    evaluators: dict[str, Evaluator] = field(default_factory=dict)  # rule id -> instance
    index: dict[_Series, list[Evaluator]] = field(default_factory=dict)  # watermark kinds
    sources: list[_Source] = field(default_factory=list)
    buffer: list[tuple[datetime, str, str, Reading]] = field(default_factory=list)
    buffered: set[_SeriesKey] = field(default_factory=set)
    judged: dict[_Series, datetime] = field(default_factory=dict)  # last fed to the index
    watermark: datetime | None = None  # everything before it is processed
    started: bool = False  # evaluators know the partition's first event time
    due: dict[str, datetime] = field(default_factory=dict)  # rule id -> next deadline
    floor: _Source | None = None  # the active source furthest behind
    target: datetime | None = None  # where the watermark is going (settle moves it)


def _within(rule: Rule, kecamatan: str, parent: dict[str, str | None]) -> Rule | None:
    """The rule limited to one kecamatan (None: it watches nothing there)."""
    zones = rule.applies_to.zones
    if not zones or kecamatan in zones:
        mine: tuple[str, ...] = (kecamatan,)
    else:
        mine = tuple(z for z in zones if parent.get(z) == kecamatan)
        if not mine:
            return None
    scope = rule.applies_to.model_copy(update={"zones": mine})
    return rule.model_copy(update={"applies_to": scope})


class RuleEngine:
    def __init__(
        self,
        city: City,
        rules: RuleSet,
        clock: Clock,
        *,
        series_local: bool = True,
        kecamatan: Collection[str] | None = None,
    ) -> None:
        """`series_local=False`: every kind on the watermark, so the changes do not depend
        on arrival order (the backtest's: no alert to hurry). `kecamatan`: only these
        (a rules replica's partitions); None: the whole city."""
        self._city = city
        self._series_local = series_local
        self._clock = clock
        self._settings = rules
        self._parent = {z.id: z.parent_id for z in city.zones.kelurahan}
        mine = [z.id for z in city.zones.kecamatan if kecamatan is None or z.id in kecamatan]
        self._partitions = {k: _Partition(k) for k in mine}
        self._sources: dict[str, _Source] = {}
        self._source_of: dict[str, _Source] = {}
        self._routes: dict[str, list[_Partition]] = {}  # device -> partitions watching it
        self._local: dict[_Series, list[tuple[_Partition, Evaluator]]] = {}
        self._applied: dict[_Series, datetime] = {}  # series -> last time applied locally
        self._front: datetime | None = None  # the newest event time seen
        self._quality: list[DataQuality] = []
        self._pending: dict[str, _Partition] = {}  # partitions with a target to reach
        self.stats = EngineStats()
        for rule in rules.rules:
            for p in self._partitions.values():
                self._place(p, rule)
        self._reindex()

    # --- what the service sees -------------------------------------------------------
    @property
    def watermark(self) -> datetime | None:
        """Everything before it is processed in every kecamatan (the slowest one's)."""
        marks = [p.watermark for p in self._partitions.values() if p.watermark is not None]
        return min(marks, default=None)

    @property
    def rule_ids(self) -> tuple[str, ...]:
        return tuple(r.id for r in self._settings.rules)

    def device_ids(self) -> set[str]:
        return set(self._routes)  # every device some rule of these partitions watches

    def sources_idle(self) -> int:
        return sum(1 for s in self._sources.values() if s.heard is not None and not s.active)

    def drain_quality(self) -> list[DataQuality]:
        """What was reported since the last call (the service writes it to InfluxDB)."""
        out, self._quality = self._quality, []
        return out

    # --- readings --------------------------------------------------------------------
    def ingest(self, readings: Iterable[Reading]) -> list[ConditionChange]:
        """Series-local changes first (as the readings arrive), then what the kecamatans'
        watermarks passed."""
        return self.take(readings) + self.settle()

    def take(self, readings: Iterable[Reading]) -> list[ConditionChange]:
        """The readings' series-local changes (crew alerts: publish them first); the
        watermark kinds' work waits for `settle`."""
        out: list[ConditionChange] = []
        touched: dict[str, _Partition] = {}
        heard_at = self._clock.now()
        horizon = self._settings.horizon
        for r in readings:
            device = self._city.devices.get(r.device_id)
            if device is None:
                self.stats.unknown_device += 1
                continue
            if self._front is not None and r.time < self._front - horizon:
                self.stats.too_old += 1
                self._report("too_old", r.device_id, r.time, f"{r.metric}: beyond the horizon")
                continue
            routes = self._routes.get(r.device_id, ())
            key = (r.device_id, r.metric, r.time)
            for p in routes:  # a loop, not any(): this runs for every reading
                if key in p.buffered:
                    break
            else:
                p = None
            if p is not None:
                self.stats.duplicates += 1
                continue
            series = (r.device_id, r.metric)
            taken = late = False
            for p in routes:
                if p.watermark is None or r.time >= p.watermark:
                    p.buffered.add(key)
                    heapq.heappush(p.buffer, (r.time, r.device_id, r.metric, r))
                    taken = True
                else:
                    last = p.judged.get(series)
                    if last is None or r.time > last:
                        # Behind this kecamatan (its source was idle, or held back):
                        # judged now, against the current state, never dropped.
                        out += self._feed(p, r, device)
                        taken = late = True
            applied = self._applied.get(series)
            if applied is None or r.time > applied:
                self._applied[series] = r.time
                for p, ev in self._local.get(series, ()):
                    out += ev.catch_up(r.device_id, r.time)
                    out += ev.on_reading(r, device)
                    self._note_deadline(p, ev)
                taken = True
            elif taken:
                self.stats.reordered += 1
            if not taken:
                self.stats.stale += 1
                self._report("stale", r.device_id, r.time, f"{r.metric}: already judged past it")
                continue
            self.stats.accepted += 1
            self.stats.late += late
            self._heard(r, heard_at, touched)
        for p in touched.values():
            self._follow(p)
        return out

    def _heard(self, r: Reading, at: datetime, touched: dict[str, _Partition]) -> None:
        src = self._source_of.get(r.device_id)
        if src is None:
            return
        if self._front is None or r.time > self._front:
            self._front = r.time
        src.heard = at
        if not src.active:
            src.active = True
            if src.progress is not None:
                self._report("source_back", src.id, r.time, f"heard again at {r.time}")
            for p in src.partitions:
                touched[p.id] = p
        if src.progress is None or r.time > src.progress:
            src.progress = r.time
            for p in src.partitions:
                if p.floor is None or p.floor is src:
                    touched[p.id] = p

    def _follow(self, p: _Partition) -> None:
        """Advance a kecamatan to its slowest active source, less the lateness."""
        floor: _Source | None = None
        for s in p.sources:
            if (
                s.active
                and s.progress is not None
                and (floor is None or floor.progress is None or s.progress < floor.progress)
            ):
                floor = s
        p.floor = floor
        if floor is not None and floor.progress is not None:
            self._aim(p, floor.progress - self._settings.lateness)

    def _aim(self, p: _Partition, to: datetime) -> None:
        if (p.watermark is None or to > p.watermark) and (p.target is None or to > p.target):
            p.target = to
            self._pending[p.id] = p

    def settle(self, budget: int | None = None) -> list[ConditionChange]:
        """Move the kecamatans' watermarks towards their targets, feeding at most about
        `budget` buffered readings to the watermark kinds (None: all): a kecamatan
        released by an idle source may hold minutes of readings, and the crew alerts of
        the next batch should not wait for all of them."""
        out: list[ConditionChange] = []
        left = [budget]
        for p in list(self._pending.values()):
            if p.target is not None:
                out += self._advance(p, p.target, left)
            if p.target is None:
                del self._pending[p.id]
        return out

    def _feed(self, p: _Partition, r: Reading, device: Device) -> list[ConditionChange]:
        out: list[ConditionChange] = []
        for key in ((r.device_id, r.metric), (r.device_id, ANY_METRIC)):
            for ev in p.index.get(key, ()):
                out += ev.on_reading(r, device)
                self._note_deadline(p, ev)
        p.judged[(r.device_id, r.metric)] = r.time
        return out

    def _report(self, kind: str, subject: str, at: datetime, detail: str) -> None:
        self._quality.append(DataQuality(kind, subject, at, detail))

    # --- event time ------------------------------------------------------------------
    def advance_watermark(self, to: datetime) -> list[ConditionChange]:
        """Process everything before `to` in every kecamatan (a flush: the end of a
        replay, a backtest); a watermark never moves back."""
        for p in self._partitions.values():
            self._aim(p, to)
        return self.settle()

    def tick(self, budget: int | None = None) -> list[ConditionChange]:
        """Move event time with the injected clock: sources silent past their allowance
        stop holding their kecamatan back; a kecamatan nobody has spoken in yet follows
        the clock (a silent fleet still ages); one whose every source went silent follows
        it `outage_grace` later (a gateway outage: its backlog may still come).

        In a replay, give the engine the replay's clock; in service, the system clock.
        """
        now = self._clock.now()
        for s in self._sources.values():
            if s.active and s.heard is not None and now - s.heard > s.allowance:
                s.active = False
                self._report("source_idle", s.id, s.progress or now, f"silent since {s.heard}")
        lateness = self._settings.lateness
        for p in self._partitions.values():
            self._follow(p)
            if p.floor is None:
                # Every source silent at once, and more than one device behind them:
                # an uplink outage (its backlog may come), not every sensor dead.
                heard = any(s.heard is not None for s in p.sources)
                shared = sum(s.devices for s in p.sources) > 1
                grace = self._settings.outage_grace if heard and shared else timedelta(0)
                self._aim(p, now - lateness - grace)
        return self.settle(budget)

    def _advance(
        self, p: _Partition, to: datetime, left: list[int | None]
    ) -> list[ConditionChange]:
        """Process p's buffer up to `to` (its target is met), or until `left[0]` readings
        are spent (the watermark stops at the last one processed, the target stays)."""
        if p.watermark is not None and to <= p.watermark:
            p.target = None
            return []
        out: list[ConditionChange] = []
        if not p.started and not p.buffer:
            self._start(p, to)  # a kecamatan that never said anything still ages
        while p.buffer and p.buffer[0][0] < to:
            if left[0] is not None:
                if left[0] <= 0:
                    return out
                left[0] -= 1
            _, _, _, r = heapq.heappop(p.buffer)
            p.watermark = r.time
            if not p.started:
                # The earliest reading that is not late: the same whatever the arrival
                # order, so absence baselines do not depend on it.
                self._start(p, r.time)
            p.buffered.discard((r.device_id, r.metric, r.time))
            out += self._fire_deadlines(p, before=r.time)
            last = p.judged.get((r.device_id, r.metric))
            if last is None or r.time > last:
                out += self._feed(p, r, self._city.devices[r.device_id])
        out += self._fire_deadlines(p, before=to)
        p.watermark, p.target = to, None
        return out

    def _start(self, p: _Partition, at: datetime) -> None:
        p.started = True
        for ev in p.evaluators.values():
            ev.start(at)
            self._note_deadline(p, ev)

    def _note_deadline(self, p: _Partition, ev: Evaluator) -> None:
        due = ev.next_deadline()
        if due is None:
            p.due.pop(ev.rule.id, None)
        else:
            p.due[ev.rule.id] = due

    def _fire_deadlines(self, p: _Partition, before: datetime) -> list[ConditionChange]:
        # Next deadlines are cached in `due` (refreshed on feeding): one scan per reading.
        out: list[ConditionChange] = []
        while p.due:
            at, rid = min((d, rid) for rid, d in p.due.items())
            if at >= before:
                return out
            ev = p.evaluators[rid]
            out += ev.on_deadline(at)
            self._note_deadline(p, ev)
        return out

    # --- rules -----------------------------------------------------------------------
    def _place(self, p: _Partition, rule: Rule) -> Evaluator | None:
        scoped = _within(rule, p.id, self._parent)
        if scoped is None:
            return None
        ev = build_evaluator(scoped, self._city)
        if not ev.devices:
            return None
        p.written[rule.id] = rule
        p.evaluators[rule.id] = ev
        return ev

    def reload(self, rules: RuleSet) -> list[ConditionChange]:
        """Swap the rule set: unchanged rules keep their state, changed ones start fresh.

        Open keys of removed or changed rules are CLEARED at their kecamatan's watermark
        so no incident stays open on a verdict nobody maintains any more.
        """
        out: list[ConditionChange] = []
        fresh_local: list[tuple[_Partition, Evaluator]] = []
        kept = 0
        wanted = {r.id: r for r in rules.rules}
        for p in self._partitions.values():
            old_written, old_evs = p.written, p.evaluators
            p.written, p.evaluators = {}, {}
            for rule in rules.rules:
                old = old_evs.get(rule.id)
                if old is not None and old_written[rule.id] == rule:
                    p.written[rule.id], p.evaluators[rule.id] = rule, old
                    kept += 1
                    continue
                ev = self._place(p, rule)
                if ev is None:
                    continue
                if p.started and p.watermark is not None:
                    ev.start(p.watermark)
                if ev.series_local and self._series_local:
                    fresh_local.append((p, ev))
            for rid, old in old_evs.items():
                if p.evaluators.get(rid) is not old and p.watermark is not None:
                    why = "changed" if rid in wanted else "removed"
                    out += old.close(p.watermark, f"rule {rid} {why} in a reload")
        log.info("rules reloaded: %d rules, %d instances kept their state", len(wanted), kept)
        self._settings = rules
        self._reindex()
        # A new series-local evaluator catches up on what is still buffered (already
        # applied to the old one), in event-time order, so it starts where the
        # watermark kinds start.
        for p, ev in fresh_local:
            for _, device_id, metric, r in sorted(p.buffer, key=lambda b: b[:3]):
                if device_id in ev.devices and metric in ev.metrics:
                    out += ev.catch_up(device_id, r.time)
                    out += ev.on_reading(r, self._city.devices[device_id])
        for p in self._partitions.values():
            p.due = {}
            for ev in p.evaluators.values():
                self._note_deadline(p, ev)
        return out

    def current(self) -> list[ConditionChange]:
        """The latest change of every open key (what a restarted store needs to see)."""
        return [
            c
            for p in self._partitions.values()
            for ev in p.evaluators.values()
            for c in ev.current()
        ]

    @classmethod
    def rebuild(
        cls,
        city: City,
        rules: RuleSet,
        clock: Clock,
        history: Iterable[Reading],
        until: datetime | None = None,
        *,
        kecamatan: Collection[str] | None = None,
    ) -> tuple[RuleEngine, list[ConditionChange]]:
        """A restarted rules process: replay recent history, return the open verdicts.

        Re-emitted ACTIVE changes carry their episode's original `first_at`, so a store
        that already holds the incident recognises it instead of opening a second one.
        """
        engine = cls(city, rules, clock, kecamatan=kecamatan)
        # In event-time order: every series applied whole (InfluxDB answers by series).
        engine.ingest(sorted(history, key=lambda r: (r.time, r.device_id, r.metric)))
        if until is not None:
            engine.advance_watermark(until)
        return engine, engine.current()

    def _reindex(self) -> None:
        """Indexes, routes and sources from the partitions' evaluators."""
        catalogue = self._city.catalogue.kinds
        idle = self._settings.idle_after
        self._local = {}
        self._routes = {}
        members: dict[str, dict[str, _Partition]] = {}  # source id -> its partitions
        for p in self._partitions.values():
            p.index = {}
            for ev in p.evaluators.values():
                local = ev.series_local and self._series_local
                for device_id in ev.devices:
                    self._routes.setdefault(device_id, [])
                    if p not in self._routes[device_id]:
                        self._routes[device_id].append(p)
                    for metric in ev.metrics:
                        if local:
                            self._local.setdefault((device_id, metric), []).append((p, ev))
                        else:
                            p.index.setdefault((device_id, metric), []).append(ev)
        for src in self._sources.values():
            src.devices, src.allowance = 0, idle
        for device_id, routes in self._routes.items():
            device = self._city.devices[device_id]
            sid = device.gateway or device.id
            if sid not in self._sources:
                self._sources[sid] = _Source(sid, idle)
            src = self._sources[sid]
            kind = catalogue.get(device.kind)
            every = max(
                kind.report_every_s if kind is not None else 0.0, device.uploads_every_s or 0.0
            )
            # A source is idle once silent past its slowest device's interval + idle_after.
            src.allowance = max(src.allowance, idle + timedelta(seconds=every))
            src.devices += 1
            self._source_of[device_id] = src
            for p in routes:
                members.setdefault(sid, {})[p.id] = p
        for p in self._partitions.values():
            p.sources, p.floor = [], None
        for sid, parts in members.items():
            src = self._sources[sid]
            src.partitions = list(parts.values())
            for p in src.partitions:
                p.sources.append(src)
