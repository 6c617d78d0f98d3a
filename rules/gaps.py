"""Uplink gaps: device messages the rules service never received, found from the
per-device `seq` of the native payload form (pantau/wire.py), and raised as a
data-quality event when they coincide with a reconnect to the broker.

A device counts its uplinks; a message with seq `s` after one with seq `l` means
`s - l - 1` uplinks in between, some of which did arrive without a seq (SenML carries
none, a malformed or refused message yields none). So per device the detector counts
the messages that arrived since its last seq'd one, and the gap is

    missing = s - l - 1 - (messages without a seq since l)

which is exact for in-order delivery and errs low (never high) when copies are
redelivered. What is not a gap:

- a seq at or below the last one with an older or equal device time: a redelivered or
  late copy (QoS 1 at least once), ignored;
- a seq below the last one with a *newer* device time: the device rebooted and its
  counter restarted; the seq becomes the new baseline, nothing is raised;
- the first message of a device in this process: there is no baseline yet;
- seqs that arrive late, inside the settle time after the gap was seen: a broker that
  redelivers unacknowledged messages only after a timeout (NATS JetStream's `ack_wait`,
  30 s by default, behind newer messages) sends the "missing" uplinks after the one
  that closed the gap. A gap is therefore judged `settle` after it was seen (rules
  setting `uplink_gap_settle_s`, longer than the broker's redelivery timeout), counting
  only the seqs still missing then; a gap filled in the meantime is no gap. A late
  message without a seq (SenML) fills its gap by device time: dated inside it, and
  not a copy of one seen there before the jump;
- uplinks another session stored: when the settle time is over, what is still missing
  is looked up in InfluxDB (ingest stores each reading with its seq; SenML readings
  count by the device times no message seen in the gap carried). Those found are no
  gap; their readings go to the rule engine, judged late (`UplinkGaps.take_repaired`).

Every gap is written to InfluxDB (`data_quality`, one point per device and gap, tag
`cause`): `reconnect` when it is the device's first gap since the rules service's MQTT
session came back (a broker restart or a network cut: messages the broker acknowledged
to a device and lost, bounded by its autosave interval) and the reading that closed it
arrived within `window` (5 min, longer than a report interval) of the reconnect, else
`device` (the device's own radio dropouts, which the absence rules already cover). A
device dropout that happens to end inside that window is still counted as the
reconnect's (the seqs alone cannot tell them apart), at most one per device.
Only `reconnect` gaps become incidents, so a fleet with flaky radios raises nothing:
one `uplink-gap` data-quality incident per kecamatan (rule `UPLINK_GAP_RULE`, hazard
data_quality, severity info; devices and the missing count as evidence), active while
the window lasts and cleared at its end. The incident takes the store's path like any
rule's verdict, so the incident event and the Diskominfo crew alert go out through the
outbox (at least once, deduplicated by message id).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from pantau.city import City
from pantau.incidents import (
    ConditionChange,
    ConditionState,
    DedupKey,
    Evidence,
    Hazard,
    Severity,
)
from pantau.influx.lineprotocol import tag_value
from pantau.influx.query import InfluxQL, InfluxQLError
from pantau.influx.writers import InfluxWriter, WriteRejected, WriteUnavailable, make_writer
from pantau.readings import Reading
from pantau.settings import InfluxSettings
from rules.history import read_uplinks
from rules.stats import RulesStats

log = logging.getLogger(__name__)

UPLINK_GAP_RULE = "uplink-gap"
MEASUREMENT = "data_quality"
RECONNECT_WINDOW = timedelta(minutes=5)  # longer than a device's report interval
MAX_PENDING_POINTS = 10_000  # kept while InfluxDB is away; older ones are dropped
WRITE_RETRY_S = 10.0
MAX_SEEN_TIMES = 256  # reading times kept per device between two seq'd messages

# (device, after_seq, next_seq, from, to): the device's stored readings with
# after_seq < seq < next_seq and device time in [from, to] (rules.history.read_uplinks).
StoredUplinks = Callable[[str, int, int, datetime, datetime], list[Reading]]


@dataclass(frozen=True, slots=True, kw_only=True)
class Gap:
    device_id: str
    missing: int  # uplinks between the two seqs that never arrived
    after_seq: int
    next_seq: int
    last_time: datetime  # device time of the reading before the gap
    next_time: datetime  # device time of the reading that closed it
    at_reconnect: bool
    filled: frozenset[int] = frozenset()  # seqs of the gap that came late (settle)
    # Device times of the readings of the messages without a seq that did arrive between
    # the two (before the jump, or late): None when too many to keep (MAX_SEEN_TIMES).
    seen_times: frozenset[datetime] | None = frozenset()

    @property
    def cause(self) -> str:
        return "reconnect" if self.at_reconnect else "device"


@dataclass(slots=True)
class _Hole:
    gap: Gap
    filled: set[int] = field(default_factory=set)  # seqs of the hole that came late
    # Messages without a seq that came late into the hole (a device time inside it):
    # how many, and their readings' device times.
    late_unsequenced: int = 0
    late_times: set[datetime] = field(default_factory=set)


@dataclass(slots=True)
class _Track:
    seq: int
    time: datetime
    unsequenced: int = 0  # messages of the device since `seq` that carried none
    # Their readings' device times (None: more than MAX_SEEN_TIMES, no longer kept).
    seen: set[datetime] | None = field(default_factory=set)


class GapDetector:
    """Per-device seq tracking; `observe` each message of a device topic in arrival
    order with the connection (`generation`) it came on. Tracks registered devices only,
    so the state is bounded by the registry."""

    def __init__(
        self, is_device: Callable[[str], bool], window: timedelta = RECONNECT_WINDOW
    ) -> None:
        self._is_device = is_device
        self._window = window
        self._tracks: dict[str, _Track] = {}
        self._generation = 0
        self._watched: set[str] = set()  # devices whose first gap after it is the reconnect's
        self._holes: dict[str, list[_Hole]] = {}  # gaps seen and not yet settled
        self.reconnected_at: datetime | None = None
        self.reconnects = 0
        self.reboots = 0

    def observe(
        self,
        device_id: str | None,
        seq: int | None,
        device_time: datetime | None,
        generation: int,
        received_at: datetime,
        *,
        times: Collection[datetime] = (),
    ) -> Gap | None:
        """`times`: the device times of all the message's readings, for a message
        without a seq (default: `device_time`), so that a late one is recognised."""
        if generation > self._generation:
            if self._generation > 0:  # not the process's first connection
                self.reconnected_at = received_at
                self.reconnects += 1
                self._watched = set(self._tracks)
            self._generation = generation
        if device_id is None or not self._is_device(device_id):
            return None
        track = self._tracks.get(device_id)
        if seq is None or device_time is None:
            if track is not None:
                self._unsequenced(device_id, track, device_time, times)
            return None
        if track is None:
            self._tracks[device_id] = _Track(seq, device_time)
            return None
        if seq <= track.seq:
            # A late copy inside a gap not settled yet fills it, whatever its device
            # time says (a skewed clock may put it after the reading that closed the gap).
            hole = next(
                (
                    h
                    for h in self._holes.get(device_id, ())
                    if h.gap.after_seq < seq < h.gap.next_seq
                ),
                None,
            )
            if hole is not None:
                hole.filled.add(seq)
            elif seq < track.seq and device_time > track.time:
                self.reboots += 1  # the counter restarted: a new baseline
                self._tracks[device_id] = _Track(seq, device_time)
            return None  # else a redelivered or late copy
        missing = seq - track.seq - 1 - track.unsequenced
        gap = None
        if missing > 0:
            gap = Gap(
                device_id=device_id,
                missing=missing,
                after_seq=track.seq,
                next_seq=seq,
                last_time=track.time,
                next_time=device_time,
                at_reconnect=self._in_window(received_at) and device_id in self._watched,
                seen_times=None if track.seen is None else frozenset(track.seen),
            )
            self._watched.discard(device_id)
            self._holes.setdefault(device_id, []).append(_Hole(gap))
        track.seq, track.unsequenced, track.seen = seq, 0, set()
        track.time = max(track.time, device_time)
        return gap

    def _unsequenced(
        self,
        device_id: str,
        track: _Track,
        device_time: datetime | None,
        times: Collection[datetime],
    ) -> None:
        """A message without a seq. Dated inside an unsettled gap it is a late one
        (NATS redelivers after `ack_wait`, behind newer messages): it fills the gap
        unless its readings were seen there already (a copy). Else it is counted
        towards the next gap, as it comes in order."""
        at = set(times) or ({device_time} if device_time is not None else set())
        if device_time is not None:
            for hole in self._holes.get(device_id, ()):
                gap = hole.gap
                if gap.last_time < device_time < gap.next_time:
                    seen = gap.seen_times
                    if (seen is None or not at & seen) and not at & hole.late_times:
                        hole.late_unsequenced += 1
                    hole.late_times |= at
                    return
        track.unsequenced += 1
        if track.seen is not None:
            track.seen |= at
            if len(track.seen) > MAX_SEEN_TIMES:
                track.seen = None

    def settle(self, gap: Gap) -> Gap | None:
        """The gap as it stands now: the seqs that came late since it was seen are not
        missing; None when they all came."""
        holes = self._holes.get(gap.device_id, [])
        hole = next((h for h in holes if h.gap is gap), None)
        if hole is None:
            return gap
        holes.remove(hole)
        if not holes:
            del self._holes[gap.device_id]
        missing = gap.missing - len(hole.filled) - hole.late_unsequenced
        if missing <= 0:
            return None
        seen = None if gap.seen_times is None else gap.seen_times | hole.late_times
        return replace(gap, missing=missing, filled=frozenset(hole.filled), seen_times=seen)

    def _in_window(self, received_at: datetime) -> bool:
        since = self.reconnected_at
        return since is not None and since <= received_at <= since + self._window

    def window_over(self, now: datetime) -> bool:
        since = self.reconnected_at
        return since is not None and now > since + self._window


def data_quality_line(gap: Gap) -> str:
    """One point per gap, at the device time of the reading that closed it; identity
    is device + kind + cause + time, so a replay overwrites it."""
    millis = int(gap.next_time.timestamp() * 1000)
    return (
        f"{MEASUREMENT},device={tag_value(gap.device_id)},kind=uplink_gap,cause={gap.cause}"
        f" missing={gap.missing}i,after_seq={gap.after_seq}i,next_seq={gap.next_seq}i,"
        f"since_ms={int(gap.last_time.timestamp() * 1000)}i {millis}"
    )


def input_quality_line(kind: str, subject: str, at: datetime, detail: str) -> str:
    """One point per thing the rule engine reported instead of judging (rules.engine:
    too_old, stale, source_idle, source_back), at its event time."""
    detail = detail.replace("\\", "\\\\").replace('"', '\\"')
    return (
        f"{MEASUREMENT},device={tag_value(subject)},kind={kind},cause=rules"
        f' detail="{detail}" {int(at.timestamp() * 1000)}'
    )


@dataclass(slots=True)
class _ZoneGap:
    devices: set[str] = field(default_factory=set)
    missing: int = 0
    first_at: datetime | None = None
    at: datetime | None = None  # event time of the latest change (never goes back)


class GapIncidents:
    """Reconnect gaps -> one data-quality verdict per kecamatan and reconnect window."""

    def __init__(self, kecamatan_of: Callable[[str], str]) -> None:
        self._kecamatan_of = kecamatan_of
        self._open: dict[str, _ZoneGap] = {}

    def add(self, gaps: Sequence[Gap]) -> list[ConditionChange]:
        touched: dict[str, _ZoneGap] = {}
        for gap in gaps:
            if not gap.at_reconnect:
                continue
            zone_id = self._kecamatan_of(gap.device_id)
            zone = self._open.setdefault(zone_id, _ZoneGap())
            zone.devices.add(gap.device_id)
            zone.missing += gap.missing
            zone.first_at = min(zone.first_at or gap.last_time, gap.last_time)
            zone.at = max(zone.at or gap.next_time, gap.next_time)
            touched[zone_id] = zone
        return [self._change(z, g, ConditionState.ACTIVE) for z, g in sorted(touched.items())]

    def clear(self) -> list[ConditionChange]:
        """The window is over: every zone's verdict clears (the gap is history)."""
        cleared = ConditionState.CLEARED
        changes = [self._change(z, g, cleared) for z, g in sorted(self._open.items())]
        self._open.clear()
        return changes

    @staticmethod
    def _change(zone_id: str, zone: _ZoneGap, state: ConditionState) -> ConditionChange:
        assert zone.at is not None and zone.first_at is not None
        devices = len(zone.devices)
        active = state is ConditionState.ACTIVE
        return ConditionChange(
            key=DedupKey(UPLINK_GAP_RULE, zone_id, Hazard.DATA_QUALITY),
            state=state,
            severity=Severity.INFO if active else None,
            at=zone.at,
            evidence=Evidence(
                device_ids=tuple(sorted(zone.devices)),
                metric="uplink_seq",
                peak_value=float(zone.missing),
                first_at=zone.first_at,
                last_at=zone.at,
            ),
            reason=(
                f"{zone.missing} uplinks of {devices} device(s) lost across a broker reconnect"
                if active
                else "uplinks contiguous again after the reconnect"
            ),
        )


class UplinkGaps:
    """What the rules service holds: the detector, the zone verdicts, and the
    `data_quality` points on their way to InfluxDB (written by the worker, retried
    while InfluxDB is away, bounded).

    Repair: when a gap's settle time is over, the uplinks still missing are looked up
    in InfluxDB (`stored`; by default read from `influx`): ingest's own session may
    have stored what never reached this one (NATS 2.9 after a node failure,
    docs/operations.md). Those found are not missing; their readings wait in
    `take_repaired` for the rule engine, which judges them like any late reading."""

    def __init__(
        self,
        city: City,
        influx: InfluxSettings | None,
        window: timedelta = RECONNECT_WINDOW,
        settle: timedelta = timedelta(0),
        *,
        stored: StoredUplinks | None = None,
    ) -> None:
        devices = city.devices
        self._city = city
        self._stored = stored
        if stored is None and influx is not None:
            self._stored = self._read_stored
        self._query: InfluxQL | None = None  # made on the first repair
        self._repaired: list[Reading] = []
        self.uplinks_repaired = 0  # missing uplinks found in InfluxDB
        self.gaps_repaired = 0  # gaps all of whose missing uplinks were found there
        self.detector = GapDetector(devices.__contains__, window)
        self._settle = settle
        self._seen: deque[tuple[datetime, Gap]] = deque()  # (judge at, gap), in order
        self._incidents = GapIncidents(lambda d: devices[d].kecamatan_id)
        self._influx = influx
        self._writer: InfluxWriter | None = None
        self._pending: list[str] = []
        self._retry_at = 0.0
        self._found: list[Gap] = []
        self.gaps = 0
        self.missing = 0
        self.filled_late = 0  # gaps seen and then filled by late copies: not gaps
        self._observed_at: datetime | None = None  # arrival time of the newest observed

    def observe(
        self,
        device_id: str | None,
        seq: int | None,
        device_time: datetime | None,
        generation: int,
        received_at: datetime,
        *,
        times: Collection[datetime] = (),
    ) -> None:
        self._observed_at = max(self._observed_at or received_at, received_at)
        gap = self.detector.observe(
            device_id, seq, device_time, generation, received_at, times=times
        )
        if gap is not None:
            self._seen.append((received_at + self._settle, gap))

    @property
    def unsettled(self) -> int:
        return len(self._seen)

    def count(self, stats: RulesStats) -> None:
        stats.uplink_gaps, stats.uplinks_missing = self.gaps, self.missing
        stats.uplink_gaps_filled, stats.uplink_gaps_unsettled = self.filled_late, self.unsettled
        stats.uplinks_repaired, stats.uplink_gaps_repaired = (
            self.uplinks_repaired,
            self.gaps_repaired,
        )

    def take_repaired(self) -> list[Reading]:
        """The readings of missing uplinks found in InfluxDB since the last call, for
        the rule engine (in device-time order)."""
        out, self._repaired = self._repaired, []
        out.sort(key=lambda r: (r.time, r.device_id, r.metric))
        return out

    def _judge(self, now: datetime) -> None:
        """Gaps whose settle time is over count what is still missing."""
        while self._seen and self._seen[0][0] <= now:
            _, seen = self._seen.popleft()
            gap = self.detector.settle(seen)
            if gap is None:
                self.filled_late += 1
                log.info("uplink gap of %s filled by late copies", seen.device_id)
                continue
            gap = self._repair(gap)
            if gap is None:
                self.gaps_repaired += 1
                continue
            self._found.append(gap)
            self.gaps += 1
            self.missing += gap.missing
            log.log(
                logging.WARNING if gap.at_reconnect else logging.DEBUG,
                "uplink gap: %s lost %d (seq %d..%d, cause %s)",
                gap.device_id,
                gap.missing,
                gap.after_seq + 1,
                gap.next_seq - 1,
                gap.cause,
            )

    def _repair(self, gap: Gap) -> Gap | None:
        """The gap less the uplinks InfluxDB holds (None: it held them all). A gap of a
        device dropout finds nothing there; one of a broker that lost the message for
        every session too (Mosquitto's autosave window) neither."""
        if self._stored is None:
            return gap
        try:
            stored = self._stored(
                gap.device_id, gap.after_seq, gap.next_seq, gap.last_time, gap.next_time
            )
        except InfluxQLError as err:
            log.warning("uplink gap of %s not looked up in InfluxDB: %s", gap.device_id, err)
            return gap
        by_seq = [
            r
            for r in stored
            if r.seq is not None
            and gap.after_seq < r.seq < gap.next_seq
            and r.seq not in gap.filled
        ]
        # Messages without a seq (SenML) by device time: readings dated inside the gap
        # that no message seen there carried, one uplink per time (a pack with several
        # times counts several: errs low, like the rest).
        seen = gap.seen_times
        by_time = (
            []
            if seen is None
            else [
                r
                for r in stored
                if r.seq is None and gap.last_time < r.time < gap.next_time and r.time not in seen
            ]
        )
        found = len({r.seq for r in by_seq}) + len({r.time for r in by_time})
        if not found:
            return gap
        self._repaired += by_seq + by_time
        self.uplinks_repaired += found
        log.info(
            "uplink gap of %s: %d of %d missing uplinks read back from InfluxDB"
            " (seq %s; %d without one)",
            gap.device_id,
            found,
            gap.missing,
            ",".join(str(q) for q in sorted({r.seq or 0 for r in by_seq})),
            len({r.time for r in by_time}),
        )
        missing = gap.missing - found
        return None if missing <= 0 else replace(gap, missing=missing)

    def _read_stored(
        self, device_id: str, after_seq: int, next_seq: int, start: datetime, end: datetime
    ) -> list[Reading]:
        if self._query is None:
            assert self._influx is not None
            self._query = InfluxQL.from_settings(self._influx)
        return read_uplinks(
            self._query,
            self._city,
            device_id,
            after_seq=after_seq,
            next_seq=next_seq,
            start=start,
            end=end,
        )

    def queue(self, lines: Sequence[str]) -> None:
        """Other data_quality points, written with the next batch of gaps."""
        self._pending += lines

    def changes(self, now: datetime, *, caught_up: bool = True) -> list[ConditionChange]:
        """The verdicts of the gaps found since the last call (and the clearing ones
        once the reconnect window is over); queues their points for InfluxDB.
        `caught_up=False` (messages still wait in the inbox): the settle time runs on
        the arrival time of what was observed, so a late copy waiting in a backlog is
        looked at before its gap is judged."""
        observed = self._observed_at
        self._judge(now if caught_up or observed is None else min(now, observed))
        found, self._found = self._found, []
        self._pending += [data_quality_line(g) for g in found]
        if len(self._pending) > MAX_PENDING_POINTS:
            log.warning("dropping %d data_quality points", len(self._pending) - MAX_PENDING_POINTS)
            del self._pending[:-MAX_PENDING_POINTS]
        changes = self._incidents.add(found)
        if self.detector.window_over(now):
            changes += self._incidents.clear()
        self._write()
        return changes

    def _write(self) -> None:
        if not self._pending or self._influx is None or time.monotonic() < self._retry_at:
            return
        try:
            if self._writer is None:
                self._writer = make_writer(self._influx)
            self._writer.write(self._pending)
            self._pending = []
        except WriteUnavailable as err:
            log.warning("data_quality points kept for later, InfluxDB away: %s", err)
            self._retry_at = time.monotonic() + WRITE_RETRY_S
        except WriteRejected as err:
            log.error("InfluxDB refused %d data_quality points: %s", len(self._pending), err)
            self._pending = []

    def close(self) -> None:
        self._write()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._query is not None:
            self._query.close()
            self._query = None
