"""One camera's analysis: a frame in, a `FrameAnalysis` out (health, regions, gauge).

Frames are reduced once to an `ANALYSIS_WIDTH` grey picture that health and motion
share; the gauge is read on the full frame (its marks are small); frozen detection
looks at raw pixels subsampled without averaging, so sensor noise is still there.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from time import thread_time

import cv2
import numpy as np
from cv2.typing import MatLike

from pantau.cameras import Camera, CameraKind
from pantau.frame_analysis import FrameAnalysis, Measure
from vision.gauge import DepthReading, GaugeReader
from vision.health import Debouncer, HealthAnalyzer, HealthMeasures
from vision.motion import MotionAnalyzer, RegionMeasures

log = logging.getLogger(__name__)

Image = MatLike  # what OpenCV takes and returns

ANALYSIS_WIDTH = 320
RAW_STEP = 4  # raw-pixel subsampling for the frozen check
FLOOD_CLEAR_MARGIN_CM = 5.0  # hysteresis before a flood counts as over (for evidence)


@dataclass(frozen=True, slots=True)
class Prepared:
    small: Image  # ANALYSIS_WIDTH wide, colour
    gray: Image  # the same in grey
    raw: Image  # full-resolution green channel, every RAW_STEP-th pixel


def prepare(frame: Image) -> Prepared:
    h, w = frame.shape[:2]
    size = (ANALYSIS_WIDTH, max(1, round(h * ANALYSIS_WIDTH / w)))
    small = frame
    # Halving with INTER_LINEAR averages 2x2 blocks: a box-filter pyramid, as good as
    # INTER_AREA here and 4x cheaper.
    while small.shape[1] >= 2 * ANALYSIS_WIDTH:
        half = (small.shape[1] // 2, small.shape[0] // 2)
        small = cv2.resize(small, half, interpolation=cv2.INTER_LINEAR)
    if small.shape[1] != ANALYSIS_WIDTH:
        small = cv2.resize(small, size, interpolation=cv2.INTER_LINEAR)
    gray = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
    raw = np.ascontiguousarray(frame[::RAW_STEP, ::RAW_STEP, 1])
    return Prepared(small, gray, raw)


class CameraAnalyzer:
    def __init__(self, camera: Camera, evidence_dir: Path | None = None) -> None:
        self.camera = camera
        self._evidence_dir = evidence_dir
        self._health = HealthAnalyzer()  # replaced in _setup once the frame size is known
        self._faults = Debouncer()
        self._motion: MotionAnalyzer | None = None
        self._gauge: GaugeReader | None = None
        self._size: tuple[int, int] | None = None
        self._last_time: datetime | None = None
        self._flooding = False
        # CPU seconds per stage (this thread's), for bench.vision and the worker's stats.
        self.stage_cpu_s: defaultdict[str, float] = defaultdict(float)

    def analyse(self, frame: Image, time: datetime, seq: int) -> FrameAnalysis:
        h, w = frame.shape[:2]
        self._setup((w, h))
        dt = 0.0
        if self._last_time is not None:
            dt = max(0.0, (time - self._last_time).total_seconds())
        self._last_time = time
        cpu = self.stage_cpu_s
        t0 = thread_time()
        prepared = prepare(frame)
        t1 = thread_time()
        cpu["prepare"] += t1 - t0
        health = self._health.measure(prepared.gray, prepared.raw, dt)
        before = set(self._faults.raised)
        faults = self._faults.update(health.candidates, dt)
        measures = list(_health_measures(health, faults))
        t2 = thread_time()
        cpu["health"] += t2 - t1
        # A frame whose health is out of bounds is no better before its fault is raised
        # (the raise delay only keeps one odd frame from raising it): its measures are
        # not to be trusted from the first such frame on.
        usable = not health.candidates
        trusted = usable and not faults
        if self._motion is not None:
            for r in self._motion.measure(prepared.small, dt, usable=usable):
                measures.extend(_region_measures(r, 0.9 if trusted else 0.2))
        t3 = thread_time()
        cpu["motion"] += t3 - t2
        depth: DepthReading | None = None
        if self._gauge is not None:
            depth = self._gauge.read(frame)
            conf = depth.confidence * (1.0 if trusted else 0.2)
            measures.append(Measure("water_depth", round(depth.depth_cm, 1), "cm", conf))
        cpu["gauge"] += thread_time() - t3
        reason = self._evidence_reason(faults - before, depth if trusted else None)
        evidence = self._save_evidence(frame, time, reason) if reason else None
        return FrameAnalysis(
            camera_id=self.camera.id,
            time=time,
            seq=seq,
            width=w,
            height=h,
            measures=tuple(measures),
            faults=tuple(sorted(faults)),
            evidence=evidence,
        )

    @property
    def health(self) -> HealthAnalyzer:
        return self._health

    def _setup(self, size: tuple[int, int]) -> None:
        if size == self._size:
            return
        self._size = size
        w, h = size
        fw, fh = self.camera.frame_size
        analysis = (ANALYSIS_WIDTH, max(1, round(h * ANALYSIS_WIDTH / w)))
        self._health = HealthAnalyzer(static=_static_mask(self.camera, analysis))
        if self.camera.regions:
            self._motion = MotionAnalyzer(
                self.camera.regions, self.camera.frame_size, analysis, self.camera.sample_fps
            )
        if self.camera.kind is CameraKind.FLOOD and self.camera.gauge is not None:
            self._gauge = GaugeReader(self.camera.gauge, (w / fw, h / fh))

    def _evidence_reason(self, new_faults: frozenset[str], depth: DepthReading | None) -> str:
        reasons = sorted(new_faults)
        if depth is not None and depth.confidence >= 0.5:
            threshold = self.camera.flood_depth_cm
            if not self._flooding and depth.depth_cm >= threshold:
                self._flooding = True
                reasons.append("flood")
            elif self._flooding and depth.depth_cm < threshold - FLOOD_CLEAR_MARGIN_CM:
                self._flooding = False
        return "-".join(reasons)

    def _save_evidence(self, frame: Image, time: datetime, reason: str) -> str | None:
        if self._evidence_dir is None:
            return None
        folder = self._evidence_dir / self.camera.id
        folder.mkdir(parents=True, exist_ok=True)
        path = (
            folder
            / f"{time.strftime('%Y%m%dT%H%M%S')}.{time.microsecond // 1000:03d}Z-{reason}.jpg"
        )
        if not cv2.imwrite(str(path), frame, [cv2.IMWRITE_JPEG_QUALITY, 90]):
            log.warning("could not write evidence %s", path)
            return None
        return str(path)


def _static_mask(camera: Camera, size: tuple[int, int]) -> Image | None:
    """What should not change: the frame less its regions and gauge (if that leaves a
    quarter of the picture; else the whole frame)."""
    fw, fh = camera.frame_size
    sx, sy = size[0] / fw, size[1] / fh
    mask = np.full((size[1], size[0]), 255, np.uint8)
    for r in camera.regions:
        pts = np.array([[x * sx, y * sy] for x, y in r.polygon])
        cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 0)
    g = camera.gauge
    if g is not None:
        half = g.width_px
        x0, x1 = sorted((g.zero[0], g.top[0]))
        y0, y1 = sorted((g.zero[1], g.top[1]))
        top_left = (round((x0 - half) * sx), round(y0 * sy))
        bottom_right = (round((x1 + half) * sx), round(y1 * sy))
        cv2.rectangle(mask, top_left, bottom_right, 0, -1)
    if cv2.countNonZero(mask) < 0.25 * mask.size:
        return None
    return mask


def _health_measures(h: HealthMeasures, faults: frozenset[str]) -> list[Measure]:
    learned = 0.9 if h.learned else 0.1
    return [
        Measure("camera_brightness", h.brightness, "/", 1.0),
        Measure("camera_sharpness", h.sharpness, "/", learned),
        Measure("camera_frozen", h.frozen_s, "s", 0.95),
        Measure("camera_occlusion", h.occlusion, "/", learned),
        Measure("camera_shift", h.shift, "/", learned),
        Measure("camera_fault", 1.0 if faults else 0.0, "/", learned),
    ]


def _region_measures(r: RegionMeasures, confidence: float) -> list[Measure]:
    out = [
        Measure("region_motion", r.motion, "/", confidence, r.region),
        Measure("region_occupancy", r.occupancy, "/", confidence, r.region),
    ]
    if r.stopped_s is not None:
        out.append(Measure("stopped_traffic", r.stopped_s, "s", confidence, r.region))
    return out
