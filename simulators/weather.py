"""Rain from moving storm cells.

A cell is a Gaussian footprint, `peak * life(t) * exp(-(r / radius)^2)`, whose centre
moves in a straight line at constant speed. Its life is a raised cosine rising from
`begins` to full strength at `at` (when it is over its named zone) and falling to
nothing at `ends`, the usual growth and decay of a convective cell. Cells add up.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from simulators.geo import FloatArray, LocalFrame
from simulators.scenario import StormCell


def life(cell: StormCell, offset_s: FloatArray) -> FloatArray:
    """0..1 strength of the cell at each offset from the scenario start."""
    rise = np.clip((offset_s - cell.begins_s) / max(cell.at_s - cell.begins_s, 1.0), 0.0, 1.0)
    fall = np.clip((cell.ends_s - offset_s) / max(cell.ends_s - cell.at_s, 1.0), 0.0, 1.0)
    shape = np.where(offset_s <= cell.at_s, rise, fall)
    return 0.5 - 0.5 * np.cos(np.pi * shape)


def centre_km(
    cell: StormCell, frame: LocalFrame, offset_s: FloatArray
) -> tuple[FloatArray, FloatArray]:
    x0, y0 = frame.point_km(cell.lon, cell.lat)
    heading = math.radians(cell.heading_deg)
    travelled = cell.speed_kmh * (offset_s - cell.at_s) / 3600.0
    return x0 + travelled * math.sin(heading), y0 + travelled * math.cos(heading)


def rain_mm_h(
    cells: Sequence[StormCell],
    frame: LocalFrame,
    offset_s: FloatArray,
    x_km: FloatArray,
    y_km: FloatArray,
) -> FloatArray:
    """Rain rate (mm/h), shape (len(offset_s), len(x_km)): times by places."""
    out = np.zeros((offset_s.size, x_km.size))
    for cell in cells:
        alive = (offset_s > cell.begins_s) & (offset_s < cell.ends_s)
        if not alive.any():
            continue
        t = offset_s[alive]
        cx, cy = centre_km(cell, frame, t)
        d2 = (x_km[None, :] - cx[:, None]) ** 2 + (y_km[None, :] - cy[:, None]) ** 2
        strength = cell.peak_mm_h * life(cell, t)
        out[alive] += strength[:, None] * np.exp(-d2 / cell.radius_km**2)
    return out
