"""Cameras in the rules: pseudo-devices, analyses as readings, the camera rules of
config/rules.yaml and the cross_check kind on hand-made timelines."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pantau.cameras import Camera, load_cameras
from pantau.city import City
from pantau.clock import ManualClock
from pantau.errors import ConfigErrors
from pantau.frame_analysis import FrameAnalysis, Measure, encode_analysis
from pantau.incidents import ConditionChange, ConditionState, DedupKey, Hazard, Severity
from pantau.readings import Reading
from pantau.topics import Topics
from rules.cameras import CameraDevice, CameraReadings, rules_city
from rules.engine import RuleEngine
from rules.rulespec import RuleSet, load_rules

S = ConditionState
T0 = datetime(2026, 1, 14, 8, 0, tzinfo=UTC)
DEFAULT = Path(__file__).resolve().parents[2] / "config" / "rules.yaml"
CAM, STATION = "cam-flood-babakan", "wl-babakan-002"

CROSS = """\
lateness: 30s
rules:
  - id: xcheck
    kind: cross_check
    hazard: data_quality
    description: gauge vs station
    applies_to: {kinds: [cctv_flood]}
    zone_level: kelurahan
    metric: water_depth
    against: water_level
    tolerance: 15
    clear: 10
    raise_for: 10m
    clear_for: 5m
    max_age: 3m
"""


@pytest.fixture(scope="module")
def cameras(city: City) -> dict[str, Camera]:
    return load_cameras(city)


@pytest.fixture(scope="module")
def cam_city(city: City, cameras: dict[str, Camera]) -> City:
    return rules_city(city, cameras)


def at(minute: float) -> datetime:
    return T0 + timedelta(minutes=minute)


def cam(value: float, minute: float, metric: str = "water_depth") -> Reading:
    return Reading(device_id=CAM, metric=metric, value=value, unit="cm", time=at(minute))


def sta(value: float, minute: float) -> Reading:
    return Reading(device_id=STATION, metric="water_level", value=value, unit="cm", time=at(minute))


def timeline(
    camera: Iterable[tuple[float, float]], station: Iterable[tuple[float, float]]
) -> list[Reading]:
    """(minute, value) pairs per side, merged in time order."""
    out = [cam(v, m) for m, v in camera] + [sta(v, m) for m, v in station]
    return sorted(out, key=lambda r: r.time)


def judge(
    city: City, rules: RuleSet, readings: list[Reading], until: float
) -> list[ConditionChange]:
    eng = RuleEngine(city, rules, ManualClock(T0))
    return eng.ingest(readings) + eng.advance_watermark(at(until))


def cross_rules(tmp_path: Path, city: City, text: str = CROSS) -> RuleSet:
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    return load_rules(path, city)


def every(start: float, end: float, value: float, step: float = 0.5) -> list[tuple[float, float]]:
    n = round((end - start) / step)
    return [(start + i * step, value) for i in range(n)]


# --- the registry seen by the rules --------------------------------------------------


def test_cameras_are_devices_at_their_location_only_for_the_rules(
    city: City, cam_city: City, cameras: dict[str, Camera]
) -> None:
    assert CAM not in city.devices  # the device registry stays what devices.yaml holds
    d = cam_city.devices[CAM]
    assert isinstance(d, CameraDevice)
    c = cameras[CAM]
    assert (d.kind, d.kelurahan_id, d.kecamatan_id) == (
        "cctv_flood",
        c.kelurahan_id,
        c.kecamatan_id,
    )
    assert (d.station, d.flood_depth_cm, d.gauge_top_cm) == (STATION, 60.0, 120.0)
    assert cam_city.devices["cam-traffic-sudirman"].kind == "cctv_traffic"
    assert len(cam_city.devices) == len(city.devices) + len(cameras)


def analysis(camera: str, seconds: float, **extra: float) -> FrameAnalysis:
    measures = [
        Measure("camera_brightness", 0.5, "/", 1.0),
        Measure("camera_fault", 0.0, "/", 0.9),
        Measure("region_occupancy", 0.25, "/", 0.9, "lane-east"),
        Measure("region_occupancy", 0.65, "/", 0.9, "lane-west"),
        Measure("stopped_traffic", 12.0, "s", 0.9, "lane-east"),
        Measure("stopped_traffic", 0.0, "s", 0.9, "lane-west"),
        Measure("region_motion", 0.1, "/", 0.2, "lane-east"),  # a faulted frame's
    ]
    measures += [Measure(name, v, "cm", 0.9) for name, v in extra.items()]
    return FrameAnalysis(
        camera_id=camera,
        time=T0 + timedelta(seconds=seconds),
        seq=int(seconds * 5),
        width=640,
        height=360,
        measures=tuple(measures),
    )


def test_analyses_become_one_reading_per_metric_per_interval(
    city: City, cameras: dict[str, Camera]
) -> None:
    topics = Topics("t")
    reader = CameraReadings(cameras, city.catalogue, topics)
    topic = topics.camera_analysis("cam-traffic-sudirman")
    first = reader.read(topic, encode_analysis(analysis("cam-traffic-sudirman", 0.2)))
    got = {r.metric: (r.value, r.unit) for r in first.readings}
    # Worst region, in the catalogue's unit; the low-confidence motion is left out.
    assert got == {
        "camera_brightness": (0.5, "/"),
        "camera_fault": (0.0, "/"),
        "region_occupancy": (65.0, "%"),
        "stopped_traffic": (12.0, "s"),
    }
    assert all(r.device_id == "cam-traffic-sudirman" for r in first.readings)
    # A peek (the service looking for the earliest pending reading) takes nothing.
    peek = reader.read(topic, encode_analysis(analysis("cam-traffic-sudirman", 5.5)), take=False)
    assert peek.readings
    # The next frames of the same 5 s interval are skipped; the next interval counts.
    assert reader.read(topic, encode_analysis(analysis("cam-traffic-sudirman", 4.0))).skipped
    assert reader.read(topic, encode_analysis(analysis("cam-traffic-sudirman", 5.1))).readings
    # Not a registered camera, or a payload of another camera: rejected (ingest
    # dead-letters them).
    assert reader.read(
        topics.camera_analysis("cam-x"), encode_analysis(analysis("cam-x", 0))
    ).rejected
    wrong = encode_analysis(analysis("cam-traffic-thamrin", 20))
    assert reader.read(topic, wrong).rejected
    # A traffic camera's kind has no water_depth: a stray measure is not a reading.
    stray = reader.read(topic, encode_analysis(analysis("cam-traffic-sudirman", 30, water_depth=5)))
    assert "water_depth" not in {r.metric for r in stray.readings}


# --- cross_check ---------------------------------------------------------------------


def test_agreement_raises_nothing(tmp_path: Path, cam_city: City) -> None:
    rules = cross_rules(tmp_path, cam_city)
    stream = timeline(every(0, 40, 40.0), every(0, 40, 50.0, step=1))  # 10 cm apart
    assert judge(cam_city, rules, stream, until=45) == []


def test_disagreement_held_raises_naming_both_devices_and_values(
    tmp_path: Path, cam_city: City
) -> None:
    rules = cross_rules(tmp_path, cam_city)
    stream = timeline(every(0, 30, 40.0), every(0, 30, 80.0, step=1))  # 40 cm apart
    changes = judge(cam_city, rules, stream, until=30)
    assert [c.state for c in changes] == [S.PENDING, S.ACTIVE]
    pending, active = changes
    assert (pending.at, active.at) == (at(0), at(10))
    kel = cam_city.devices[CAM].kelurahan_id
    assert active.key == DedupKey("xcheck", kel, Hazard.DATA_QUALITY)
    assert active.severity is Severity.WASPADA
    assert active.evidence is not None
    assert active.evidence.device_ids == (CAM, STATION)
    assert active.evidence.metric == "water_depth"
    assert active.evidence.peak_value == 40.0
    for text in (CAM, STATION, "water_depth 40 cm", "water_level 80 cm", "differ by 40.0 cm"):
        assert text in active.reason, active.reason


def test_a_disagreement_shorter_than_the_hold_does_not_raise(
    tmp_path: Path, cam_city: City
) -> None:
    rules = cross_rules(tmp_path, cam_city)
    stream = timeline(every(0, 8, 40.0) + every(8, 30, 78.0), every(0, 30, 80.0, step=1))
    changes = judge(cam_city, rules, stream, until=30)
    assert [c.state for c in changes] == [S.PENDING, S.CLEARED]
    assert changes[1].at == at(8)


def test_it_clears_after_agreeing_for_the_clear_hold(tmp_path: Path, cam_city: City) -> None:
    rules = cross_rules(tmp_path, cam_city)
    # 40 cm apart until minute 20, then 12 cm (between clear and tolerance: holds on),
    # then 5 cm from minute 24.
    camera = every(0, 20, 40.0) + every(20, 24, 68.0) + every(24, 40, 75.0)
    changes = judge(cam_city, rules, timeline(camera, every(0, 40, 80.0, step=1)), until=40)
    assert [(c.state, c.at) for c in changes] == [
        (S.PENDING, at(0)),
        (S.ACTIVE, at(10)),
        (S.RECOVERING, at(24)),
        (S.CLEARED, at(29)),
    ]


def test_a_silent_side_is_not_judged(tmp_path: Path, cam_city: City) -> None:
    rules = cross_rules(tmp_path, cam_city)
    # The station says nothing: the camera alone raises nothing (absence's job) ...
    assert judge(cam_city, rules, timeline(every(0, 30, 40.0), []), until=40) == []
    # ... nor does the station alone.
    assert judge(cam_city, rules, timeline([], every(0, 30, 80.0, step=1)), until=40) == []
    # A station that stopped reporting 20 minutes ago does not count either.
    stream = timeline(every(20, 40, 40.0), every(0, 1, 80.0, step=1))
    assert judge(cam_city, rules, stream, until=45) == []


def test_an_open_disagreement_whose_station_goes_silent_turns_no_data(
    tmp_path: Path, cam_city: City
) -> None:
    rules = cross_rules(tmp_path, cam_city)
    stream = timeline(every(0, 40, 40.0), every(0, 15, 80.0, step=1))  # last at minute 14
    changes = judge(cam_city, rules, stream, until=45)
    assert [(c.state, c.at) for c in changes] == [
        (S.PENDING, at(0)),
        (S.ACTIVE, at(10)),
        (S.NO_DATA, at(14 + 3)),
    ]
    assert STATION in changes[-1].reason


def test_the_gauge_cannot_show_more_than_its_top_mark(tmp_path: Path, cam_city: City) -> None:
    rules = cross_rules(tmp_path, cam_city)
    # The station at 170 cm: the 120 cm gauge is under water and reads its top.
    stream = timeline(every(0, 30, 119.5), every(0, 30, 170.0, step=1))
    assert judge(cam_city, rules, stream, until=30) == []


def test_the_station_offset_is_taken_off_the_station_level(
    tmp_path: Path, city: City, cameras: dict[str, Camera]
) -> None:
    shifted = {**cameras, CAM: dataclasses.replace(cameras[CAM], station_offset_cm=100.0)}
    offset_city = rules_city(city, shifted)
    rules = cross_rules(tmp_path, offset_city)
    agree = timeline(every(0, 30, 40.0), every(0, 30, 142.0, step=1))  # 142 - 100 = 42
    assert judge(offset_city, rules, agree, until=30) == []
    differ = timeline(every(0, 30, 40.0), every(0, 30, 80.0, step=1))  # 80 - 100 -> 0
    changes = judge(offset_city, rules, differ, until=30)
    assert [c.state for c in changes] == [S.PENDING, S.ACTIVE]
    assert "80 - offset 100 -> 0 cm" in changes[-1].reason


def test_cross_check_spec_mistakes(tmp_path: Path, cam_city: City) -> None:
    with pytest.raises(ConfigErrors, match="clear must not exceed tolerance"):
        cross_rules(tmp_path, cam_city, CROSS.replace("clear: 10", "clear: 20"))
    with pytest.raises(ConfigErrors, match="unknown metric 'water_lvl'"):
        cross_rules(tmp_path, cam_city, CROSS.replace("against: water_level", "against: water_lvl"))
    with pytest.raises(ConfigErrors, match="uses flood_depth_cm but device"):
        flood = (
            CROSS.split("  - id:", maxsplit=1)[0]
            + """\
  - id: f
    kind: threshold
    hazard: flood
    description: stations have no flood depth
    applies_to: {kinds: [water_level_station]}
    zone_level: kelurahan
    metric: water_level
    raise: levels.flood_depth_cm
    clear: 10
"""
        )
        cross_rules(tmp_path, cam_city, flood)


# --- the camera rules of config/rules.yaml ------------------------------------------


def test_default_flood_camera_rule_uses_the_camera_flood_depth(cam_city: City) -> None:
    rules = load_rules(DEFAULT, cam_city)
    only = RuleSet(rules.lateness, tuple(r for r in rules.rules if r.id == "flood-camera-depth"))
    # flood_depth_cm 60: 58 nothing, 62 waspada after 1 minute, 82 siaga.
    stream = [cam(58.0, m / 12) for m in range(12)]
    stream += [cam(62.0, 1 + m / 12) for m in range(24)]
    stream += [cam(82.0, 3 + m / 12) for m in range(12)]
    eng = RuleEngine(cam_city, only, ManualClock(T0))
    changes = eng.ingest(stream)
    assert [(c.state, c.severity) for c in changes] == [
        (S.PENDING, Severity.WASPADA),
        (S.ACTIVE, Severity.WASPADA),
        (S.ACTIVE, Severity.SIAGA),
    ]
    assert changes[1].at == at(2)
    assert changes[1].key.hazard is Hazard.FLOOD


def test_default_camera_fault_and_queue_rules(cam_city: City) -> None:
    rules = load_rules(DEFAULT, cam_city)
    ids = {"camera-fault", "traffic-camera-queue"}
    only = RuleSet(rules.lateness, tuple(r for r in rules.rules if r.id in ids))
    tcam = "cam-traffic-sudirman"

    def r(metric: str, value: float, second: float) -> Reading:
        return Reading(
            device_id=tcam,
            metric=metric,
            value=value,
            unit="",
            time=T0 + timedelta(seconds=second),
        )

    stream = [r("camera_fault", 1.0 if s >= 60 else 0.0, s) for s in range(0, 300, 5)]
    stream += [r("stopped_traffic", float(max(0, s - 30)), s) for s in range(0, 300, 5)]
    eng = RuleEngine(cam_city, only, ManualClock(T0))
    changes = eng.ingest(sorted(stream, key=lambda x: x.time))
    active = {c.key.rule_id: c for c in changes if c.state is S.ACTIVE}
    assert active["camera-fault"].key.hazard is Hazard.CAMERA_FAULT
    assert active["camera-fault"].at == T0 + timedelta(seconds=180)  # 1 at 60 s + 2 min
    assert active["traffic-camera-queue"].key.hazard is Hazard.TRAFFIC_JAM
    assert active["traffic-camera-queue"].at == T0 + timedelta(seconds=210)  # 120 s at 150 s


def test_camera_rules_change_nothing_for_the_sensor_fleet(city: City, cam_city: City) -> None:
    """The same sensor stream through the default rules with and without cameras."""
    rules = load_rules(DEFAULT, city)
    stream = [
        Reading(device_id=STATION, metric="water_level", value=200.0 + 3 * m, unit="cm", time=at(m))
        for m in range(60)
    ]
    plain = RuleEngine(city, rules, ManualClock(T0))
    with_cams = RuleEngine(cam_city, load_rules(DEFAULT, cam_city), ManualClock(T0))
    a = plain.ingest(stream) + plain.advance_watermark(at(70))
    b = with_cams.ingest(stream) + with_cams.advance_watermark(at(70))
    camera_rules = {
        r.id for r in rules.rules if any(k.startswith("cctv_") for k in r.applies_to.kinds)
    }
    assert camera_rules == {
        "flood-camera-depth",
        "traffic-camera-queue",
        "camera-fault",
        "camera-offline",
        "flood-camera-vs-station",
    }
    assert any(c.key.rule_id == "flood-water-level" for c in a)
    assert [c for c in b if c.key.rule_id not in camera_rules] == a
    # Silent cameras are reported by camera-offline, and only by it.
    assert {c.key.rule_id for c in b if c.key.rule_id in camera_rules} == {"camera-offline"}
