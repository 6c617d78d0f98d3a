"""Motion, occupancy and stopped traffic per region, at reduced resolution.

- motion: the share of a region whose grey level changed since the previous analysed
  frame (frame differencing at matched mean brightness: what moves now, not the light);
- occupancy: the share of a region that differs from the learned empty background
  (background subtraction: what is there, moving or standing). The background starts
  as the per-pixel median of the first `BOOTSTRAP_FRAMES` (traffic that moves is not
  in the median, so a busy road still yields an empty one), then follows the picture
  as a running average with a one-minute time constant, only where nothing is in
  front of it: a standing vehicle stays "occupied" for minutes, not seconds. The
  frame is compared with the background scaled to its own mean brightness, so a cloud
  is not traffic;
- stopped traffic: seconds a lane has stayed occupied (>= 0.20) with almost no motion
  (< 0.02): a queue, a breakdown, a flooded stretch.

Region polygons come from the registry in frame_size pixels and are rasterised once
onto the reduced grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt
from cv2.typing import MatLike

from pantau.cameras import Region, RegionKind

Gray = MatLike
Image = MatLike


def _max_channel(diff: Image) -> Gray:
    b, g, r = cv2.split(diff)  # numpy's max(axis=2) is 50x slower here
    return cv2.max(cv2.max(b, g), r)


MOTION_DELTA = 18  # grey levels: above noise, rain streaks are thin and mostly removed by
OPEN_KERNEL = np.ones((3, 3), np.uint8)  # ... this opening
FOREGROUND_DELTA = 22
STOPPED_OCCUPANCY = 0.20
STOPPED_MOTION = 0.02
BACKGROUND_TAU_S = 60.0
SLOW_TAU_S = 600.0  # under foreground: a vehicle parked for good becomes road eventually
BOOTSTRAP_FRAMES = 9
LEVEL_TOLERANCE = 1.03  # mean brightness ratio up to which frames are compared as they are
CLIPPED = 250  # a channel from this level on may be burnt out
CLIPPED_KERNEL = np.ones((5, 5), np.uint8)  # the reach of prepare's averaging and the blur


def _level_difference(frame: Image, prev: Image) -> Image:
    """|frame - prev| with the brighter of the two scaled to the other's level: a lamp
    switched on or the iris opening changes every pixel, and moves nothing."""
    now, before = sum(cv2.mean(frame)[:3]), sum(cv2.mean(prev)[:3])
    if max(now, before) <= min(now, before) * LEVEL_TOLERANCE:
        return cv2.absdiff(frame, prev)
    dark, bright = (frame, prev) if now < before else (prev, frame)
    gain = max(now, before) / max(min(now, before), 1e-6)
    # Only where neither frame is (or, brightened, would be) burnt out, nor was averaged
    # with such a pixel on the way to the analysis size: there the level does not scale.
    lit = min(CLIPPED / gain, CLIPPED)
    kept = cv2.bitwise_and(
        cv2.inRange(dark, (0, 0, 0), (lit, lit, lit)),
        cv2.inRange(bright, (0, 0, 0), (CLIPPED, CLIPPED, CLIPPED)),
    )
    kept = cv2.erode(kept, CLIPPED_KERNEL)
    if cv2.countNonZero(kept) == 0:
        return np.zeros_like(frame)
    level = sum(cv2.mean(dark, mask=kept)[:3]) / max(sum(cv2.mean(bright, mask=kept)[:3]), 1e-6)
    diff = cv2.absdiff(dark, cv2.convertScaleAbs(bright, alpha=level))
    return cv2.bitwise_and(diff, diff, mask=kept)


@dataclass(frozen=True, slots=True)
class RegionMeasures:
    region: str
    motion: float
    occupancy: float
    stopped_s: float | None  # lanes only


class MotionAnalyzer:
    def __init__(
        self,
        regions: tuple[Region, ...],
        frame_size: tuple[int, int],
        analysis_size: tuple[int, int],
        fps: float,
    ) -> None:
        sx = analysis_size[0] / frame_size[0]
        sy = analysis_size[1] / frame_size[1]
        self._regions = regions
        self._masks: list[tuple[Gray, int]] = []
        for r in regions:
            mask = np.zeros((analysis_size[1], analysis_size[0]), np.uint8)
            pts = np.array([[x * sx, y * sy] for x, y in r.polygon], np.float64)
            cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 255)
            self._masks.append((mask, max(cv2.countNonZero(mask), 1)))
        self._rate = min(1.0, 1.0 / (BACKGROUND_TAU_S * fps))
        self._slow_rate = min(1.0, 1.0 / (SLOW_TAU_S * fps))
        self._bootstrap: list[Image] = []
        self._background: npt.NDArray[np.float32] | None = None
        self._prev: Image | None = None
        self._stopped = [0.0] * len(regions)

    def measure(self, small: Image, dt: float, usable: bool = True) -> list[RegionMeasures]:
        """`small`: the reduced colour picture. Colour, not grey: a red car on grey
        asphalt has the asphalt's luma. `usable`: False while the frame's health is out
        of bounds (dazzled, covered, moved): it is measured, but teaches the background
        nothing, is not the next frame's predecessor and holds the stopped time."""
        blurred = cv2.GaussianBlur(small, (3, 3), 0)
        fg = self._foreground(blurred, learn=usable)
        if self._prev is None:
            moving = np.zeros_like(fg)
        else:
            moving = cv2.morphologyEx(
                cv2.threshold(
                    _max_channel(_level_difference(blurred, self._prev)),
                    MOTION_DELTA,
                    255,
                    cv2.THRESH_BINARY,
                )[1],
                cv2.MORPH_OPEN,
                OPEN_KERNEL,
            )
        if usable:
            self._prev = blurred
        out = []
        for i, (r, (mask, area)) in enumerate(zip(self._regions, self._masks, strict=True)):
            motion = cv2.countNonZero(cv2.bitwise_and(moving, mask)) / area
            occupancy = cv2.countNonZero(cv2.bitwise_and(fg, mask)) / area
            stopped: float | None = None
            if r.kind is RegionKind.LANE:
                still = occupancy >= STOPPED_OCCUPANCY and motion < STOPPED_MOTION
                if usable:
                    self._stopped[i] = self._stopped[i] + dt if still else 0.0
                stopped = self._stopped[i]
            out.append(RegionMeasures(r.id, motion, occupancy, stopped))
        return out

    def _foreground(self, blurred: Image, *, learn: bool) -> Gray:
        if self._background is None:
            if learn:
                self._bootstrap.append(blurred)
            median = np.median(np.stack(self._bootstrap or [blurred]), axis=0).astype(np.float32)
            if len(self._bootstrap) >= BOOTSTRAP_FRAMES:
                self._background = median
                self._bootstrap.clear()
            bg = median
        else:
            bg = self._background
        frame = blurred.astype(np.float32)
        gain = float(frame.mean()) / max(float(bg.mean()), 1.0)
        diff = _max_channel(cv2.absdiff(frame, bg * np.float32(gain)))
        _, fg = cv2.threshold(diff, FOREGROUND_DELTA, 255, cv2.THRESH_BINARY)
        fg = cv2.morphologyEx(fg.astype(np.uint8), cv2.MORPH_OPEN, OPEN_KERNEL)
        if self._background is not None and learn:
            # Follow the empty road; under a vehicle only very slowly.
            cv2.accumulateWeighted(frame, self._background, self._rate, mask=255 - fg)
            cv2.accumulateWeighted(frame, self._background, self._slow_rate, mask=fg)
        return fg

    def reset_motion(self) -> None:
        """Forget the previous frame (after a reconnect the next frame is not its successor)."""
        self._prev = None
