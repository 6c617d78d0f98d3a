"""Synthetic CCTV scenes with ground truth for every frame.

Two scenes, drawn in a 640x360 design space and scaled to the output size:

- `road`: a two-lane street under buildings, vehicles driving (or queued in a jam),
  lane markings; the traffic cameras' view.
- `drain`: a concrete channel with a painted staff gauge (white board, red spine,
  black cm marks in the E pattern of an Indonesian peilschaal); water rises on it.

Lighting (day, dusk, night), rain (streaks and haze) and sensor noise are applied to
every frame, so a still scene never yields two identical frames, as with a real
sensor. `ROAD_GEOMETRY` / `DRAIN_GEOMETRY` are the regions and gauge that
`config/cameras.yaml` declares for the simulated cameras.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum

import cv2
import numpy as np
import numpy.typing as npt
from cv2.typing import MatLike

Image = MatLike  # what OpenCV takes and returns

DESIGN_W, DESIGN_H = 640, 360


class Lighting(StrEnum):
    DAY = "day"
    DUSK = "dusk"
    NIGHT = "night"


# Regions and gauge in design pixels (what config/cameras.yaml holds for sim cameras).
LANE_EAST = ((0.0, 210.0), (640.0, 210.0), (640.0, 262.0), (0.0, 262.0))
LANE_WEST = ((0.0, 268.0), (640.0, 268.0), (640.0, 326.0), (0.0, 326.0))
GAUGE_ZERO = (452.0, 340.0)
GAUGE_TOP = (452.0, 40.0)
GAUGE_TOP_CM = 120.0
GAUGE_WIDTH = 26.0
# The channel between its walls, up to the top of the bank: where water can be.
CHANNEL = ((100.0, 40.0), (620.0, 40.0), (620.0, 352.0), (100.0, 352.0))
_CH_X0, _CH_X1 = 100, 620

_GAIN = {Lighting.DAY: 1.0, Lighting.DUSK: 0.5, Lighting.NIGHT: 0.22}
_TINT = {
    Lighting.DAY: (1.0, 1.0, 1.0),
    Lighting.DUSK: (0.85, 0.95, 1.15),  # BGR: warmer
    Lighting.NIGHT: (1.1, 0.95, 0.8),  # sodium lamps read cold on CCTV sensors at night
}
# A street light at night: a pool of light on the lower middle of the picture.
_YY, _XX = np.mgrid[0:DESIGN_H, 0:DESIGN_W]
_STREET_LIGHT = cv2.merge(
    [(1.0 + 1.6 * np.exp(-(((_XX - 420) / 260.0) ** 2 + ((_YY - 260) / 160.0) ** 2)))] * 3
).astype(np.float32)
_NOISE = {Lighting.DAY: 2.0, Lighting.DUSK: 3.0, Lighting.NIGHT: 4.0}


@dataclass(frozen=True, slots=True)
class Vehicle:
    lane: int  # 0 = east (left to right), 1 = west (right to left)
    x0: float  # design px of the front at t = 0
    speed: float  # design px/s (0: standing)
    length: float  # design px
    color: tuple[int, int, int]  # BGR
    stop_at_s: float | None = None  # joins a queue: stands still from this time on

    def moving_at(self, t: float) -> bool:
        return self.speed != 0 and (self.stop_at_s is None or t < self.stop_at_s)


@dataclass(frozen=True, slots=True)
class Truth:
    """What the frame shows, for the accuracy tests."""

    t: float
    depth_cm: float | None
    vehicles: tuple[int, ...]  # visible vehicles per lane
    lane_cover: tuple[float, ...]  # share of each lane's area covered by vehicles
    moving: tuple[int, ...]  # visible moving vehicles per lane


@dataclass(slots=True)
class RoadScene:
    width: int = DESIGN_W
    height: int = DESIGN_H
    lighting: Lighting = Lighting.DAY
    rain: bool = False
    vehicles: list[Vehicle] = field(default_factory=list)
    seed: int = 1
    _bg: Image | None = None
    _rng: np.random.Generator = field(init=False)

    def __post_init__(self) -> None:
        self._rng = np.random.default_rng(self.seed)

    def render(self, t: float) -> tuple[Image, Truth]:
        if self._bg is None:
            self._bg = _road_background(self.seed)
        img = self._bg.copy()
        counts = [0, 0]
        moving = [0, 0]
        cover = np.zeros((2,), dtype=np.float64)
        for v in self.vehicles:
            x = _vehicle_x(v, t)
            lo, hi = (x - v.length, x) if v.lane == 0 else (x, x + v.length)
            if hi < 0 or lo > DESIGN_W:
                continue
            counts[v.lane] += 1
            moving[v.lane] += int(v.moving_at(t))
            top, bottom = (214.0, 258.0) if v.lane == 0 else (272.0, 322.0)
            visible = min(hi, DESIGN_W) - max(lo, 0)
            lane_area = DESIGN_W * (262.0 - 210.0 if v.lane == 0 else 326.0 - 268.0)
            cover[v.lane] += visible * (bottom - top) / lane_area
            _draw_vehicle(
                img, lo=lo, hi=hi, top=top, bottom=bottom, color=v.color, lighting=self.lighting
            )
        img = _light(img, self.lighting)
        img = _finish(img, (self.width, self.height), self.lighting, rain=self.rain, rng=self._rng)
        return img, Truth(t, None, tuple(counts), tuple(cover.clip(0, 1)), tuple(moving))


@dataclass(slots=True)
class DrainScene:
    """A channel whose water depth on the gauge is `depth(t)` cm."""

    width: int = DESIGN_W
    height: int = DESIGN_H
    lighting: Lighting = Lighting.DAY
    rain: bool = False
    depth_start_cm: float = 0.0
    depth_rate_cm_s: float = 0.0  # rising water; the tests sweep 0..100 cm
    seed: int = 1
    _bg: Image | None = None
    _rng: np.random.Generator = field(init=False)

    def __post_init__(self) -> None:
        self._rng = np.random.default_rng(self.seed)

    def depth(self, t: float) -> float:
        return max(0.0, self.depth_start_cm + self.depth_rate_cm_s * t)

    def render(self, t: float) -> tuple[Image, Truth]:
        if self._bg is None:
            self._bg = _drain_background(self.seed)
        depth = self.depth(t)
        img = self._bg.copy()
        _draw_water(img, depth, t)
        img = _light(img, self.lighting)
        img = _finish(img, (self.width, self.height), self.lighting, rain=self.rain, rng=self._rng)
        return img, Truth(t, depth, (), (), ())


def _vehicle_x(v: Vehicle, t: float) -> float:
    if v.stop_at_s is not None:
        t = min(t, v.stop_at_s)
    x = v.x0 + (v.speed * t if v.lane == 0 else -v.speed * t)
    span = DESIGN_W + 2 * v.length + 200
    if v.speed == 0 or v.stop_at_s is not None:
        return x
    # Vehicles wrap around so a long sequence keeps its traffic.
    return (x + v.length + 100) % span - v.length - 100


def _draw_vehicle(
    img: Image,
    *,
    lo: float,
    hi: float,
    top: float,
    bottom: float,
    color: tuple[int, int, int],
    lighting: Lighting,
) -> None:
    x0, x1, y0, y1 = int(lo), int(hi), int(top), int(bottom)
    cv2.rectangle(img, (x0, y0 + 12), (x1, y1 - 4), color, -1)
    cab_l, cab_r = x0 + (x1 - x0) // 4, x1 - (x1 - x0) // 4
    cv2.rectangle(img, (cab_l, y0), (cab_r, y0 + 14), color, -1)
    cv2.rectangle(img, (cab_l + 4, y0 + 3), (cab_r - 4, y0 + 12), (60, 50, 40), -1)  # windows
    for wx in (x0 + 10, x1 - 10):
        cv2.circle(img, (wx, y1 - 4), 6, (20, 20, 20), -1)
    if lighting is Lighting.NIGHT:
        # Lamps are drawn bright before the night gain, so they stay bright after it.
        cv2.circle(img, (x1 - 2, y0 + 20), 4, (255, 255, 255), -1)
        cv2.circle(img, (x0 + 2, y0 + 20), 3, (0, 0, 255), -1)


def _road_background(seed: int) -> Image:
    rng = np.random.default_rng(seed + 1000)
    img = np.zeros((DESIGN_H, DESIGN_W, 3), np.uint8)
    img[:] = (200, 170, 140)  # sky (BGR)
    x = 0
    while x < DESIGN_W:  # buildings (ruko) with windows
        w = int(rng.integers(50, 110))
        h = int(rng.integers(70, 150))
        c = tuple(int(v) for v in rng.integers(90, 200, 3))
        cv2.rectangle(img, (x, 190 - h), (x + w, 190), c, -1)
        for wy in range(190 - h + 10, 180, 22):
            for wx in range(x + 8, x + w - 12, 20):
                cv2.rectangle(img, (wx, wy), (wx + 10, wy + 12), (70, 60, 50), -1)
        x += w + int(rng.integers(0, 8))
    img[190:206] = (150, 150, 155)  # sidewalk
    img[206:336] = (85, 85, 88)  # asphalt
    img[336:] = (150, 150, 155)
    for y in (206, 336):
        cv2.line(img, (0, y), (DESIGN_W, y), (220, 220, 220), 2)  # kerbs
    for x0 in range(0, DESIGN_W, 60):  # dashed centre line
        cv2.line(img, (x0, 265), (x0 + 30, 265), (230, 230, 230), 3)
    for x0 in range(20, DESIGN_W, 160):  # poles
        cv2.line(img, (x0, 110), (x0, 205), (60, 60, 60), 3)
    grain = rng.normal(0, 6, img.shape)  # static texture: asphalt, walls
    return np.clip(img.astype(np.float64) + grain, 0, 255).astype(np.uint8)


def _drain_background(seed: int) -> Image:
    rng = np.random.default_rng(seed + 2000)
    img = np.zeros((DESIGN_H, DESIGN_W, 3), np.uint8)
    img[:] = (190, 165, 140)
    img[:150] = (120, 150, 120)  # vegetation on the bank
    for _ in range(120):
        cx, cy = int(rng.integers(0, DESIGN_W)), int(rng.integers(0, 150))
        cv2.circle(
            img, (cx, cy), int(rng.integers(4, 16)), (40, int(rng.integers(90, 160)), 50), -1
        )
    img[150:] = (150, 150, 145)  # concrete channel walls
    for y in range(160, DESIGN_H, 24):
        cv2.line(img, (0, y), (DESIGN_W, y), (120, 120, 118), 1)  # formwork seams
    for x in range(0, DESIGN_W, 80):
        cv2.line(img, (x, 150), (x, DESIGN_H), (125, 125, 122), 1)
    grain = rng.normal(0, 6, img.shape)
    img = np.clip(img.astype(np.float64) + grain, 0, 255).astype(np.uint8)
    _draw_gauge(img)
    return img


def _cm_to_y(cm: float) -> float:
    return GAUGE_ZERO[1] - (GAUGE_ZERO[1] - GAUGE_TOP[1]) * cm / GAUGE_TOP_CM


def _draw_gauge(img: Image) -> None:
    x0 = int(GAUGE_ZERO[0] - GAUGE_WIDTH / 2)
    x1 = int(GAUGE_ZERO[0] + GAUGE_WIDTH / 2)
    y_top = int(_cm_to_y(GAUGE_TOP_CM + 4))
    cv2.rectangle(img, (x0, y_top), (x1, int(GAUGE_ZERO[1]) + 6), (235, 240, 240), -1)
    spine = x0 + int(GAUGE_WIDTH * 0.3)
    cv2.rectangle(img, (x0, y_top), (spine, int(GAUGE_ZERO[1]) + 6), (40, 40, 200), -1)
    for cm in range(int(GAUGE_TOP_CM)):
        if cm % 10 < 5 and cm % 2 == 0:  # the E: teeth every 2 cm on the lower half-decimetre
            ya, yb = _cm_to_y(cm + 1), _cm_to_y(cm)
            cv2.rectangle(img, (spine, int(ya)), (x1, math.ceil(yb) - 1), (20, 20, 20), -1)
    cv2.rectangle(img, (x0 - 2, y_top - 2), (x1 + 2, int(GAUGE_ZERO[1]) + 6), (60, 60, 60), 1)


# Ripples: 8 sin(a + 2.1 t) sin(0.05 x - 1.3 t) with a = 0.09 x + 0.35 y, expanded so a
# frame costs two multiply-adds on precomputed tables.
_RY, _RX = np.mgrid[0:DESIGN_H, 0:DESIGN_W].astype(np.float32)
_SIN_A = np.sin(0.09 * _RX + 0.35 * _RY)
_COS_A = np.cos(0.09 * _RX + 0.35 * _RY)
_WATER = np.array([70.0, 95.0, 100.0], np.float32)  # murky brown-green (BGR)


def _draw_water(img: Image, depth_cm: float, t: float) -> None:
    top = round(_cm_to_y(depth_cm))
    if top >= DESIGN_H:
        return
    x0, x1 = _CH_X0, _CH_X1
    wave = 8.0 * np.sin(0.05 * _RX[0, x0:x1] - 1.3 * t).astype(np.float32)
    ripple = (
        _SIN_A[top:, x0:x1] * np.float32(math.cos(2.1 * t))
        + _COS_A[top:, x0:x1] * np.float32(math.sin(2.1 * t))
    ) * wave
    # Murky water: a trace of what is beneath shows through.
    mixed = 0.1 * img[top:, x0:x1].astype(np.float32) + 0.9 * (_WATER + ripple[..., None])
    img[top:, x0:x1] = np.clip(mixed, 0, 255).astype(np.uint8)
    cv2.line(img, (x0, top), (x1 - 1, top), (150, 165, 170), 1)  # bright meniscus


def _light(img: Image, lighting: Lighting) -> Image:
    if lighting is Lighting.DAY:
        return img
    gain = _GAIN[lighting] * np.array(_TINT[lighting])
    scale = _STREET_LIGHT if lighting is Lighting.NIGHT else np.float32(1.0)
    out: Image = cv2.multiply(img, scale * gain.astype(np.float32), dtype=cv2.CV_8U)
    # Whatever was drawn near-white (lamps) stays bright.
    b, g, r = cv2.split(img)
    out[cv2.min(cv2.min(b, g), r) > 250] = 255
    return out


def _finish(
    img: Image,
    size: tuple[int, int],
    lighting: Lighting,
    *,
    rain: bool,
    rng: np.random.Generator,
) -> Image:
    width, height = size
    if (width, height) != (DESIGN_W, DESIGN_H):
        img = cv2.resize(img, (width, height), interpolation=cv2.INTER_LINEAR)
    if rain:
        haze = np.full_like(img, 150)
        img = cv2.addWeighted(img, 0.8, haze, 0.2, 0)
        streaks = np.zeros(img.shape[:2], np.uint8)
        n = int(260 * width * height / (DESIGN_W * DESIGN_H))
        xs = rng.integers(0, width, n)
        ys = rng.integers(0, height, n)
        length = max(6, height // 30)
        for x, y in zip(xs.tolist(), ys.tolist(), strict=True):
            cv2.line(streaks, (x, y), (x + length // 4, y + length), 255, 1)
        img = cv2.add(img, cv2.merge([streaks // 4] * 3))
    noise = _noise_field(img.shape[:2], _NOISE[lighting], rng)
    out = img.astype(np.int16) + noise[..., None]
    finished: Image = np.clip(out, 0, 255).astype(np.uint8)
    return finished


_NOISE_BANK: dict[tuple[tuple[int, ...], float], list[npt.NDArray[np.int16]]] = {}


def _noise_field(
    shape: tuple[int, ...], sigma: float, rng: np.random.Generator
) -> npt.NDArray[np.int16]:
    """Sensor noise: one of a bank of fields, shifted at random, so consecutive frames
    never share it (drawing a fresh field costs more than the rest of the frame)."""
    bank = _NOISE_BANK.get((shape, sigma))
    if bank is None:
        gen = np.random.default_rng(99)
        bank = [np.round(gen.normal(0.0, sigma, shape)).astype(np.int16) for _ in range(4)]
        _NOISE_BANK[(shape, sigma)] = bank
    field = bank[int(rng.integers(len(bank)))]
    return np.roll(field, (int(rng.integers(shape[0])), int(rng.integers(shape[1]))), (0, 1))
