"""Camera health on simulated scenes: every injected fault is raised within 5 s of
simulated time, and a clean sequence raises none."""

from __future__ import annotations

import numpy as np
import pytest

from pantau.cameras import Camera
from simulators.camera.faults import EXPECTED_FAULT, Fault, FaultInjector, FaultWindow
from simulators.camera.scene import DrainScene, Lighting, RoadScene, Vehicle
from tests.vision.real_footage import Looped, as_camera, street
from tests.vision.sequences import Scene, run
from vision.analyzer import CameraAnalyzer
from vision.health import CLEAR_AFTER_S

INJECT_AT_S = 3.0
DETECT_WITHIN_S = 5.0
CONDITIONS = [
    ("road", Lighting.DAY, False),
    ("road", Lighting.NIGHT, False),
    ("road", Lighting.DAY, True),
    ("drain", Lighting.DAY, False),
    ("drain", Lighting.DUSK, False),
    ("drain", Lighting.DUSK, True),
]
TRAFFIC = [
    Vehicle(0, 100, 80, 70, (40, 40, 180)),
    Vehicle(0, 420, 95, 60, (30, 120, 30)),
    Vehicle(1, 500, 60, 90, (180, 180, 180)),
    Vehicle(1, 150, 70, 110, (20, 20, 20)),
]


def scene(kind: str, lighting: Lighting, rain: bool) -> Scene:
    if kind == "road":
        return RoadScene(lighting=lighting, rain=rain, vehicles=list(TRAFFIC), seed=7)
    return DrainScene(lighting=lighting, rain=rain, depth_start_cm=15, depth_rate_cm_s=0.5)


def camera_for(kind: str, cameras: dict[str, Camera]) -> Camera:
    return cameras["cam-traffic-sudirman" if kind == "road" else "cam-flood-babakan"]


@pytest.mark.parametrize(("kind", "lighting", "rain"), CONDITIONS)
def test_clean_sequence_raises_no_fault(
    kind: str, lighting: Lighting, rain: bool, cameras: dict[str, Camera]
) -> None:
    raised = [
        (a.time, a.faults)
        for a, _ in run(camera_for(kind, cameras), scene(kind, lighting, rain), seconds=15)
        if a.faults
    ]
    assert raised == []


@pytest.mark.parametrize("fault", list(Fault))
@pytest.mark.parametrize(("kind", "lighting", "rain"), CONDITIONS)
def test_injected_fault_is_raised_within_5_s(
    kind: str, lighting: Lighting, rain: bool, fault: Fault, cameras: dict[str, Camera]
) -> None:
    expected = EXPECTED_FAULT[fault]
    injector = FaultInjector((FaultWindow(fault, INJECT_AT_S),))
    camera = camera_for(kind, cameras)
    detected_after: float | None = None
    for analysis, truth in run(
        camera, scene(kind, lighting, rain), INJECT_AT_S + DETECT_WITHIN_S, faults=injector
    ):
        if truth.t < INJECT_AT_S:
            assert analysis.faults == (), f"fault before injection at {truth.t}s"
            continue
        # Only the injected fault: a covered lens is not also reported as blurred.
        assert set(analysis.faults) <= {expected}, f"{analysis.faults} at {truth.t}s"
        if expected in analysis.faults:
            detected_after = truth.t - INJECT_AT_S
            assert analysis.value("camera_fault") == 1.0
            break
    assert detected_after is not None, f"{expected} not raised within {DETECT_WITHIN_S}s"
    assert detected_after <= DETECT_WITHIN_S


def test_fault_clears_after_the_camera_recovers(cameras: dict[str, Camera]) -> None:
    injector = FaultInjector((FaultWindow(Fault.BLUR, 3.0, 6.0),))
    runs = list(run(cameras["cam-traffic-sudirman"], scene("road", Lighting.DAY, False), 12,
                    faults=injector))  # fmt: skip
    faults = {round(t.t, 1): a.faults for a, t in runs}
    assert faults[5.0] == ("blur",)
    assert faults[11.8] == ()


@pytest.fixture(scope="module")
def real_street() -> Looped:
    return street()


@pytest.mark.parametrize("fault", list(Fault))
@pytest.mark.parametrize("where", ["road", "real-street"])
def test_every_fault_clears_within_its_clear_delay_and_the_reference_holds(
    where: str, fault: Fault, real_street: Looped, cameras: dict[str, Camera]
) -> None:
    # Half a minute of clean picture first (a reference that decays shows by then), and
    # 10 s of fault (a freeze is raised after 2 s + the raise delay).
    start, end, fps = 30.0, 40.0, 5.0
    if where == "road":
        camera, view = camera_for("road", cameras), scene("road", Lighting.DAY, False)
    else:
        camera = as_camera(cameras["cam-traffic-sudirman"], "street", real_street, fps)
        view = real_street
    analyzer = CameraAnalyzer(camera)
    injector = FaultInjector((FaultWindow(fault, start, end),))
    expected = EXPECTED_FAULT[fault]
    raised, cleared_after = False, None
    before = after = None
    for analysis, truth in run(camera, view, end + CLEAR_AFTER_S + 4.0, fps, injector, analyzer):
        if truth.t < start:
            assert analysis.faults == (), f"{analysis.faults} at {truth.t:.1f} s"
        # The last live picture (a freeze repeats the live frame of its first instant).
        if truth.t < start or (fault is Fault.FREEZE and truth.t < start + 0.5 / fps):
            before = analyzer.health.reference
            continue
        if truth.t < end:
            assert set(analysis.faults) <= {expected}, f"{analysis.faults} at {truth.t:.1f} s"
            raised |= expected in analysis.faults
            after = analyzer.health.reference
        elif analysis.faults == ():
            cleared_after = truth.t - end if cleared_after is None else cleared_after
        else:
            assert cleared_after is None, f"{analysis.faults} again at {truth.t:.1f} s"
    assert raised, f"{expected} never raised"
    assert cleared_after is not None and cleared_after <= CLEAR_AFTER_S
    # The reference did not follow the faulty picture, not even a frozen one in the 2 s
    # before it counts as frozen.
    assert before is not None and after is not None
    drift = [float(np.abs(a - b).max()) for a, b in zip(after, before, strict=True)]
    print(f"{where} {fault}: cleared {cleared_after:.1f} s after, reference drift {drift}")
    assert drift == [0.0, 0.0]
