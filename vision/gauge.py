"""Water depth read from a painted staff gauge.

The gauge is cut out of the frame as an upright strip, `ROWS_PER_CM` rows per cm (one
affine warp, so a tilted gauge reads the same). Above the water each row shows the
board (paint, marks); below it, water. Each row is described by its mean colour, its
spread across the board, and that spread over its brightness (the marks' contrast,
which a street light's gradient along the board does not change), smoothed over one
10 cm period of the E marks so the board reads as one level. The water line is first
where a two-level (step) fit of the spread and contrast splits best (the change point
with the least squared error, in O(rows) with cumulative sums), then refined to the
row: the water's colour and spread are learned just below that line, and the line is
the lowest row above which the rows stop looking like water. No colour of the board is
needed in config. Confidence is the step's height against the spread within the two
parts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt
from cv2.typing import MatLike

from pantau.cameras import Gauge

ROWS_PER_CM = 2.0
MARGIN_CM = 6.0  # read a little past both ends, so 0 cm and the top are inside
STRIP_WIDTH = 12
REFINE_CM = 6.0
WATER_SIGMAS = 4.0
SMOOTH_CM = 10.0  # one period of the E pattern: the board reads as one level
STREAK_KERNEL = np.ones((1, 3), np.uint8)  # a row of 3 strip columns: wider than a streak

Image = MatLike  # what OpenCV takes and returns
Floats = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class DepthReading:
    depth_cm: float
    confidence: float


class GaugeReader:
    def __init__(self, gauge: Gauge, scale: tuple[float, float]) -> None:
        """`scale` maps the config's frame_size pixels to the stream's."""
        sx, sy = scale
        zx, zy = gauge.zero[0] * sx, gauge.zero[1] * sy
        tx, ty = gauge.top[0] * sx, gauge.top[1] * sy
        self._top_cm = gauge.top_cm
        self._rows = round((gauge.top_cm + 2 * MARGIN_CM) * ROWS_PER_CM)
        self._zero_row = (gauge.top_cm + MARGIN_CM) * ROWS_PER_CM
        # Affine map from image to strip: zero -> (centre, zero_row), top -> (centre,
        # MARGIN rows); the board's width spans the strip's width.
        ax, ay = tx - zx, ty - zy
        length = math.hypot(ax, ay)
        ux, uy = ax / length, ay / length  # along the gauge, upwards in the image
        px, py = -uy, ux  # across it
        rows_per_px = gauge.top_cm * ROWS_PER_CM / length
        cols_per_px = STRIP_WIDTH / (gauge.width_px * 0.8 * math.hypot(sx, sy) / math.sqrt(2))
        # strip (c, r) = A @ (x - zx, y - zy) + (STRIP_WIDTH / 2, zero_row)
        a = np.array([[px * cols_per_px, py * cols_per_px], [-ux * rows_per_px, -uy * rows_per_px]])
        b = np.array([STRIP_WIDTH / 2, self._zero_row]) - a @ np.array([zx, zy])
        self._warp = np.hstack([a, b[:, None]]).astype(np.float64)

    def strip(self, frame: Image) -> Image:
        return cv2.warpAffine(frame, self._warp, (STRIP_WIDTH, self._rows), flags=cv2.INTER_LINEAR)

    def read(self, frame: Image) -> DepthReading:
        # Rain streaks are bright lines a pixel or two wide: a horizontal opening takes
        # them out and keeps the marks and the water line, which span the board.
        strip = cv2.morphologyEx(self.strip(frame), cv2.MORPH_OPEN, STREAK_KERNEL)
        strip = strip.astype(np.float64)
        mean = strip.mean(axis=1)
        spread = strip.std(axis=1).mean(axis=1, keepdims=True)
        contrast = spread / (mean.mean(axis=1, keepdims=True) + 8.0)
        profile = np.concatenate([mean, spread, contrast], axis=1)
        k = max(1, int(SMOOTH_CM * ROWS_PER_CM))
        kernel = np.ones(k) / k
        padded = np.pad(profile, ((k // 2, k - 1 - k // 2), (0, 0)), mode="edge")
        smooth = np.stack(
            [np.convolve(padded[:, j], kernel, mode="valid") for j in range(profile.shape[1])],
            axis=1,
        )
        # Equal weight per feature, whatever the light.
        scale = smooth.std(axis=0)
        scale[scale < 1e-6] = 1.0
        feats = smooth / scale
        # Spread and contrast only: the colour means follow the light along the board.
        # Half a window from either end: at 0 cm the line is only MARGIN_CM from the bottom.
        split, gain, spread = _best_split(feats[:, -2:], margin=k // 2)
        split = _refine(profile, split)
        depth = (self._zero_row - split) / ROWS_PER_CM
        contrast = gain / max(spread, 1e-6)
        confidence = float(1.0 - math.exp(-contrast / 3.0))
        if depth < -1.0 or depth > self._top_cm + 1.0:
            confidence *= 0.3  # the line is off the graduated part
        return DepthReading(float(min(max(depth, 0.0), self._top_cm)), confidence)


def _refine(profile: Floats, coarse: float) -> float:
    """The water line to the row: the smoothed fit is off by up to half a period of
    the marks. Learn the water from rows well below the coarse line, then walk up
    from just below it to the first two rows in a row that are not water."""
    n = profile.shape[0]
    c = round(coarse)
    near, far = int(REFINE_CM * ROWS_PER_CM), int(2.5 * REFINE_CM * ROWS_PER_CM)
    below = profile[min(c + near, n - 1) : min(c + far, n)]
    if len(below) < 4:
        return coarse
    mean = below.mean(axis=0)
    spread = below.std(axis=0) + 2.0  # +2: sensor noise floor, in grey levels
    dist = np.abs((profile - mean) / spread).max(axis=1)
    start = min(c + near, n - 1)
    stop = max(c - near, 1)
    for r in range(start, stop, -1):
        if dist[r] > WATER_SIGMAS and dist[r - 1] > WATER_SIGMAS:
            return r + 1.0
    return coarse


def _best_split(feats: Floats, margin: int) -> tuple[float, float, float]:
    """Row (between rows) of the best two-level fit; the levels' distance; the pooled
    within-part spread."""
    n = feats.shape[0]
    csum = np.cumsum(feats, axis=0)
    csq = np.cumsum(feats**2, axis=0)
    total, total_sq = csum[-1], csq[-1]
    idx = np.arange(margin, n - margin)  # split after row i: [0..i] | [i+1..]
    left_n = (idx + 1)[:, None].astype(np.float64)
    right_n = (n - idx - 1)[:, None].astype(np.float64)
    left_s, left_q = csum[idx], csq[idx]
    right_s, right_q = total - left_s, total_sq - left_q
    sse = (left_q - left_s**2 / left_n).sum(axis=1) + (right_q - right_s**2 / right_n).sum(axis=1)
    best = int(np.argmin(sse))
    i = int(idx[best])
    mean_l = left_s[best] / left_n[best]
    mean_r = right_s[best] / right_n[best]
    gain = float(np.linalg.norm(mean_l - mean_r))
    spread = float(math.sqrt(max(sse[best], 0.0) / n))
    return i + 1.0, gain, spread
