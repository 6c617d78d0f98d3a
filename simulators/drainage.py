"""Drains, sumps, gates and flow: how rain on the city becomes water levels.

The simulated city is flat and drains north to the sea (as the demo city does), so
each station collects rain from a cone-shaped catchment to its south (it widens
upstream). Rain on each
0.5 km grid cell of that cone reaches the station after a travel time proportional
to its distance (water in a full drain moves ~2 m/s); the station's inflow is the
catchment mean of that delayed rain times an urban runoff coefficient. The inflow
feeds a linear reservoir (outflow = storage / k), which smooths and delays it, and
the outflow sets the depth through a saturating rating curve that rises from the
dry-weather base level towards bankfull and reaches the station's Siaga II alert
level when the runoff reaches the channel's design rate. Coastal drains also see
a small semi-diurnal tide.

Pump houses fill a sump from the same kind of catchment (plus dry-weather sewage
inflow) and switch the pump on above one level and off below a lower one
(hysteresis). Flood gates open in 10 % steps as their upstream level rises. Flow
meters convert depth to discharge with a Manning-like power law.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from simulators.geo import FloatArray

GRID_KM = 0.5
RUNOFF_COEFFICIENT = 0.75  # share of rain that runs off sealed urban ground
FLOW_SPEED_KMH = 7.2  # 2 m/s in a full primary drain
SINUOSITY = 1.2  # drains do not run straight to the station
CONE_HALF_WIDTH_KM = 0.5  # at the station
CONE_SPREAD = 0.4  # half-width grows 0.4 km per km upstream
M2_TIDE_S = 12.42 * 3600.0  # principal lunar semi-diurnal tide


@dataclass(frozen=True, slots=True)
class RainGrid:
    """Cell centres (km in the local frame) where rain is evaluated for the catchments."""

    x_km: FloatArray
    y_km: FloatArray

    @classmethod
    def covering(
        cls, west: float, south: float, east: float, north: float, *, upstream_km: float = 8.0
    ) -> RainGrid:
        """The city's box, plus the land south of it that drains through it."""
        xs = np.arange(west - 2.0, east + 2.0 + GRID_KM, GRID_KM)
        ys = np.arange(south - upstream_km, north + GRID_KM, GRID_KM)
        gx, gy = np.meshgrid(xs, ys)
        return cls(gx.ravel(), gy.ravel())


@dataclass(frozen=True, slots=True, kw_only=True)
class Channel:
    """The drain under a hydro device and the land that drains into it."""

    x_km: float
    y_km: float
    bankfull_cm: float
    base_cm: float  # dry-weather depth
    alert_cm: float  # reached when the runoff equals `design_runoff_mm_h`
    design_runoff_mm_h: float
    catchment_km: float  # length of the upstream cone
    reservoir_min: float  # k of the linear reservoir
    tide_cm: float  # semi-diurnal amplitude, 0 away from the coast
    tide_phase: float

    @property
    def rating_mm_h(self) -> float:
        """Runoff scale of the rating curve, so that `design_runoff` gives `alert_cm`."""
        frac = (self.alert_cm - self.base_cm) / (self.bankfull_cm - self.base_cm)
        return -self.design_runoff_mm_h / math.log(1.0 - frac)


def catchment(channel: Channel, grid: RainGrid, step_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Grid cells upstream of the channel and each one's travel time in steps."""
    dx = grid.x_km - channel.x_km
    up = channel.y_km - grid.y_km  # km south of the station
    inside = (
        (up >= -GRID_KM / 2)
        & (up <= channel.catchment_km)
        & (np.abs(dx) <= CONE_HALF_WIDTH_KM + CONE_SPREAD * np.maximum(up, 0.0))
    )
    cells = np.flatnonzero(inside)
    path_km = SINUOSITY * np.hypot(dx[cells], up[cells])
    delay = np.rint(path_km / FLOW_SPEED_KMH * 3600.0 / step_s).astype(np.int64)
    return cells, delay


def runoff_mm_h(
    channels: Sequence[Channel], grid: RainGrid, rain: FloatArray | None, step_s: float
) -> FloatArray:
    """Reservoir outflow (mm/h of catchment runoff), shape (steps, channels).

    `rain` is (steps, grid cells) in mm/h, or None for a dry scenario. The city starts
    dry: rain before the first step is taken as zero.
    """
    if rain is None or not rain.any():
        return np.zeros((0 if rain is None else rain.shape[0], len(channels)))
    steps = rain.shape[0]
    inflow = np.zeros((steps, len(channels)))
    areas = [catchment(c, grid, step_s) for c in channels]
    pad = max((int(delay.max()) for cells, delay in areas if cells.size), default=0)
    padded = np.vstack([np.zeros((pad, rain.shape[1])), rain])  # dry before the start
    index = np.arange(steps)[:, None] + pad
    for s, (cells, delay) in enumerate(areas):
        if cells.size:
            inflow[:, s] = padded[index - delay[None, :], cells[None, :]].mean(axis=1)
    inflow *= RUNOFF_COEFFICIENT
    keep = np.exp(-step_s / (60.0 * np.array([c.reservoir_min for c in channels])))
    out = np.empty_like(inflow)
    q = np.zeros(len(channels))
    for n in range(steps):
        q = keep * q + (1.0 - keep) * inflow[n]
        out[n] = q
    return out


def depth_cm(channels: Sequence[Channel], runoff: FloatArray, epoch_s: FloatArray) -> FloatArray:
    """Water depth (cm above the bed), shape (steps, channels); `runoff` may be empty (dry)."""
    base = np.array([c.base_cm for c in channels])
    bank = np.array([c.bankfull_cm for c in channels])
    rating = np.array([c.rating_mm_h for c in channels])
    tide_cm = np.array([c.tide_cm for c in channels])
    phase = np.array([c.tide_phase for c in channels])
    tide = tide_cm[None, :] * np.sin(2 * np.pi * epoch_s[:, None] / M2_TIDE_S + phase[None, :])
    depth = base[None, :] + tide
    if runoff.size:
        depth = depth + (bank - base)[None, :] * (1.0 - np.exp(-runoff / rating[None, :]))
    clipped: FloatArray = np.clip(depth, 0.0, bank[None, :])
    return clipped


@dataclass(frozen=True, slots=True, kw_only=True)
class Sump:
    """The wet well of a pump house (rumah pompa)."""

    top_cm: float  # the sump overflows above this
    on_cm: float  # the pump starts at or above this level
    off_cm: float  # ... and stops at or below this one
    dry_inflow_cm_min: float  # sewage and grey water, rain or not
    runoff_gain: float  # cm/min of rise per mm/h of catchment runoff
    pump_cm_min: float  # how fast the running pump lowers the sump
    start_cm: float
    start_running: bool


def pump_house(
    sumps: Sequence[Sump], runoff: FloatArray, steps: int, step_s: float
) -> tuple[FloatArray, np.ndarray]:
    """Sump levels (cm) and pump states, shape (steps, pumps), with on/off hysteresis."""
    top = np.array([s.top_cm for s in sumps])
    on = np.array([s.on_cm for s in sumps])
    off = np.array([s.off_cm for s in sumps])
    dry = np.array([s.dry_inflow_cm_min for s in sumps])
    gain = np.array([s.runoff_gain for s in sumps])
    pump = np.array([s.pump_cm_min for s in sumps])
    level = np.array([s.start_cm for s in sumps])
    running = np.array([s.start_running for s in sumps])
    minutes = step_s / 60.0
    levels = np.empty((steps, len(sumps)))
    states = np.empty((steps, len(sumps)), dtype=bool)
    for n in range(steps):
        rise = dry + (gain * runoff[n] if runoff.size else 0.0)
        level = np.clip(level + minutes * (rise - pump * running), 0.0, top)
        running = np.where(level >= on, True, np.where(level <= off, False, running))
        levels[n] = level
        states[n] = running
    return levels, states


GATE_STEP_PCT = 10.0  # gate motors move in steps; operators set round openings
GATE_RATE_PCT_MIN = 10.0  # and the motor takes about a minute per step
GATE_MIN_PCT = 20.0  # kept partly open in dry weather to keep water moving


def gate_opening_pct(depth: FloatArray, channels: Sequence[Channel], step_s: float) -> FloatArray:
    """Gate opening (%) following the upstream level: 20 % up to 45 % of bankfull, fully
    open at 75 %, moved in 10 % steps at a limited rate."""
    bank = np.array([c.bankfull_cm for c in channels])
    frac = np.clip((depth / bank[None, :] - 0.45) / 0.30, 0.0, 1.0)
    wanted = GATE_MIN_PCT + (100.0 - GATE_MIN_PCT) * frac
    target = np.round(wanted / GATE_STEP_PCT) * GATE_STEP_PCT
    max_move = GATE_RATE_PCT_MIN * step_s / 60.0
    out: FloatArray = np.empty_like(target, dtype=np.float64)
    opening = target[0] if target.size else np.zeros(len(channels))
    for n in range(target.shape[0]):
        opening = opening + np.clip(target[n] - opening, -max_move, max_move)
        out[n] = opening
    return out


def flow_m3s(
    depth: FloatArray, channels: Sequence[Channel], capacity_m3s: FloatArray
) -> FloatArray:
    """Discharge from depth: Manning's law in a wide channel gives Q ~ depth^(5/3)."""
    bank = np.array([c.bankfull_cm for c in channels])
    flow: FloatArray = capacity_m3s[None, :] * np.clip(depth / bank[None, :], 0.0, 1.0) ** (5 / 3)
    return flow
