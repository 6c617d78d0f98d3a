"""Camera health: is the picture usable, and is it still the picture we were given?

Every check compares the frame with a reference learned from the camera's own first
healthy frames (and followed slowly while the camera stays healthy: dusk is not a
fault), so one set of thresholds serves a sharp day street and a dim canal at night.

- brightness: mean luma; `dark` below 0.10, `overexposed` above 0.90 or most pixels clipped
- sharpness: variance of the Laplacian against the reference's; `blur` below 0.30
- frozen: seconds without a single changed pixel (sensor noise changes a live frame
  everywhere, a hung encoder resends the same picture); `frozen` from 2 s
- occlusion: the share of textured reference cells (8 x 6 grid) that went flat;
  `occluded` from 0.40
- shift: the view against the reference: phase-correlation offset (share of the width)
  and the correlation of the blurred pictures; `shifted` from 0.03 of the width, or
  below 0.45 correlation

A fault is raised when its condition has held for `RAISE_AFTER_S` and cleared after
`CLEAR_AFTER_S` without it, so one odd frame (a bus in front of the lens, a flash)
raises nothing. Darkness and overexposure hide the picture, so they suppress the
checks that need one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np
import numpy.typing as npt
from cv2.typing import MatLike

Image = MatLike  # what OpenCV takes and returns
Gray = MatLike
Floats = npt.NDArray[np.float64]

DARK_BELOW = 0.10
BRIGHT_ABOVE = 0.90
CLIPPED_SHARE = 0.6
BLUR_BELOW = 0.30
FROZEN_AFTER_S = 2.0
FROZEN_CHANGED_SHARE = 0.0005  # pixels that changed by more than FROZEN_DELTA
FROZEN_DELTA = 2
OCCLUDED_FROM = 0.40
FLAT_CELL = 0.25  # a cell is flat when its spread fell below this share of the reference's
SHIFT_FROM = 0.03
CORRELATION_BELOW = 0.45
GRID = (8, 6)
WARMUP_FRAMES = 8
FOLLOW = 0.01  # reference update per healthy frame
RAISE_AFTER_S = 1.0
CLEAR_AFTER_S = 2.0
CORR_SIZE = (80, 45)
PHASE_SIZE = (160, 90)  # 1 px = 0.6 % of the width, well under SHIFT_FROM


@dataclass(frozen=True, slots=True)
class HealthMeasures:
    brightness: float
    sharpness: float  # against the reference (1 = as sharp)
    frozen_s: float
    occlusion: float
    shift: float  # share of the width
    correlation: float
    candidates: frozenset[str]  # fault conditions true on this frame (before debouncing)
    learned: bool  # the reference is learned: sharpness, occlusion, shift mean something


@dataclass(slots=True)
class _Reference:
    sharpness: float
    cells: Floats
    small: npt.NDArray[np.float32]  # blurred CORR_SIZE grey, for correlation
    phase: npt.NDArray[np.float32]  # PHASE_SIZE grey, for phase correlation


@dataclass(slots=True)
class HealthAnalyzer:
    """`static`: where the scene should not change (255), at the analysis size; None =
    the whole frame. Regions (lanes, the channel) and the gauge are left out, so water
    rising over a textured wall or a queue of cars is not taken for a covered, blurred
    or turned camera."""

    static: Gray | None = None
    _static_cells: npt.NDArray[np.bool_] | None = None
    _static_small: npt.NDArray[np.float32] | None = None
    _warmup: list[tuple[float, Floats, npt.NDArray[np.float32], npt.NDArray[np.float32]]] = field(
        default_factory=list
    )
    _ref: _Reference | None = None
    _prev_raw: Gray | None = None
    _frozen_s: float = 0.0
    _window: npt.NDArray[np.float32] | None = None

    def measure(self, gray: Gray, raw: Gray, dt: float) -> HealthMeasures:
        """`gray`: the reduced analysis picture; `raw`: full-resolution pixels subsampled
        without averaging (sensor noise intact) for the frozen check; `dt`: seconds since
        the previous analysed frame."""
        brightness = float(gray.mean()) / 255.0
        clipped = float(np.count_nonzero(gray >= 250)) / gray.size
        sharp = self._laplacian_var(gray)
        cells = _cell_spread(gray)
        small = cv2.GaussianBlur(
            cv2.resize(gray, CORR_SIZE, interpolation=cv2.INTER_AREA), (5, 5), 0
        ).astype(np.float32)
        phase = cv2.resize(gray, PHASE_SIZE, interpolation=cv2.INTER_LINEAR).astype(np.float32)
        self._update_frozen(raw, dt)

        candidates: set[str] = set()
        if brightness < DARK_BELOW:
            candidates.add("dark")
        if brightness > BRIGHT_ABOVE or clipped > CLIPPED_SHARE:
            candidates.add("overexposed")
        if self._frozen_s >= FROZEN_AFTER_S and not candidates & {"dark", "overexposed"}:
            candidates.add("frozen")  # a black or burnt-out picture has no noise left to change

        ref = self._ref
        if ref is None:
            if not candidates:
                self._warmup.append((sharp, cells, small, phase))
            if len(self._warmup) >= WARMUP_FRAMES:
                self._ref = _learn(self._warmup)
                self._warmup.clear()
            return HealthMeasures(brightness, 1.0, self._frozen_s, 0.0, 0.0, 1.0,
                                  frozenset(candidates), False)  # fmt: skip

        sharpness = sharp / max(ref.sharpness, 1e-6)
        textured = ref.cells > 4.0
        if self._static_cells is not None:
            textured &= self._static_cells
        flat = (cells < FLAT_CELL * ref.cells) & textured
        occlusion = float(flat.sum()) / max(int(textured.sum()), 1)
        correlation = _zncc(small, ref.small, self._static_small)
        if self._window is None or self._window.shape != phase.shape:
            window = cv2.createHanningWindow(phase.shape[::-1], cv2.CV_32F)
            self._window = np.asarray(window, np.float32)
        dx, dy = phase_offset(ref.phase, phase, self._window)
        shift = math.hypot(dx, dy) / PHASE_SIZE[0]

        if not candidates & {"dark", "overexposed"}:
            if occlusion >= OCCLUDED_FROM:
                candidates.add("occluded")
            elif sharpness < BLUR_BELOW:
                candidates.add("blur")
            elif shift >= SHIFT_FROM or correlation < CORRELATION_BELOW:
                candidates.add("shifted")
        # Follow only a live picture: one that has not changed since the last frame may
        # be the start of a freeze, not yet long enough to count as one.
        if not candidates and self._frozen_s == 0.0:
            ref.sharpness += FOLLOW * (sharp - ref.sharpness)
            ref.cells += FOLLOW * (cells - ref.cells)
            cv2.accumulateWeighted(small, ref.small, FOLLOW)
            cv2.accumulateWeighted(phase, ref.phase, FOLLOW)
        return HealthMeasures(
            brightness, sharpness, self._frozen_s, occlusion, shift, correlation,
            frozenset(candidates), True,
        )  # fmt: skip

    @property
    def reference(self) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]] | None:
        """Copies of the learned reference pictures (correlation, phase); None while
        learning."""
        if self._ref is None:
            return None
        return self._ref.small.copy(), self._ref.phase.copy()

    def _laplacian_var(self, gray: Gray) -> float:
        lap = cv2.Laplacian(gray, cv2.CV_32F)
        if self.static is None:
            return float(lap.var())
        if self._static_cells is None:
            self._static_cells = _cell_spread(self.static, mean=True) > 127
            self._static_small = (
                cv2.resize(self.static, CORR_SIZE, interpolation=cv2.INTER_AREA) > 127
            ).astype(np.float32)
        return float(cv2.meanStdDev(lap, mask=self.static)[1][0, 0] ** 2)

    def _update_frozen(self, raw: Gray, dt: float) -> None:
        if self._prev_raw is not None and self._prev_raw.shape == raw.shape:
            diff = cv2.absdiff(raw, self._prev_raw)
            changed = float(np.count_nonzero(diff > FROZEN_DELTA)) / diff.size
            self._frozen_s = self._frozen_s + dt if changed < FROZEN_CHANGED_SHARE else 0.0
        self._prev_raw = raw.copy()


def phase_offset(
    a: npt.NDArray[np.float32], b: npt.NDArray[np.float32], window: npt.NDArray[np.float32]
) -> tuple[float, float]:
    """(dx, dy) of `b` against `a`, in pixels. On copies: with a window, phaseCorrelate
    multiplies both inputs by it in place (OpenCV 5.0), and a reference passed to it
    would fade a little on every frame."""
    (dx, dy), _response = cv2.phaseCorrelate(a.copy(), b.copy(), window)
    return float(dx), float(dy)


def _learn(
    frames: list[tuple[float, Floats, npt.NDArray[np.float32], npt.NDArray[np.float32]]],
) -> _Reference:
    return _Reference(
        sharpness=float(np.median([f[0] for f in frames])),
        cells=np.median(np.stack([f[1] for f in frames]), axis=0),
        small=np.median(np.stack([f[2] for f in frames]), axis=0).astype(np.float32),
        phase=np.median(np.stack([f[3] for f in frames]), axis=0).astype(np.float32),
    )


def _cell_spread(gray: Gray, *, mean: bool = False) -> Floats:
    """Standard deviation (or mean) of each GRID cell."""
    cols, rows = GRID
    h, w = gray.shape[:2]
    g = np.asarray(gray)[: h - h % rows, : w - w % cols].astype(np.float32)
    blocks = g.reshape(rows, g.shape[0] // rows, cols, g.shape[1] // cols)
    stat = blocks.mean(axis=(1, 3)) if mean else blocks.std(axis=(1, 3))
    spread: Floats = stat.astype(np.float64).ravel()
    return spread


def _zncc(
    a: npt.NDArray[np.float32], b: npt.NDArray[np.float32], w: npt.NDArray[np.float32] | None
) -> float:
    """Zero-normalised cross-correlation, weighted by `w` (None: every pixel)."""
    if w is None:
        w = np.ones_like(a)
    total = max(float(w.sum()), 1e-6)
    da = (a - float((a * w).sum()) / total) * w
    db = (b - float((b * w).sum()) / total) * w
    denom = float(np.sqrt((da * da).sum() * (db * db).sum()))
    return float((da * db).sum()) / denom if denom > 1e-6 else 0.0


@dataclass(slots=True)
class Debouncer:
    """Raise after a condition held `RAISE_AFTER_S`, clear after `CLEAR_AFTER_S` without it."""

    raised: set[str] = field(default_factory=set)
    _since: dict[str, float] = field(default_factory=dict)
    _quiet: dict[str, float] = field(default_factory=dict)

    def update(self, candidates: frozenset[str], dt: float) -> frozenset[str]:
        for fault in candidates:
            self._since[fault] = self._since.get(fault, -dt) + dt
            self._quiet.pop(fault, None)
            if self._since[fault] >= RAISE_AFTER_S - 1e-9:
                self.raised.add(fault)
        for fault in list(self._since):
            if fault in candidates:
                continue
            self._quiet[fault] = self._quiet.get(fault, 0.0) + dt
            if fault not in self.raised or self._quiet[fault] >= CLEAR_AFTER_S - 1e-9:
                self._since.pop(fault)
                self._quiet.pop(fault, None)
                self.raised.discard(fault)
        return frozenset(self.raised)
