"""Sliding windows over a device's series: rise per minute, running mean, spread."""

from __future__ import annotations

import math
from collections import deque
from datetime import datetime, timedelta


def rate_per_min(window: deque[tuple[datetime, float]], span: timedelta) -> float | None:
    """Rise per minute over the window, once at least half of it is covered."""
    if len(window) < 2:
        return None
    (t0, v0), (t1, v1) = window[0], window[-1]
    if t1 - t0 < span / 2:
        return None
    return (v1 - v0) / ((t1 - t0).total_seconds() / 60)


class Mean:
    """Mean of the readings of the last `span` (BMKG's hourly rain is a 60-minute mean)."""

    __slots__ = ("span", "window")

    def __init__(self, span: timedelta) -> None:
        self.span = span
        self.window: deque[tuple[datetime, float]] = deque()

    def add(self, at: datetime, value: float) -> float:
        self.window.append((at, value))
        while self.window[0][0] <= at - self.span:
            self.window.popleft()
        return math.fsum(v for _, v in self.window) / len(self.window)


def push_window(
    window: deque[tuple[datetime, float]], at: datetime, value: float, span: timedelta
) -> None:
    """Append and drop what is older than `span`, keeping one point at or before its start."""
    window.append((at, value))
    while len(window) >= 2 and window[1][0] <= at - span:
        window.popleft()


class Spread:
    """A flatline window (as `push_window` keeps it: one point at or before its start) and the
    spread of its values, in O(1) amortised per reading: monotonic deques of the
    window's minima and maxima instead of a scan of the whole window (a 60-minute
    window of a device reporting every second is 3,600 points)."""

    __slots__ = ("highs", "lows", "n", "span", "window")

    def __init__(self, span: timedelta) -> None:
        self.span = span
        self.window: deque[tuple[datetime, int]] = deque()  # (time, sequence number)
        self.lows: deque[tuple[float, int]] = deque()  # increasing values
        self.highs: deque[tuple[float, int]] = deque()  # decreasing values
        self.n = 0

    @property
    def start(self) -> datetime:
        return self.window[0][0]

    def add(self, at: datetime, value: float) -> float:
        n = self.n
        self.n += 1
        self.window.append((at, n))
        lows, highs = self.lows, self.highs
        while lows and lows[-1][0] >= value:
            lows.pop()
        lows.append((value, n))
        while highs and highs[-1][0] <= value:
            highs.pop()
        highs.append((value, n))
        window = self.window
        while len(window) >= 2 and window[1][0] <= at - self.span:
            _, gone = window.popleft()
            if lows[0][1] == gone:
                lows.popleft()
            if highs[0][1] == gone:
                highs.popleft()
        return highs[0][0] - lows[0][0]
