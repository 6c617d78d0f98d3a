"""Run a simulated camera through the analyzer in simulated time (no I/O)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Protocol

from pantau.cameras import Camera
from pantau.frame_analysis import FrameAnalysis
from simulators.camera.faults import FaultInjector
from simulators.camera.scene import Image, Truth
from vision.analyzer import CameraAnalyzer

T0 = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)


class Scene(Protocol):
    def render(self, t: float) -> tuple[Image, Truth]: ...


def run(
    camera: Camera,
    scene: Scene,
    seconds: float,
    fps: float = 5.0,
    faults: FaultInjector | None = None,
    analyzer: CameraAnalyzer | None = None,
) -> Iterator[tuple[FrameAnalysis, Truth]]:
    analyzer = analyzer or CameraAnalyzer(camera)
    for i in range(round(seconds * fps)):
        t = i / fps
        img, truth = scene.render(t)
        if faults is not None:
            img = faults.apply(img, t)
        yield analyzer.analyse(img, T0 + timedelta(seconds=t), i), truth
