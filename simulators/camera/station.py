"""A flood camera's drain whose water follows its water-level station through a storm.

The levels come from the fleet's own message stream for the same scenario and start
(`simulators.messages`), so the camera shows the storm the sensors report: at simulated
time t the gauge reads the station's level minus the camera's `station_offset_cm`,
clipped to what the gauge can show (0 .. its top), which is what the rules' camera vs
station cross-check expects. A healthy pair therefore raises nothing there.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable
from datetime import datetime

from pantau.cameras import Camera
from pantau.city import City
from simulators.camera.scene import DrainScene, Image, Truth
from simulators.messages import iter_messages
from simulators.scenario import Scenario


class StationLevels:
    """One station's water level over simulated time, linear between its readings."""

    def __init__(self, points: Iterable[tuple[datetime, float]]) -> None:
        ordered = sorted(points)
        if not ordered:
            raise ValueError("a station without readings has no level to follow")
        self._t = [t.timestamp() for t, _ in ordered]
        self._v = [v for _, v in ordered]

    def at(self, when: datetime) -> float:
        x = when.timestamp()
        i = bisect.bisect_right(self._t, x)
        if i == 0:
            return self._v[0]
        if i == len(self._t):
            return self._v[-1]
        t0, t1, v0, v1 = self._t[i - 1], self._t[i], self._v[i - 1], self._v[i]
        return v0 + (v1 - v0) * (x - t0) / (t1 - t0)


def station_levels(
    city: City, scenario: Scenario, start: datetime, stations: set[str]
) -> dict[str, StationLevels]:
    """The stations' levels in the scenario played from `start` (its valid readings)."""
    points: dict[str, list[tuple[datetime, float]]] = {s: [] for s in stations}
    for message in iter_messages(city, scenario, start=start):
        for r in message.readings:
            if r.device_id in points and r.metric == "water_level":
                points[r.device_id].append((r.time, r.value))
    return {s: StationLevels(p) for s, p in points.items() if p}


class StationDrain:
    """A `DrainScene` whose depth is the station's level at the simulated time `sim_now()`
    (the vision service stamps its frames with the same clock)."""

    def __init__(
        self,
        camera: Camera,
        levels: StationLevels,
        sim_now: Callable[[], datetime],
        *,
        seed: int = 1,
    ) -> None:
        if camera.gauge is None:
            raise ValueError(f"camera {camera.id} has no gauge")
        self._offset = camera.station_offset_cm
        self._top = camera.gauge.top_cm
        self._levels = levels
        self._sim_now = sim_now
        self._drain = DrainScene(seed=seed)

    def depth_cm(self, when: datetime) -> float:
        return min(self._top, max(0.0, self._levels.at(when) - self._offset))

    def render(self, t: float) -> tuple[Image, Truth]:
        self._drain.depth_start_cm = self.depth_cm(self._sim_now())
        self._drain.depth_rate_cm_s = 0.0
        return self._drain.render(t)
