"""`pantau rules backtest`: the incidents a rule file WOULD have raised over stored data.

The core (`backtest`) is pure: readings in event-time order go through a fresh
RuleEngine on a replay clock, the watermark is advanced to `until`, and the
ConditionChanges become episodes, one per dedup key from ACTIVE to CLEARED. An episode
is what the incident store would have opened: PENDING that never held is no incident,
and NO_DATA leaves it open (the store keeps the incident too). The command pages the
readings out of InfluxDB an hour at a time (`rules.history.iter_readings`), and the
cameras' analyses at the rules' rate (`rules.cameras.iter_camera_history`), so the
camera rules are replayed too.
"""

from __future__ import annotations

import argparse
import heapq
import re
import sys
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import TextIO

from pantau.cameras import Camera, load_cameras
from pantau.city import City, load_city
from pantau.clock import Clock, ManualClock, SystemClock
from pantau.errors import ConfigError, ConfigErrors
from pantau.incidents import ConditionChange, ConditionState, DedupKey, Hazard, Severity
from pantau.influx.query import InfluxQL, InfluxQLError
from pantau.readings import Reading
from pantau.settings import Settings
from pantau.zoneindex import ZoneIndex
from pantau.zones import ZoneLevel
from rules.cameras import cameras_heard, iter_camera_history, rules_city
from rules.engine import RuleEngine
from rules.history import DEFAULT_CHUNK, iter_readings
from rules.rulespec import RuleSet, ThresholdRule, load_rules

S = ConditionState
BATCH = 5000  # readings per engine.ingest call: bounded memory, few watermark moves
STILL_ACTIVE = "still active"


@dataclass(frozen=True, slots=True, kw_only=True)
class Episode:
    """One incident the rules would have opened: a dedup key from ACTIVE to CLEARED."""

    key: DedupKey
    opened_at: datetime  # event time of the ACTIVE change
    cleared_at: datetime | None  # None: still open at `until`
    last_state: ConditionState  # the key's state at its end (CLEARED, or still open)
    max_severity: Severity
    metric: str
    peak_value: float
    device_ids: tuple[str, ...]
    first_at: datetime  # event time of the first breaching reading

    def overlaps(self, other: Episode, until: datetime) -> bool:
        end = self.cleared_at or until
        other_end = other.cleared_at or until
        return self.opened_at <= other_end and other.opened_at <= end


@dataclass(frozen=True, slots=True, kw_only=True)
class BacktestStats:
    readings: int  # fed to the engine
    accepted: int
    late: int  # older than the watermark when fed (out of order beyond lateness)
    duplicates: int
    unknown_device: int
    changes: int


@dataclass(frozen=True, slots=True, kw_only=True)
class BacktestResult:
    until: datetime
    episodes: tuple[Episode, ...]  # by opened_at, then key
    stats: BacktestStats

    def per_hazard(self) -> Counter[Hazard]:
        return Counter(e.key.hazard for e in self.episodes)

    def of_hazard(self, hazard: Hazard) -> list[Episode]:
        return [e for e in self.episodes if e.key.hazard is hazard]


@dataclass(slots=True)
class _Open:
    opened_at: datetime
    first_at: datetime
    severity: Severity
    metric: str
    peak: float
    higher_is_worse: bool
    state: ConditionState = S.ACTIVE
    devices: set[str] = field(default_factory=set)

    def update(self, change: ConditionChange) -> None:
        self.state = change.state
        if change.severity is not None and change.severity > self.severity:
            self.severity = change.severity
        ev = change.evidence
        if ev is None:
            return
        self.devices.update(ev.device_ids)
        self.metric = ev.metric
        if ev.peak_value > self.peak if self.higher_is_worse else ev.peak_value < self.peak:
            self.peak = ev.peak_value

    def close(self, key: DedupKey, cleared_at: datetime | None) -> Episode:
        return Episode(
            key=key,
            opened_at=self.opened_at,
            cleared_at=cleared_at,
            last_state=self.state,
            max_severity=self.severity,
            metric=self.metric,
            peak_value=self.peak,
            device_ids=tuple(sorted(self.devices)),
            first_at=self.first_at,
        )


def episodes_of(
    changes: Iterable[ConditionChange],
    until: datetime,
    higher_is_worse: dict[str, bool] | None = None,
) -> list[Episode]:
    """Episodes from a stream of changes in event-time order; open ones end at `until`.

    `higher_is_worse`: per rule id, which way the peak value goes (default: up).
    """
    worse_up = higher_is_worse or {}
    open_: dict[DedupKey, _Open] = {}
    done: list[Episode] = []
    for c in changes:
        ep = open_.get(c.key)
        if ep is None:
            if c.state is not S.ACTIVE or c.severity is None:
                continue  # the store opens incidents on ACTIVE only
            ev = c.evidence
            ep = open_[c.key] = _Open(
                opened_at=c.at,
                first_at=ev.first_at if ev is not None else c.at,
                severity=c.severity,
                metric=ev.metric if ev is not None else "",
                peak=ev.peak_value if ev is not None else float("nan"),
                higher_is_worse=worse_up.get(c.key.rule_id, True),
            )
        ep.update(c)
        if c.state is S.CLEARED:
            done.append(ep.close(c.key, c.at))
            del open_[c.key]
    done += [ep.close(key, None) for key, ep in open_.items()]
    return sorted(done, key=lambda e: (e.opened_at, str(e.key)))


def backtest(
    city: City, rules: RuleSet, readings: Iterable[Reading], until: datetime
) -> BacktestResult:
    """Replay `readings` (event-time order) through a fresh engine, up to `until`.

    Readings out of order by more than the rule file's lateness count as late and are
    dropped, as they would be live.
    """
    clock = ManualClock(until)  # the engine is never ticked: only event time moves it
    # Every rule on the watermark: the result does not depend on the order of readings
    # within the lateness (live, per-device rules judge each reading on arrival).
    engine = RuleEngine(city, rules, clock, series_local=False)
    changes: list[ConditionChange] = []
    fed = 0
    it = iter(readings)
    while batch := list(islice(it, BATCH)):
        fed += len(batch)
        clock.set(batch[-1].time)
        changes += engine.ingest(r for r in batch if r.time < until)
    clock.set(until)
    changes += engine.advance_watermark(until)
    direction = {
        r.id: not (isinstance(r, ThresholdRule) and r.direction == "below") for r in rules.rules
    }
    s = engine.stats
    return BacktestResult(
        until=until,
        episodes=tuple(episodes_of(changes, until, direction)),
        stats=BacktestStats(
            readings=fed,
            accepted=s.accepted,
            late=s.late,
            duplicates=s.duplicates,
            unknown_device=s.unknown_device,
            changes=len(changes),
        ),
    )


@dataclass(frozen=True, slots=True)
class Comparison:
    added: tuple[Episode, ...]  # in the other result, overlapping nothing of its key here
    removed: tuple[Episode, ...]  # here, overlapping nothing of its key in the other


def compare(base: BacktestResult, other: BacktestResult) -> Comparison:
    """What `other` raises that `base` does not and vice versa: an episode counts as the
    same incident when the other run has one of its dedup key overlapping it in time."""
    until = max(base.until, other.until)

    def unmatched(mine: Sequence[Episode], theirs: Sequence[Episode]) -> tuple[Episode, ...]:
        by_key: dict[DedupKey, list[Episode]] = {}
        for e in theirs:
            by_key.setdefault(e.key, []).append(e)
        return tuple(
            e for e in mine if not any(e.overlaps(o, until) for o in by_key.get(e.key, ()))
        )

    return Comparison(
        added=unmatched(other.episodes, base.episodes),
        removed=unmatched(base.episodes, other.episodes),
    )


# --- the report --------------------------------------------------------------------


def kecamatan_of(zones: ZoneIndex, zone_id: str) -> str | None:
    """The kecamatan a zone lies in (itself for a kecamatan); None above or outside."""
    for zone in zones.ancestors(zone_id):
        if zone.level == ZoneLevel.KECAMATAN:
            return zone.id
    return None


def per_kecamatan(result: BacktestResult, zones: ZoneIndex) -> Counter[str]:
    """Episodes per kecamatan id (`-` for kota-wide zones and unplaced extras)."""
    return Counter(kecamatan_of(zones, e.key.zone_id) or "-" for e in result.episodes)


def _fmt_time(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ")


def _fmt_devices(ids: Sequence[str], show: int = 3) -> str:
    if len(ids) <= show:
        return ",".join(ids)
    return ",".join(ids[:show]) + f" +{len(ids) - show}"


def episode_line(e: Episode, zones: ZoneIndex) -> str:
    cleared = _fmt_time(e.cleared_at) if e.cleared_at is not None else STILL_ACTIVE
    if e.cleared_at is None and e.last_state is not S.ACTIVE:
        cleared += f" ({e.last_state.value})"
    zone = f"{e.key.zone_id} ({zones.zone(e.key.zone_id).name})"
    return (
        f"{_fmt_time(e.opened_at)}  {cleared:<25}  {e.key.rule_id:<22} {zone:<40} "
        f"{e.key.hazard.value:<14} {e.max_severity.name.lower():<8} "
        f"{e.peak_value:g} {e.metric}  {_fmt_devices(e.device_ids)}"
    )


def write_report(
    result: BacktestResult, zones: ZoneIndex, out: TextIO, *, title: str, start: datetime
) -> None:
    s = result.stats
    out.write(
        f"{title}: {_fmt_time(start)} .. {_fmt_time(result.until)}, {s.readings} readings "
        f"({s.late} late, {s.duplicates} duplicates, {s.unknown_device} of unknown devices), "
        f"{len(result.episodes)} incidents\n"
    )
    out.write(
        f"{'opened':<17}  {'cleared':<25}  {'rule':<22} {'zone':<40} {'hazard':<14} "
        f"{'severity':<8} peak  devices\n"
    )
    for e in result.episodes:
        out.write(episode_line(e, zones) + "\n")
    out.write("per hazard:    " + _totals(result.per_hazard()) + "\n")
    out.write("per kecamatan: " + _totals(per_kecamatan(result, zones)) + "\n")


def write_comparison(c: Comparison, zones: ZoneIndex, out: TextIO, *, other: str) -> None:
    out.write(f"compared with {other}: +{len(c.added)} added, -{len(c.removed)} removed\n")
    for sign, episodes in (("+", c.added), ("-", c.removed)):
        for e in episodes:
            out.write(f"{sign} {episode_line(e, zones)}\n")


def _totals(counts: Counter[str] | Counter[Hazard]) -> str:
    if not counts:
        return "none"
    return ", ".join(f"{k} {n}" for k, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


# --- the command -------------------------------------------------------------------

_RELATIVE = re.compile(r"^-(\d+(?:\.\d+)?)(m|h|d)$")
_UNIT = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1)}


def parse_when(text: str, clock: Clock | None = None) -> datetime:
    """`now`, relative to now (`-6h`, `-30m`, `-2d`) or ISO 8601 with a zone
    (`2026-11-27T08:00Z`, `2026-11-27T15:00+07:00`)."""
    now = (clock or SystemClock()).now()
    text = text.strip()
    if text == "now":
        return now
    if m := _RELATIVE.match(text):
        return now - float(m.group(1)) * _UNIT[m.group(2)]
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is not a time: use ISO 8601 (2026-11-27T08:00Z) or -6h / -30m / -2d"
        ) from None
    if when.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone: add Z (UTC) or an offset, e.g. +07:00")
    return when.astimezone(UTC)


def _when(text: str) -> datetime:
    try:
        return parse_when(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _glue_negative_values(argv: Sequence[str]) -> list[str]:
    """`--from -6h` as `--from=-6h`: argparse would take `-6h` for an option."""
    out: list[str] = []
    args = iter(argv)
    for arg in args:
        if arg in {"--from", "--to"}:
            value = next(args, None)
            out.append(arg if value is None else f"{arg}={value}")
        else:
            out.append(arg)
    return out


def _load(path: Path, city: City) -> RuleSet | None:
    try:
        return load_rules(path, city)
    except (ConfigError, ConfigErrors) as err:
        print(f"pantau rules backtest: {path} has errors\n{err}", file=sys.stderr)
        return None


def main(argv: Sequence[str], out: TextIO | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="pantau rules backtest",
        description="Replay stored readings from InfluxDB through a rule file and print the "
        "incidents it would have raised, with totals per hazard and kecamatan. Settings "
        "(InfluxDB, config dir, rule file) come from PANTAU_* environment variables.",
    )
    parser.add_argument("--from", dest="start", required=True, type=_when, help="e.g. -6h")
    parser.add_argument("--to", dest="end", default="now", type=_when, help="default: now")
    parser.add_argument("--rules", type=Path, help="rule file (default: the configured one)")
    parser.add_argument(
        "--compare", type=Path, metavar="OTHER_FILE", help="also print what it adds / removes"
    )
    args = parser.parse_args(_glue_negative_values(argv))
    out = out or sys.stdout
    if args.end <= args.start:
        parser.error("--to must be after --from")
    settings = Settings()
    city = load_city(settings.config_dir)
    cameras = load_cameras(city)
    path: Path = args.rules or settings.rules.rules_file or settings.config_dir / "rules.yaml"
    rules = _load(path, rules_city(city, cameras))
    other = _load(args.compare, rules_city(city, cameras)) if args.compare is not None else None
    if rules is None or (args.compare is not None and other is None):
        return 2
    zones = ZoneIndex.for_city(city)
    with InfluxQL.from_settings(settings.influx) as influx:
        try:
            result = run(influx, city, rules, args.start, args.end, cameras=cameras)
            other_result = (
                run(influx, city, other, args.start, args.end, cameras=cameras)
                if other is not None
                else None
            )
        except InfluxQLError as err:
            print(f"pantau rules backtest: InfluxDB: {err}", file=sys.stderr)
            return 1
    write_report(result, zones, out, title=str(path), start=args.start)
    if other_result is not None:
        out.write("\n")
        write_report(other_result, zones, out, title=str(args.compare), start=args.start)
        out.write("\n")
        write_comparison(compare(result, other_result), zones, out, other=str(args.compare))
    return 0


def run(
    influx: InfluxQL,
    city: City,
    rules: RuleSet,
    start: datetime,
    end: datetime,
    *,
    chunk: timedelta = DEFAULT_CHUNK,
    cameras: Mapping[str, Camera] | None = None,
) -> BacktestResult:
    """The backtest over InfluxDB's readings in [start, end), paged by `chunk`; with
    `cameras`, the analyses of those InfluxDB holds any of in the window too (`rules`
    then loaded against `rules_city`). A camera with no analysis at all in the window is
    left out rather than reported offline: stored data cannot tell a camera that was
    down from one whose analyses were never stored here."""
    readings: Iterator[Reading] = iter_readings(influx, city, start, end, chunk)
    if cameras:
        heard = cameras_heard(influx, start, end)
        cameras = {cid: c for cid, c in cameras.items() if cid in heard}
    if cameras:
        analyses = iter_camera_history(influx, cameras, city.catalogue, start, end, chunk=chunk)
        readings = heapq.merge(readings, analyses, key=lambda r: (r.time, r.device_id, r.metric))
        city = rules_city(city, cameras)
    return backtest(city, rules, readings, end)
