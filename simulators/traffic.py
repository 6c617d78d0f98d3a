"""Traffic on arterial roads: the Jabodetabek commuter day, congestion and rain.

Demand follows the city's local time: a night trough around 03:00, a daytime
plateau, a morning rush centred ~07:45 (06:30-09:00) and a longer evening rush
centred ~18:00 (16:30-19:30); weekends have lower peaks. Speed follows the BPR
volume-delay curve, so it collapses as demand nears capacity; past capacity the
discharge drops a little (queue discharge is below free-flow capacity). Rain lowers
free speed and capacity, and heavy rain thins the flow as motorcyclists shelter
under flyovers. Occupancy is density times an effective vehicle length per lane.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo

import numpy as np

from simulators.geo import FloatArray

ZERO = timedelta(0)
MORNING_PEAK_H, MORNING_WIDTH_H = 7.75, 0.65
EVENING_PEAK_H, EVENING_WIDTH_H = 18.0, 0.8
NIGHT_SHARE = 0.06  # share of capacity at 03:00
DAY_SHARE = 0.5
PEAK_EXTRA = 0.5
WEEKEND_PEAKS = 0.45  # weekend rush extra relative to weekdays
BPR_ALPHA, BPR_BETA = 0.8, 4.0
EFFECTIVE_LENGTH_KM = 0.0065  # vehicle plus detection zone
HEAVY_RAIN_MM_H = 40.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Road:
    lanes: int
    capacity_per_lane_h: float
    free_speed_kmh: float
    peak_ratio: float  # weekday rush demand / capacity
    morning_bias: float  # >1: inbound road, heavier in the morning


def local_seconds(epoch_s: FloatArray, tz: tzinfo) -> FloatArray:
    """Epoch seconds plus the UTC offset of `tz` at each time: the city's wall clock read
    as if it were UTC, so the hours and weekdays below are the city's."""
    local = [
        t + (datetime.fromtimestamp(t, UTC).astimezone(tz).utcoffset() or ZERO).total_seconds()
        for t in epoch_s.tolist()
    ]
    return np.array(local, dtype=np.float64)


def local_hours(local: FloatArray) -> tuple[FloatArray, np.ndarray]:
    """Hour of day and whether it is a weekend day, from `local_seconds`."""
    hours = (local % 86400.0) / 3600.0
    weekday = ((local // 86400.0).astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday
    return hours, weekday >= 5


def demand_share(local_s: FloatArray, road: Road) -> FloatArray:
    """Demand as a share of capacity at each local time (`local_seconds`)."""
    hours, weekend = local_hours(local_s)
    day = 1.0 / (1.0 + np.exp(-(hours - 5.5) / 0.35)) - 1.0 / (1.0 + np.exp(-(hours - 22.5) / 0.6))
    morning = np.exp(-0.5 * ((hours - MORNING_PEAK_H) / MORNING_WIDTH_H) ** 2)
    evening = np.exp(-0.5 * ((hours - EVENING_PEAK_H) / EVENING_WIDTH_H) ** 2)
    peaks = PEAK_EXTRA * (road.morning_bias * morning + (2.0 - road.morning_bias) * evening)
    peaks = np.where(weekend, WEEKEND_PEAKS * peaks, peaks)
    share = NIGHT_SHARE + DAY_SHARE * day + peaks
    return share * road.peak_ratio / (NIGHT_SHARE + DAY_SHARE + PEAK_EXTRA)


@dataclass(frozen=True, slots=True)
class TrafficState:
    flow_veh_h: FloatArray
    speed_kmh: FloatArray
    occupancy_pct: FloatArray


def traffic(local_s: FloatArray, rain_mm_h: FloatArray, road: Road) -> TrafficState:
    """Expected flow, speed and occupancy (no measurement noise) at each local time."""
    wet = np.clip(rain_mm_h / HEAVY_RAIN_MM_H, 0.0, 1.0)
    capacity = road.lanes * road.capacity_per_lane_h * (1.0 - 0.15 * wet)
    demand = demand_share(local_s, road) * road.lanes * road.capacity_per_lane_h
    demand = demand * (1.0 - 0.2 * wet)
    ratio = demand / capacity
    flow = np.where(ratio <= 1.0, demand, capacity * (1.0 - 0.15 * np.clip(ratio - 1.0, 0, 1)))
    speed = road.free_speed_kmh * (1.0 - 0.25 * wet) / (1.0 + BPR_ALPHA * ratio**BPR_BETA)
    density_per_lane = flow / np.maximum(speed, 1.0) / road.lanes
    occupancy = np.clip(100.0 * density_per_lane * EFFECTIVE_LENGTH_KM, 0.0, 100.0)
    return TrafficState(flow, speed, occupancy)
