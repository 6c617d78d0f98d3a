"""A fault's first second: a frame whose health is out of bounds is no better before the
fault's raise delay has passed, so its region and gauge measures carry low confidence
from the first such frame on. A glare or a cover shorter than the raise delay, read
through the real rule engine (config/rules.yaml's camera rules with no holds, plus a
congestion rule on occupancy), opens no incident; the same rules open them on a real
jam and a real flood. And a step in brightness is not motion."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import pytest
import yaml

from pantau.cameras import Camera
from pantau.city import City
from pantau.clock import ManualClock
from pantau.frame_analysis import FrameAnalysis
from pantau.incidents import ConditionChange, Hazard
from pantau.topics import Topics
from rules.cameras import MIN_CONFIDENCE, CameraReadings, rules_city
from rules.engine import RuleEngine
from rules.rulespec import load_rules
from simulators.camera.faults import Fault, FaultInjector, FaultWindow
from simulators.camera.scene import DrainScene, Image, RoadScene, Truth, Vehicle
from tests.vision.sequences import T0, Scene, run
from vision.health import RAISE_AFTER_S

DEFAULT_RULES = Path(__file__).resolve().parents[2] / "config" / "rules.yaml"
ROAD, FLOOD = "cam-traffic-sudirman", "cam-flood-babakan"
FPS = 5.0
SHORT_S = RAISE_AFTER_S - 1 / FPS  # the longest fault that must not be raised
# A glare at 6 s and a cover at 12 s, each shorter than the raise delay.
BRIEF = FaultInjector(
    (
        FaultWindow(Fault.GLARE, 6.0, 6.0 + SHORT_S),
        FaultWindow(Fault.OCCLUSION, 12.0, 12.0 + SHORT_S),
    )
)
CONGESTION = {
    "id": "road-occupied",
    "kind": "threshold",
    "hazard": "traffic_jam",
    "description": "More than half a region of a traffic camera occupied.",
    "applies_to": {"kinds": ["cctv_traffic"]},
    "zone_level": "kelurahan",
    "metric": "region_occupancy",
    "raise": 50,
    "clear": 30,
    "severity": "waspada",
}


def flowing() -> list[Vehicle]:
    return [
        Vehicle(0, 100, 80, 70, (40, 40, 180)),
        Vehicle(0, 420, 95, 60, (30, 120, 30)),
        Vehicle(1, 500, 60, 90, (180, 180, 180)),
        Vehicle(1, 150, 70, 110, (20, 20, 20)),
    ]


def jammed() -> list[Vehicle]:
    """Both lanes fill up after the background is learned and stand from 9.5 s."""
    east = [Vehicle(0, -260 - i * 90, 100, 75, (40, 40, 180), stop_at_s=9.5) for i in range(8)]
    west = [Vehicle(1, 900 + i * 90, 100, 75, (180, 180, 180), stop_at_s=9.5) for i in range(8)]
    return east + west


@pytest.fixture(scope="module")
def engine_rules(
    tmp_path_factory: pytest.TempPathFactory, city: City, cameras: dict[str, Camera]
) -> tuple[City, Any]:
    """config/rules.yaml's camera threshold rules raising at once, and a congestion rule."""
    doc: dict[str, Any] = yaml.safe_load(DEFAULT_RULES.read_text())
    keep = {"flood-camera-depth", "traffic-camera-queue", "camera-fault"}
    rules = [r for r in doc["rules"] if r["id"] in keep]
    assert {r["id"] for r in rules} == keep
    for r in [*rules, CONGESTION]:
        r["raise_for"] = "0s"
    path = tmp_path_factory.mktemp("rules") / "rules.yaml"
    path.write_text(yaml.safe_dump({"lateness": "1s", "rules": [*rules, CONGESTION]}))
    cam_city = rules_city(city, cameras)
    return cam_city, load_rules(path, cam_city)


def judge(
    engine_rules: tuple[City, Any], cameras: dict[str, Camera], analyses: Iterable[FrameAnalysis]
) -> list[ConditionChange]:
    """Every analysed frame through the rules (not one per report interval: any frame
    could be the one the rules take)."""
    cam_city, rules = engine_rules
    reader = CameraReadings(cameras, cam_city.catalogue, Topics("t"))
    engine = RuleEngine(cam_city, rules, ManualClock(T0))
    changes, last = [], T0
    for a in analyses:
        changes += engine.ingest(reader.readings(a))
        last = a.time
    return changes + engine.advance_watermark(last)


def analyse(
    camera: Camera, scene: Scene, faults: FaultInjector | None = None
) -> list[tuple[FrameAnalysis, Truth]]:
    return list(run(camera, scene, 18.0, FPS, faults))


def test_a_brief_glare_or_cover_opens_no_congestion(
    engine_rules: tuple[City, Any], cameras: dict[str, Camera]
) -> None:
    camera = cameras[ROAD]
    frames = analyse(camera, RoadScene(vehicles=flowing(), seed=7), BRIEF)
    assert all(a.faults == () for a, _ in frames), "shorter than the raise delay"
    # The dazzled and covered frames read a full road, at low confidence.
    for a, truth in frames:
        occupied = max(m.value for m in a.measures if m.name == "region_occupancy")
        doubted = all(
            m.confidence < MIN_CONFIDENCE
            for m in a.measures
            if m.name in {"region_occupancy", "region_motion", "stopped_traffic"}
        )
        assert doubted == bool(BRIEF.active(truth.t)), f"at {truth.t:.1f} s"
        if BRIEF.active(truth.t) == (Fault.GLARE,):
            assert occupied > 0.5
    assert judge(engine_rules, cameras, (a for a, _ in frames)) == []
    # The same rules on a jam.
    jam = analyse(camera, RoadScene(vehicles=jammed(), seed=7))
    opened = {c.key.hazard for c in judge(engine_rules, cameras, (a for a, _ in jam))}
    assert opened == {Hazard.TRAFFIC_JAM}


def test_a_brief_glare_or_cover_opens_no_flood(
    engine_rules: tuple[City, Any], cameras: dict[str, Camera]
) -> None:
    camera = cameras[FLOOD]  # flood from 60 cm
    frames = analyse(camera, DrainScene(depth_start_cm=30.0, seed=3), BRIEF)
    assert all(a.faults == () for a, _ in frames), "shorter than the raise delay"
    for a, truth in frames:
        depth = next(m for m in a.measures if m.name == "water_depth")
        if BRIEF.active(truth.t):
            assert depth.confidence < MIN_CONFIDENCE, f"{depth} at {truth.t:.1f} s"
        if BRIEF.active(truth.t) == (Fault.OCCLUSION,):
            assert depth.value >= 60  # the cloth over the board reads as a flood
    assert judge(engine_rules, cameras, (a for a, _ in frames)) == []
    flood = analyse(camera, DrainScene(depth_start_cm=70.0, seed=3))
    opened = {c.key.hazard for c in judge(engine_rules, cameras, (a for a, _ in flood))}
    assert opened == {Hazard.FLOOD}


@dataclass(slots=True)
class Relit:
    """`scene` with its brightness multiplied by `gain` from `at_s` on."""

    scene: Scene
    gain: float
    at_s: float

    def render(self, t: float) -> tuple[Image, Truth]:
        img, truth = self.scene.render(t)
        if t >= self.at_s:
            img = cv2.convertScaleAbs(img, alpha=self.gain)
        return img, truth


@pytest.mark.parametrize("gain", [0.06, 0.5, 1.5])  # 0.06: dark, a fault of its own
def test_a_brightness_step_is_not_motion(gain: float, cameras: dict[str, Camera]) -> None:
    standing = [Vehicle(0, 300, 0, 80, (40, 40, 180)), Vehicle(1, 200, 0, 90, (180, 180, 180))]
    scene = Relit(RoadScene(vehicles=standing, seed=7), gain, at_s=4.0)
    for a, truth in run(cameras[ROAD], scene, 8.0, FPS):
        motion = max(m.value for m in a.measures if m.name == "region_motion")
        assert motion <= 0.01, f"motion {motion:.2f} at {truth.t:.1f} s"
