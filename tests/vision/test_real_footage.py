"""Camera health on real footage of fixed cameras (tests/vision/real_footage.py), looped
to a minute and analysed at 2, 5 and 10 frames/s: no fault at any time, no frame out of
bounds, and the shift check reads the camera as still."""

from __future__ import annotations

import numpy as np
import pytest

from pantau.cameras import Camera
from tests.vision.real_footage import SCENES, Looped, as_camera
from tests.vision.sequences import run

SECONDS = 60.0
SHIFT_P99 = 0.01  # share of the width: 1.6 px of the phase picture


@pytest.fixture(scope="module")
def footage() -> dict[str, Looped]:
    return {name: make() for name, make in SCENES.items()}


@pytest.mark.parametrize("fps", [2.0, 5.0, 10.0])
@pytest.mark.parametrize("name", list(SCENES))
def test_clean_real_footage_raises_no_fault(
    name: str, fps: float, footage: dict[str, Looped], cameras: dict[str, Camera]
) -> None:
    scene = footage[name]
    camera = as_camera(cameras["cam-traffic-sudirman"], name, scene, fps)
    shifts, doubted = [], []
    for analysis, truth in run(camera, scene, SECONDS, fps):
        assert analysis.faults == (), f"{analysis.faults} at {truth.t:.1f} s"
        assert analysis.value("camera_fault") == 0.0
        # No frame out of bounds either: its region measures would be discarded.
        doubted += [(truth.t, m.name) for m in analysis.measures if m.region and m.confidence < 0.5]
        shift = next(m for m in analysis.measures if m.name == "camera_shift")
        if shift.confidence >= 0.5:  # the reference is learned
            shifts.append(shift.value)
    assert doubted == []
    assert len(shifts) >= SECONDS * fps - 10
    p99 = float(np.percentile(shifts, 99))
    print(f"{name} at {fps:g} fps: camera_shift median {np.median(shifts):.4f} p99 {p99:.4f}")
    assert p99 <= SHIFT_P99
