"""rules.gaps: seq gaps per device, reboots and redeliveries, SenML and malformed
messages between seq'd ones, and which gaps become data-quality incidents."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from pantau.city import City, load_city
from pantau.device_messages import DeviceMessageReader
from pantau.incidents import ConditionState, Hazard, Severity
from pantau.influx.query import InfluxQLError
from pantau.readings import Reading
from pantau.settings import IngestSettings
from pantau.topics import Topics
from rules.gaps import (
    UPLINK_GAP_RULE,
    GapDetector,
    GapIncidents,
    UplinkGaps,
    data_quality_line,
)
from rules.stats import RulesStats
from simulators.messages import FleetStream
from simulators.scenario import find_scenario, load_scenario

T0 = datetime(2026, 11, 28, 8, 0, tzinfo=UTC)
CITY: City = load_city()


def at(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


def detector() -> GapDetector:
    return GapDetector(lambda d: d.startswith("dev"), timedelta(seconds=60))


def test_a_seq_jump_is_a_gap_and_messages_without_seq_fill_it() -> None:
    g = detector()
    assert g.observe("dev1", 10, at(0), 1, at(0)) is None  # baseline
    assert g.observe("dev1", 11, at(60), 1, at(60)) is None
    assert g.observe("dev1", None, None, 1, at(120)) is None  # SenML or malformed: seq 12
    assert g.observe("dev1", 13, at(180), 1, at(180)) is None
    gap = g.observe("dev1", 17, at(420), 1, at(420))
    assert gap is not None and gap.missing == 3 and (gap.after_seq, gap.next_seq) == (13, 17)
    assert not gap.at_reconnect  # no reconnect: a device dropout
    assert g.observe("unknown", 5, at(0), 1, at(0)) is None
    assert g.observe("unknown", 9, at(9), 1, at(9)) is None  # not tracked at all


def test_reboot_and_redelivery_are_not_gaps() -> None:
    g = detector()
    g.observe("dev1", 500, at(0), 1, at(0))
    assert g.observe("dev1", 0, at(60), 1, at(60)) is None  # counter restarted
    assert g.reboots == 1
    assert g.observe("dev1", 1, at(120), 1, at(120)) is None  # contiguous from the reboot
    assert g.observe("dev1", 0, at(60), 2, at(121)) is None  # a redelivered copy
    assert g.observe("dev1", 1, at(120), 2, at(122)) is None
    assert g.reboots == 1
    assert g.observe("dev1", 2, at(180), 2, at(180)) is None


def test_only_gaps_closed_within_the_window_after_a_reconnect_are_attributed_to_it() -> None:
    g = detector()
    g.observe("dev1", 1, at(0), 1, at(0))
    g.observe("dev2", 1, at(0), 1, at(0))
    g.observe("dev3", 1, at(0), 1, at(0))
    gap1 = g.observe("dev1", 5, at(10), 2, at(10))  # first message on connection 2
    assert g.reconnects == 1 and gap1 is not None and gap1.at_reconnect
    gap2 = g.observe("dev2", 3, at(65), 2, at(69))
    assert gap2 is not None and gap2.at_reconnect and gap2.missing == 1
    assert not g.window_over(at(70)) and g.window_over(at(71))
    gap3 = g.observe("dev3", 9, at(80), 2, at(80))
    assert gap3 is not None and not gap3.at_reconnect


def test_reconnect_gaps_raise_one_data_quality_incident_per_kecamatan_then_clear() -> None:
    a, b, c = sorted(CITY.devices)[:3]
    kec = {d: CITY.devices[d].kecamatan_id for d in (a, b, c)}
    g = GapDetector(CITY.devices.__contains__, timedelta(seconds=60))
    for d in (a, b, c):
        g.observe(d, 100, at(0), 1, at(0))
    gaps = [g.observe(d, 110, at(30), 2, at(30 + i)) for i, d in enumerate((a, b, c))]
    gaps.append(g.observe(c, 104_000, at(35), 2, at(200)))  # late: not the reconnect's
    incidents = GapIncidents(kec.__getitem__)
    changes = incidents.add([x for x in gaps if x is not None])
    assert {ch.key.zone_id for ch in changes} == set(kec.values())
    for ch in changes:
        assert ch.key.rule_id == UPLINK_GAP_RULE and ch.key.hazard is Hazard.DATA_QUALITY
        assert ch.state is ConditionState.ACTIVE and ch.severity is Severity.INFO
        assert ch.evidence is not None
        devices = [d for d in (a, b, c) if kec[d] == ch.key.zone_id]
        assert ch.evidence.device_ids == tuple(sorted(devices))
        assert ch.evidence.peak_value == 9 * len(devices)
    cleared = incidents.clear()
    assert [ch.state for ch in cleared] == [ConditionState.CLEARED] * len(changes)
    assert incidents.clear() == []
    line = data_quality_line(gaps[0])  # type: ignore[arg-type]
    assert line.startswith(f"data_quality,device={a},kind=uplink_gap,cause=reconnect missing=9i")


def test_on_the_storm_every_gap_is_exactly_the_uplinks_never_delivered() -> None:
    """The scenario's real stream (SenML without seq, malformed messages, a dropout,
    and reports replaced by a ghost device's message: the real device's uplink is then
    missing) through the reader, as the rules service sees it, with a reconnect half
    way that lost nothing: each gap is exactly the seqs never sent on the device's
    topic, and a device gives the reconnect at most its first gap."""
    topics = Topics("t")
    scenario = replace(load_scenario(find_scenario("storm-karawaci"), CITY), duration_s=5400.0)
    reader = DeviceMessageReader(CITY, topics, IngestSettings())
    g = GapDetector(CITY.devices.__contains__, timedelta(seconds=300))
    stream = FleetStream(CITY, scenario, topics=topics)
    messages = list(stream)
    delivered: dict[str, set[int]] = {}
    for m in messages:
        if m.topic == topics.sensor_up(m.device_id):
            delivered.setdefault(m.device_id, set()).add(m.seq)
    gaps = []
    for i, m in enumerate(messages):
        generation = 1 if i < len(messages) // 2 else 2
        received = m.sim_time + timedelta(seconds=1)
        read = reader.read(m.topic, m.payload, m.content_type, received)
        first = read.readings[0] if read.readings else None
        gap = g.observe(
            read.device_id,
            None if first is None else first.seq,
            None if first is None else first.time,
            generation,
            received,
        )
        if gap is not None:
            gaps.append(gap)
    assert stream.dropped > 0 and g.reconnects == 1
    assert gaps
    for gap in gaps:
        never = set(range(gap.after_seq + 1, gap.next_seq)) - delivered[gap.device_id]
        assert gap.missing == len(never), gap
    by_cause = Counter(gap.cause for gap in gaps)
    attributed = [gap.device_id for gap in gaps if gap.at_reconnect]
    assert len(attributed) == len(set(attributed))  # one per device at most
    assert by_cause["device"] > 0


def test_copies_redelivered_late_fill_a_gap_before_it_is_judged() -> None:
    """NATS JetStream redelivers what a dead node had not seen acknowledged only after
    `ack_wait`, behind newer messages: the seq jump is seen first and the "missing"
    uplinks arrive after it. A gap is judged `settle` after it was seen, counting only
    what is still missing then."""
    a, b = sorted(CITY.devices)[:2]
    gaps = UplinkGaps(CITY, None, timedelta(minutes=5), settle=timedelta(seconds=45))
    for d in (a, b):
        gaps.observe(d, 100, at(0), 1, at(0))
    assert gaps.changes(at(1)) == []
    gaps.observe(a, 110, at(30), 2, at(30))  # 101..109 seem lost
    gaps.observe(b, 105, at(30), 2, at(30))  # 101..104 seem lost
    assert gaps.changes(at(40)) == [] and gaps.unsettled == 2  # not judged yet
    for seq in range(101, 110):  # a's all come back, twice for some
        gaps.observe(a, seq, at(seq - 100), 2, at(60))
    gaps.observe(a, 103, at(3), 2, at(61))
    gaps.observe(b, 102, at(2), 2, at(62))  # b gets one of its four back
    changes = gaps.changes(at(76))
    assert gaps.unsettled == 0 and gaps.filled_late == 1
    assert (gaps.gaps, gaps.missing) == (1, 3)  # only b's three are a gap
    (change,) = changes
    assert change.key.zone_id == CITY.devices[b].kecamatan_id
    assert change.evidence is not None and change.evidence.device_ids == (b,)
    assert change.evidence.peak_value == 3
    assert change.state is ConditionState.ACTIVE


def test_without_settle_time_a_gap_is_judged_when_seen() -> None:
    (a,) = sorted(CITY.devices)[:1]
    gaps = UplinkGaps(CITY, None, timedelta(minutes=5))
    gaps.observe(a, 100, at(0), 1, at(0))
    gaps.observe(a, 104, at(30), 2, at(30))
    (change,) = gaps.changes(at(30))
    assert change.evidence is not None and change.evidence.peak_value == 3


def test_a_late_copy_fills_its_gap_even_with_a_skewed_clock_and_a_backlog() -> None:
    """A late copy whose device time is after the reading that closed the gap (a clock
    that jumped) fills the gap rather than looking like a reboot; and while messages
    wait in the inbox the settle time runs on what was observed, not the wall clock."""
    (a,) = sorted(CITY.devices)[:1]
    gaps = UplinkGaps(CITY, None, timedelta(minutes=5), settle=timedelta(seconds=45))
    gaps.observe(a, 100, at(0), 1, at(0))
    gaps.observe(a, 103, at(30), 2, at(30))  # 101, 102 seem lost
    # The wall clock is 60 s past, but the worker is behind: not judged yet.
    assert gaps.changes(at(90), caught_up=False) == [] and gaps.unsettled == 1
    gaps.observe(a, 101, at(10), 2, at(40))
    gaps.observe(a, 102, at(99), 2, at(41))  # its clock jumped ahead: still a late copy
    assert gaps.detector.reboots == 0
    assert gaps.changes(at(95)) == [] and gaps.unsettled == 0 and gaps.filled_late == 1


def stored_uplinks(
    held: dict[str, list[Reading]],
) -> Callable[[str, int, int, datetime, datetime], list[Reading]]:
    """What InfluxDB holds per device, read as rules.history.read_uplinks reads it."""

    def read(device: str, after: int, before: int, start: datetime, end: datetime) -> list[Reading]:
        return [
            r
            for r in held.get(device, [])
            if (r.seq is None or after < r.seq < before) and start <= r.time <= end
        ]

    return read


def uplink(device: str, seq: int, metric: str = "water_level") -> Reading:
    return Reading(
        device_id=device, metric=metric, value=float(seq), unit="cm", time=at(seq - 100), seq=seq
    )


def test_uplinks_still_missing_at_the_settle_time_are_read_back_from_what_ingest_stored() -> None:
    """NATS 2.9 can lose a few messages for one session across a node failure while
    another (ingest's) got them. Once the settle time is over, the seqs still missing
    are looked up among the stored readings: those found are judged late (handed to
    the engine), counted as repaired, and are no gap; only the rest is."""
    a, b, c = sorted(CITY.devices)[:3]
    held = {
        # a: 101..108 stored (103 twice: two metrics of one uplink), 109 never was.
        a: [uplink(a, s) for s in range(101, 109)] + [uplink(a, 103, "flow")],
        b: [uplink(b, s) for s in range(101, 105)],  # b: everything stored
    }
    gaps = UplinkGaps(
        CITY, None, timedelta(minutes=5), settle=timedelta(seconds=45), stored=stored_uplinks(held)
    )
    for d in (a, b, c):
        gaps.observe(d, 100, at(0), 1, at(0))
    gaps.observe(a, 110, at(10), 2, at(30))  # 101..109 seem lost
    gaps.observe(b, 105, at(5), 2, at(30))  # 101..104
    gaps.observe(c, 103, at(3), 2, at(30))  # 101, 102: a dropout, nothing stored
    gaps.observe(a, 102, at(2), 2, at(50))  # a late copy: not read back again
    assert gaps.changes(at(60)) == [] and gaps.take_repaired() == []  # not judged yet
    changes = gaps.changes(at(76))
    repaired = gaps.take_repaired()
    assert sorted({(r.device_id, r.seq) for r in repaired}) == sorted(
        [(a, s) for s in (101, 103, 104, 105, 106, 107, 108)] + [(b, s) for s in range(101, 105)]
    )
    assert len(repaired) == 12  # both readings of a's uplink 103
    assert [r.time for r in repaired] == sorted(r.time for r in repaired)
    assert gaps.uplinks_repaired == 11 and gaps.gaps_repaired == 1  # b's whole gap
    assert (gaps.gaps, gaps.missing) == (2, 3)  # a's 109 and c's 101, 102
    stats = RulesStats()
    gaps.count(stats)
    assert (stats.uplinks_repaired, stats.uplink_gaps_repaired) == (11, 1)
    assert (stats.uplink_gaps, stats.uplinks_missing, stats.uplink_gaps_unsettled) == (2, 3, 0)
    by_zone = {ch.key.zone_id: ch for ch in changes}
    assert all(ch.evidence is not None for ch in changes)
    devices = sorted(d for ch in changes if ch.evidence for d in ch.evidence.device_ids)
    assert devices == sorted([a, c])  # b's gap was repaired: no incident for it
    assert sum(ch.evidence.peak_value for ch in by_zone.values() if ch.evidence) == 3
    assert gaps.take_repaired() == []  # handed over once


def test_a_gap_is_judged_as_it_stands_when_the_store_cannot_be_read() -> None:
    (a,) = sorted(CITY.devices)[:1]

    def unreachable(*_: object) -> list[Reading]:
        raise InfluxQLError("SELECT", "cannot reach http://127.0.0.1:1")

    gaps = UplinkGaps(CITY, None, timedelta(minutes=5), stored=unreachable)
    gaps.observe(a, 100, at(0), 1, at(0))
    gaps.observe(a, 104, at(30), 2, at(30))
    (change,) = gaps.changes(at(30))
    assert change.evidence is not None and change.evidence.peak_value == 3
    assert gaps.uplinks_repaired == 0 and gaps.take_repaired() == []


def test_a_message_without_seq_that_comes_late_fills_its_gap_by_device_time() -> None:
    """SenML carries no seq. NATS redelivers a SenML message it lost at a failover
    after `ack_wait`, behind newer ones: dated inside an unsettled gap, it fills the gap
    (once, whatever its copies); one whose readings were seen there before the jump is
    a copy and fills nothing; after the gap, one in order counts towards the next."""
    a, b = sorted(CITY.devices)[:2]
    gaps = UplinkGaps(CITY, None, timedelta(minutes=5), settle=timedelta(seconds=45))
    for d in (a, b):
        gaps.observe(d, 100, at(0), 1, at(0))
    gaps.observe(a, None, at(10), 1, at(10), times=[at(10)])  # 101: SenML, in order
    gaps.observe(a, 104, at(40), 2, at(40))  # 102, 103 seem lost (101 arrived)
    gaps.observe(b, 103, at(40), 2, at(40))  # 101, 102 seem lost
    gaps.observe(a, None, at(20), 2, at(50), times=[at(20), at(21)])  # 102, late
    gaps.observe(a, None, at(20), 2, at(51), times=[at(20), at(21)])  # its copy
    gaps.observe(a, None, at(10), 2, at(52), times=[at(10)])  # a copy of 101
    gaps.observe(b, None, at(50), 2, at(53), times=[at(50)])  # after b's gap: in order
    changes = gaps.changes(at(86))
    assert (gaps.gaps, gaps.missing) == (2, 3)  # a's 103; b's two (its SenML came after)
    devices = sorted(d for ch in changes if ch.evidence for d in ch.evidence.device_ids)
    assert devices == sorted([a, b])
    assert gaps.detector.observe(b, 105, at(60), 2, at(60)) is None  # 104 was that SenML


def test_readings_without_seq_are_read_back_by_the_device_times_no_message_carried() -> None:
    """The store's readings without a seq (SenML) dated inside a gap, at times no message
    seen there carried, are uplinks this session missed: one per device time."""
    a, b = sorted(CITY.devices)[:2]

    def senml(device: str, s: float) -> Reading:
        return Reading(device_id=device, metric="rainfall", value=s, unit="mm", time=at(s))

    held = {
        a: [senml(a, 10), senml(a, 20), replace(senml(a, 20), metric="battery"), senml(a, 30)],
        b: [senml(b, 20)],
    }
    gaps = UplinkGaps(
        CITY, None, timedelta(minutes=5), settle=timedelta(seconds=45), stored=stored_uplinks(held)
    )
    gaps.observe(a, 100, at(0), 1, at(0))
    gaps.observe(a, None, at(10), 1, at(10), times=[at(10)])  # 101 arrived
    gaps.observe(a, 105, at(50), 2, at(50))  # 102..104 seem lost
    gaps.observe(b, 100, at(0), 1, at(0))
    gaps.observe(b, 102, at(40), 2, at(40))  # 101 seems lost
    gaps.changes(at(96))
    repaired = gaps.take_repaired()
    # a: 20 (two readings) and 30 read back, 10 was seen; b: 20.
    expected = [(a, at(20), "rainfall"), (a, at(20), "battery"), (a, at(30), "rainfall")]
    expected.append((b, at(20), "rainfall"))
    assert sorted((r.device_id, r.time, r.metric) for r in repaired) == sorted(expected)
    assert gaps.uplinks_repaired == 3 and gaps.gaps_repaired == 1  # b's
    assert (gaps.gaps, gaps.missing) == (1, 1)  # a's third uplink is nowhere
