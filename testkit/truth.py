"""Ground truth of a scenario: the incidents a rule set must, may and must not raise.

The oracle of the rules tests. It is computed from what the simulator knows and the rule
engine cannot: every device's signal as a perfect instrument would report it (faults
still apply: a stuck sensor really repeats itself, a dropout really sends nothing), and
it is judged offline on whole series, with none of the engine's machinery (no watermark,
no buffering, no streaming state, no store).

Measurement noise makes a verdict close to a level a coin toss, so every judgement is
three-valued: SURE when the noise-free value is beyond the level by the metric's margin
(about four noise sigmas, `margin`), POSSIBLE when it is within the margin. A dedup key
(rule, zone, hazard) is *expected* when its condition surely holds for the rule's hold,
*possible* when it may, and *forbidden* otherwise. `GroundTruth.check` then asks of the
engine's incidents: each one expected or possible (precision), every expected one raised
(recall), its highest severity within the possible range, and expected incidents whose
onset windows do not overlap opened in the same order.

Camera rules: the fleet simulator plays the device registry only, and the oracle's city
is that registry, so rules on camera kinds (`cctv_flood`, `cctv_traffic`) watch no
device here and expect nothing; `cross_check` (a camera against its station) is skipped
outright for the same reason. The engine, given the same city, raises none of them
either. The camera rules are tested on hand-made timelines
(tests/unit/test_camera_rules.py) and end to end through the camera simulator and
vision (tests/integration/test_camera_incidents.py).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np

from pantau.city import City
from pantau.devices import Device
from pantau.incidents import DedupKey, Severity
from rules.rulespec import (
    AbsenceRule,
    CompositeRule,
    Condition,
    CrossCheckRule,
    FlatlineRule,
    RateOfChangeRule,
    Rule,
    RuleSet,
    ThresholdRule,
    ZoneAggregateRule,
    resolve_level,
)
from simulators.fleet import TIP_MM
from simulators.messages import FleetStream
from simulators.scenario import DELAYS, Scenario, StoreAndForward, Stuck

FloatArray = np.ndarray
RATE_MARGIN_PER_MIN = 0.25  # a rise per minute over >= 5 min of readings with 0.3 cm noise

# Noise margins for values read directly, in the metric's canonical unit (see the noise
# the fleet adds in simulators.fleet._signals). Booleans and states have none.
_ABSOLUTE = {
    "water_level": 2.0,  # sigma 0.3 (0.5 in pump sumps)
    "speed": 6.0,  # sigma 1.5 km/h
    "road_roughness": 0.6,  # sigma 0.15 m/km
    "pothole_index": 0.04,  # sigma 0.01
    "battery": 0.4,  # sigma 0.1 %
    "rssi": 10.0,  # sigma 2.5 dB
}
_RELATIVE = {"occupancy": 0.2, "flow": 0.12, "traffic_flow": 0.25}  # 5 %, 3 %, Poisson


def margin(metric: str, value: float, samples: int = 1) -> float:
    """How far noise can move `value` (a mean of `samples` readings) of `metric`."""
    if metric == "rainfall_rate":
        # Tipping bucket: tips per minute are Poisson with mean rain/60/TIP_MM, so one
        # reading's variance is rain * 60 * TIP_MM (mm/h)^2; a mean divides it by n.
        return 4.0 * math.sqrt(max(value, 1.0) * 60.0 * TIP_MM / samples) + 0.5
    if metric in _RELATIVE:
        return _RELATIVE[metric] * abs(value) + 1.0
    return _ABSOLUTE.get(metric, 0.0)


@dataclass(frozen=True, slots=True)
class Expectation:
    """What the truth says of one dedup key."""

    key: DedupKey
    sure: bool  # it must be raised; otherwise it may be
    earliest: datetime  # the earliest moment it can turn ACTIVE
    latest: datetime | None  # by when it is surely ACTIVE (sure keys only)
    severity: tuple[Severity, Severity]  # lowest and highest possible highest severity


@dataclass(frozen=True, slots=True)
class Observed:
    """One incident as the system under test raised it."""

    key: DedupKey
    opened_at: datetime  # event time of its first ACTIVE
    severity_max: Severity


@dataclass(slots=True)
class Verdict:
    missing: list[Expectation] = field(default_factory=list)  # sure but not raised
    unexpected: list[Observed] = field(default_factory=list)  # raised but forbidden
    wrong_severity: list[tuple[Observed, Expectation]] = field(default_factory=list)
    out_of_order: list[tuple[Observed, Observed]] = field(default_factory=list)
    raised: int = 0
    sure: int = 0

    @property
    def precision(self) -> float:
        return 1.0 if not self.raised else 1 - len(self.unexpected) / self.raised

    @property
    def recall(self) -> float:
        return 1.0 if not self.sure else 1 - len(self.missing) / self.sure

    @property
    def exact(self) -> bool:
        return not (self.missing or self.unexpected or self.wrong_severity or self.out_of_order)

    def summary(self) -> str:
        lines = [
            f"precision {self.precision:.1%}, recall {self.recall:.1%} "
            f"({self.raised} raised, {self.sure} expected)"
        ]
        lines += [f"  missing: {e.key} (active by {e.latest})" for e in self.missing]
        lines += [f"  unexpected: {o.key} at {o.opened_at}" for o in self.unexpected]
        lines += [
            f"  severity: {o.key} reached {o.severity_max.name}, truth {e.severity[0].name}"
            f"..{e.severity[1].name}"
            for o, e in self.wrong_severity
        ]
        lines += [
            f"  order: {b.key} at {b.opened_at} before {a.key} at {a.opened_at}"
            for a, b in self.out_of_order
        ]
        return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class GroundTruth:
    expectations: Mapping[DedupKey, Expectation]

    @property
    def expected(self) -> list[Expectation]:
        return sorted(
            (e for e in self.expectations.values() if e.sure),
            key=lambda e: (e.earliest, str(e.key)),
        )

    @property
    def possible(self) -> list[Expectation]:
        return [e for e in self.expectations.values() if not e.sure]

    def check(self, observed: Iterable[Observed]) -> Verdict:
        seen = {o.key: o for o in observed}
        v = Verdict(raised=len(seen), sure=len(self.expected))
        for o in seen.values():
            e = self.expectations.get(o.key)
            if e is None:
                v.unexpected.append(o)
            elif not e.severity[0] <= o.severity_max <= e.severity[1]:
                v.wrong_severity.append((o, e))
        v.missing = [e for e in self.expected if e.key not in seen]
        # Expected keys whose onset windows are disjoint must open in that order.
        for a in self.expected:
            for b in self.expected:
                if a.latest is not None and a.latest < b.earliest and a.key in seen:
                    oa, ob = seen[a.key], seen.get(b.key)
                    if ob is not None and not oa.opened_at < ob.opened_at:
                        v.out_of_order.append((oa, ob))
        return v


# --- series -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Series:
    t: FloatArray  # epoch seconds of each reading
    v: FloatArray


@dataclass(frozen=True, slots=True)
class _Judged:
    """A three-valued verdict per reading: surely / possibly breaching, staying."""

    t: FloatArray
    sure_breach: np.ndarray
    sure_stay: np.ndarray  # surely not clearing
    maybe_breach: np.ndarray
    maybe_stay: np.ndarray


@dataclass(frozen=True, slots=True)
class _Onset:
    earliest: float | None  # epoch seconds: the earliest it can turn ACTIVE
    latest: float | None  # by when it surely is ACTIVE
    sure_index: int | None = None  # first reading at which it surely is ACTIVE
    sure_until: int | None = None  # the sure stretch's last reading


def _onset(j: _Judged, hold_s: float, silence_s: float | None = None) -> _Onset:
    """When a debounce (breach held `hold_s` without clearing) can and must fire.

    A silence longer than `silence_s` (a rule's no_data_after) turns the condition
    no_data, so a hold never spans one.
    """
    n = len(j.t)
    gap = np.diff(j.t, prepend=j.t[0] if n else 0.0)
    quiet = gap > silence_s if silence_s is not None else np.zeros(n, dtype=bool)
    earliest = latest = None
    sure_index = sure_until = None
    for i in range(n):
        if earliest is None and j.maybe_breach[i]:
            k = i
            while k < n and (k == i or (j.maybe_stay[k] and not quiet[k])):
                if j.t[k] - j.t[i] >= hold_s:
                    earliest = float(j.t[k])
                    break
                k += 1
        if latest is None and j.sure_breach[i]:
            k = i
            while k < n and (k == i or (j.sure_stay[k] and not quiet[k])):
                if j.t[k] - j.t[i] >= hold_s:
                    latest, sure_index = float(j.t[k]), k
                    end = k
                    while end + 1 < n and j.sure_stay[end + 1] and not quiet[end + 1]:
                        end += 1
                    sure_until = end
                    break
                k += 1
        if earliest is not None and latest is not None:
            break
    return _Onset(earliest, latest, sure_index, sure_until)


def _rolling_mean(s: _Series, span_s: float) -> tuple[FloatArray, FloatArray]:
    """The engine's trailing mean over (t - span, t] and how many readings it holds."""
    lo = np.searchsorted(s.t, s.t - span_s, side="right")
    csum = np.concatenate([[0.0], np.cumsum(s.v)])
    idx = np.arange(len(s.t))
    n = idx + 1 - lo
    return (csum[idx + 1] - csum[lo]) / n, n.astype(np.float64)


def _rate(s: _Series, span_s: float) -> FloatArray:
    """Rise per minute between the reading at or before t - span and t (NaN: too short)."""
    out = np.full(len(s.t), np.nan)
    for k in range(len(s.t)):
        first = int(np.searchsorted(s.t, s.t[k] - span_s, side="right")) - 1
        first = max(first, 0)
        dt = s.t[k] - s.t[first]
        if k > first and dt >= span_s / 2:
            out[k] = (s.v[k] - s.v[first]) / (dt / 60.0)
    return out


def _values(s: _Series, metric: str, mean_over: timedelta | None) -> tuple[FloatArray, FloatArray]:
    """The judged value per reading and its noise margin."""
    if mean_over is None:
        x = s.v
        m = np.array([margin(metric, float(v)) for v in x])
    else:
        x, n = _rolling_mean(s, mean_over.total_seconds())
        m = np.array([margin(metric, float(v), int(k)) for v, k in zip(x, n, strict=True)])
    return x, m


def _compare(op: str, x: FloatArray, level: float, m: FloatArray) -> tuple[np.ndarray, np.ndarray]:
    """(surely, possibly) `x op level` given noise margins `m`; NaN is neither."""
    with np.errstate(invalid="ignore"):
        if op in (">", ">="):
            return x >= level + m if m.any() else _exact(op, x, level), x >= level - m
        if op in ("<", "<="):
            return x <= level - m if m.any() else _exact(op, x, level), x <= level + m
        exact = _exact(op, x, level)
        return exact, exact  # == and != are for states, which have no noise


def _hysteresis(
    t: FloatArray, x: FloatArray, m: FloatArray, breach: tuple[str, float], clear: tuple[str, float]
) -> _Judged:
    """A raise level and a separate clear level, judged with noise margins: a breach
    surely stays while the value is surely not clearing, and may stay while it may not."""
    sure_b, maybe_b = _compare(breach[0], x, breach[1], m)
    sure_c, maybe_c = _compare(clear[0], x, clear[1], m)
    return _Judged(t, sure_b, ~maybe_c, maybe_b, ~sure_c)


def _exact(op: str, x: FloatArray, level: float) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        out: np.ndarray = {
            ">": x > level,
            ">=": x >= level,
            "<": x < level,
            "<=": x <= level,
            "==": x == level,
            "!=": x != level,
        }[op]
    return out


# --- the rule kinds, judged offline ---------------------------------------------------


class _Oracle:
    def __init__(
        self, city: City, scenario: Scenario, rules: RuleSet, end: datetime, start: datetime | None
    ) -> None:
        self.city, self.scenario, self.rules = city, scenario, rules
        self.end = end.timestamp()
        series: dict[tuple[str, str], tuple[list[float], list[float]]] = defaultdict(
            lambda: ([], [])
        )
        heard: dict[str, list[float]] = defaultdict(list)
        stream = FleetStream(city, scenario, start=start, noisy=False)
        held = max(
            (
                f.every_s if isinstance(f, StoreAndForward) else f.end_s - f.start_s
                for f in scenario.faults
                if isinstance(f, DELAYS)
            ),
            default=0.0,
        )
        for msg in stream:
            when = msg.reading_time.timestamp()
            # What the devices measured before the end, however late it is delivered
            # (a logger's last batch leaves at the end or after it).
            if msg.taken_at.timestamp() >= self.end:
                if msg.sim_time.timestamp() >= self.end + held:
                    break
                continue
            if msg.metrics:
                heard[msg.device_id].append(when)
            for metric, value in zip(msg.metrics, msg.values, strict=True):
                ts, vs = series[(msg.device_id, metric)]
                ts.append(when)
                vs.append(value)
        self.start = min(ts[0] for ts, _ in series.values())
        self.series = {k: _Series(np.array(ts), np.array(vs)) for k, (ts, vs) in series.items()}
        self.heard = {k: np.array(v) for k, v in heard.items()}
        self.stuck = [f for f in stream.scenario.faults if isinstance(f, Stuck)]
        self.scenario_start = stream.scenario.start.timestamp()

    def devices(self, rule: Rule, kinds: Iterable[str] | None = None) -> list[Device]:
        wanted = set(kinds if kinds is not None else rule.applies_to.kinds)
        zones = set(rule.applies_to.zones)
        return [
            d
            for _, d in sorted(self.city.devices.items())
            if d.kind in wanted and (not zones or {d.kelurahan_id, d.kecamatan_id} & zones)
        ]

    def zone(self, rule: Rule, d: Device) -> str:
        return d.kecamatan_id if rule.zone_level == "kecamatan" else d.kelurahan_id

    def judge(self) -> GroundTruth:
        out: dict[DedupKey, Expectation] = {}
        for rule in self.rules.rules:
            if isinstance(rule, ThresholdRule | RateOfChangeRule):
                found = self.per_device(rule)
            elif isinstance(rule, ZoneAggregateRule | CompositeRule):
                found = self.per_zone(rule)
            elif isinstance(rule, AbsenceRule):
                found = self.absence(rule)
            elif isinstance(rule, FlatlineRule):
                found = self.flatline(rule)
            elif isinstance(rule, CrossCheckRule):
                found = {}  # cameras are not simulated by the fleet (module docstring)
            else:  # a kind the truth cannot judge would silently pass: refuse
                raise TypeError(f"ground truth has no judge for rule kind {rule.kind}")
            out.update(found)
        return GroundTruth(out)

    # Per-device kinds: each device's debounce; the zone opens with its first device.
    def per_device(self, rule: ThresholdRule | RateOfChangeRule) -> dict[DedupKey, Expectation]:
        by_zone: dict[str, list[tuple[_Onset, Severity, Severity]]] = defaultdict(list)
        base = rule.severity
        silence = rule.no_data_after.total_seconds() if rule.no_data_after else None
        for d in self.devices(rule):
            s = self.series.get((d.id, rule.metric))
            if s is None:
                continue
            if isinstance(rule, RateOfChangeRule):
                x = _rate(s, rule.window.total_seconds())
                m = np.full(len(x), RATE_MARGIN_PER_MIN)
                judged = _hysteresis(
                    s.t, x, m, (">=", rule.raise_per_min), ("<", rule.clear_per_min)
                )
                onset = _onset(judged, rule.raise_for.total_seconds(), silence)
                by_zone[self.zone(rule, d)].append((onset, base, base))
                continue
            raise_v, clear_v = (
                resolve_level(rule.raise_level, d),
                resolve_level(rule.clear_level, d),
            )
            if raise_v is None or clear_v is None:
                continue
            x, m = _values(s, rule.metric, rule.mean_over)
            up, down = ("<=", ">") if rule.direction == "below" else (">=", "<")
            onset = _onset(
                _hysteresis(s.t, x, m, (up, raise_v), (down, clear_v)),
                rule.raise_for.total_seconds(),
                silence,
            )
            lo = hi = base
            for step in rule.steps:
                at = resolve_level(step.at, d)
                if at is None:
                    continue
                sev = step.severity
                sure_s, maybe_s = _compare(up, x, at, m)
                if onset.earliest is not None and maybe_s.any():
                    hi = max(hi, sev)
                i, until = onset.sure_index, onset.sure_until
                if i is not None and until is not None and sure_s[i : until + 1].any():
                    lo = max(lo, sev)
            by_zone[self.zone(rule, d)].append((onset, lo, hi))
        return self._zones(rule, by_zone)

    def _zones(
        self, rule: Rule, by_zone: Mapping[str, list[tuple[_Onset, Severity, Severity]]]
    ) -> dict[DedupKey, Expectation]:
        out: dict[DedupKey, Expectation] = {}
        for zone, found in by_zone.items():
            maybe = [(o, lo, hi) for o, lo, hi in found if o.earliest is not None]
            if not maybe:
                continue
            sure = [(o, lo) for o, lo, _ in maybe if o.latest is not None]
            key = DedupKey(rule.id, zone, rule.hazard)
            out[key] = Expectation(
                key=key,
                sure=bool(sure),
                earliest=_utc(min(o.earliest for o, _, _ in maybe if o.earliest is not None)),
                latest=_utc(min(o.latest for o, _ in sure if o.latest is not None))
                if sure
                else None,
                severity=(
                    max((lo for _, lo in sure), default=Severity.INFO),
                    max(hi for *_, hi in maybe),
                ),
            )
        return out

    # Zone kinds: conditions on each device's latest reading, combined per zone.
    def _probe(self, cond: Condition, d: Device, at: FloatArray) -> tuple[np.ndarray, np.ndarray]:
        """(surely, possibly) meets `cond` at each time in `at` on its latest reading."""
        no = np.zeros(len(at), dtype=bool)
        s = self.series.get((d.id, cond.metric))
        level = resolve_level(cond.value, d)
        if s is None or level is None:
            return no, no
        if cond.of == "rate_per_min":
            x = _rate(s, cond.window.total_seconds())
            m = np.full(len(x), RATE_MARGIN_PER_MIN)
        else:
            x, m = _values(s, cond.metric, cond.mean_over)
        sure, maybe = _compare(cond.op, x, level, m)
        last = np.searchsorted(s.t, at, side="right") - 1
        fresh = (last >= 0) & (at - s.t[np.maximum(last, 0)] < cond.max_age.total_seconds())
        return fresh & sure[np.maximum(last, 0)], fresh & maybe[np.maximum(last, 0)]

    def per_zone(self, rule: ZoneAggregateRule | CompositeRule) -> dict[DedupKey, Expectation]:
        conds = [rule.condition] if isinstance(rule, ZoneAggregateRule) else list(rule.conditions)
        members: dict[str, list[Device]] = defaultdict(list)
        for d in self.devices(rule):
            members[self.zone(rule, d)].append(d)
        found: dict[str, list[tuple[_Onset, Severity, Severity]]] = {}
        sev = rule.severity
        for zone, devs in members.items():
            # The engine judges a zone at each of its readings and when one grows stale.
            times: set[float] = set()
            for c in conds:
                for d in devs:
                    s = self.series.get((d.id, c.metric))
                    if s is not None:
                        times.update(s.t.tolist())
                        times.update((s.t + c.max_age.total_seconds()).tolist())
            at = np.array(sorted(t for t in times if t < self.end))
            if not len(at):
                continue
            per: list[list[tuple[np.ndarray, np.ndarray]]] = []  # condition -> device
            for c in conds:
                kinds = set(c.kinds or rule.applies_to.kinds)
                per.append([self._probe(c, d, at) for d in devs if d.kind in kinds])
            if isinstance(rule, ZoneAggregateRule):
                sure_n = sum((s.astype(int) for s, _ in per[0]), np.zeros(len(at), dtype=int))
                maybe_n = sum((m.astype(int) for _, m in per[0]), np.zeros(len(at), dtype=int))
                sure, maybe = sure_n >= rule.k, maybe_n >= rule.k
            elif rule.same_device:
                combine = np.logical_and if rule.op == "and" else np.logical_or
                sure = maybe = np.zeros(len(at), dtype=bool)
                for i in range(len(per[0])):
                    s_i = combine.reduce([p[i][0] for p in per])
                    m_i = combine.reduce([p[i][1] for p in per])
                    sure, maybe = sure | s_i, maybe | m_i
            else:
                anys = [
                    (
                        np.logical_or.reduce([s for s, _ in p]) if p else np.zeros(len(at), bool),
                        np.logical_or.reduce([m for _, m in p]) if p else np.zeros(len(at), bool),
                    )
                    for p in per
                ]
                combine = np.logical_and if rule.op == "and" else np.logical_or
                sure = combine.reduce([s for s, _ in anys])
                maybe = combine.reduce([m for _, m in anys])
            onset = _onset(_Judged(at, sure, sure, maybe, maybe), rule.raise_for.total_seconds())
            found[zone] = [(onset, sev, sev)]
        return self._zones(rule, found)

    def absence(self, rule: AbsenceRule) -> dict[DedupKey, Expectation]:
        after = rule.after.total_seconds()
        found: dict[str, list[tuple[_Onset, Severity, Severity]]] = defaultdict(list)
        sev = rule.severity
        for d in self.devices(rule):
            if rule.metric is None:
                heard = self.heard.get(d.id, np.zeros(0))
            else:
                s = self.series.get((d.id, rule.metric))
                heard = s.t if s is not None else np.zeros(0)
            marks = np.concatenate([[self.start], heard, [self.end]])
            gaps = np.diff(marks)
            silent = np.flatnonzero(gaps > after)  # a reading exactly at the deadline saves it
            if len(silent):
                when = float(marks[silent[0]] + after)
                found[self.zone(rule, d)].append((_Onset(when, when), sev, sev))
        return self._zones(rule, found)

    def flatline(self, rule: FlatlineRule) -> dict[DedupKey, Expectation]:
        """Only a stuck fault flattens a noisy instrument; judged from the fault windows."""
        interval = {k: float(v.report_every_s) for k, v in self.city.catalogue.kinds.items()}
        devices = {d.id: d for d in self.devices(rule)}
        found: dict[str, list[tuple[_Onset, Severity, Severity]]] = defaultdict(list)
        sev = rule.severity
        for f in self.stuck:
            if f.metrics is not None and rule.metric not in f.metrics:
                continue
            for device_id in sorted(f.devices & devices.keys()):
                d = devices[device_id]
                s = self.series.get((device_id, rule.metric))
                if s is None:
                    continue
                zone = self.zone(rule, d)
                peers = [p for p in devices.values() if self.zone(rule, p) == zone and p.id != d.id]
                if rule.require_moving_peers and not peers:
                    continue
                inside = s.t[
                    (s.t >= self.scenario_start + f.start_s) & (s.t < self.scenario_start + f.end_s)
                ]
                if not len(inside):
                    continue
                frozen = inside[-1] - inside[0]  # from the first frozen reading
                need, step = rule.for_.total_seconds(), interval[d.kind]
                if frozen >= need - step:
                    earliest = float(inside[0] + need)
                    latest = float(inside[0] + need + step) if frozen >= need + step else None
                    found[zone].append((_Onset(earliest, latest), sev, sev))
        return self._zones(rule, found)


def _utc(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def ground_truth(
    city: City, scenario: Scenario, rules: RuleSet, end: datetime, start: datetime | None = None
) -> GroundTruth:
    """What `rules` must and may raise on `scenario` (moved to `start`) played until `end`."""
    return _Oracle(city, scenario, rules, end, start).judge()
