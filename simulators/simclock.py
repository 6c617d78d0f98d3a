"""Simulated time for live runs: where a scenario sits in time, and how fast it runs.

Ingest judges device timestamps against its own wall clock: it refuses readings more
than 300 s ahead or more than 7 days old. A run therefore must keep simulated time at
or behind the wall clock. `anchored_start` moves the scenario by whole days (so rush
hours stay rush hours) to the latest start that keeps it behind, which lands every
reading within the last day + scenario duration.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from pantau.clock import Clock

DAY = timedelta(days=1)


def latest_start(duration_s: float, now: datetime, speed: float | None) -> datetime:
    """The latest start whose simulated time never runs ahead of the wall clock.

    At speed s the run takes duration/s of wall time and the last reading is sent at
    start + duration, so start + duration <= now + duration / s.
    """
    lag = duration_s if speed is None else duration_s * max(0.0, 1.0 - 1.0 / speed)
    return (now - timedelta(seconds=lag)).replace(microsecond=0)


def anchored_start(
    scenario_start: datetime, duration_s: float, now: datetime, speed: float | None
) -> datetime:
    """The scenario's start moved by whole days to the latest start allowed by `now`."""
    latest = latest_start(duration_s, now, speed)
    days = math.floor((latest - scenario_start) / DAY)
    return scenario_start + days * DAY


class SimulatedClock:
    """A pantau Clock whose time runs `speed` times faster than a wall clock, from
    `sim_start` at the wall time it was created."""

    def __init__(self, wall: Clock, sim_start: datetime, speed: float) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self._wall = wall
        self._wall_start = wall.now()
        self._sim_start = sim_start
        self.speed = speed

    def now(self) -> datetime:
        return self._sim_start + (self._wall.now() - self._wall_start) * self.speed

    def wall_seconds_until(self, sim_time: datetime) -> float:
        """How long to wait on the wall clock until the simulated clock shows `sim_time`."""
        return (sim_time - self.now()).total_seconds() / self.speed
