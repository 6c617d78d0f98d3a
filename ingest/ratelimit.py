"""Per-device message budget, so one noisy device cannot crowd out the others.

A device may send `factor` messages per report interval (its kind's `report_every_s`
in the catalogue) of *device time*: the budget is counted in windows of the device's
own timestamps, not of arrival. Replays, and gateways forwarding a buffered backlog
after an outage, arrive far faster than real time but spread over their windows and
pass; a device that floods with current timestamps fills its window and is shed. The
shed messages go to the dead-letter topic with reason `rate_limited`.
"""

from __future__ import annotations

from collections.abc import Mapping

WINDOWS_KEPT = 64  # per device; older windows are forgotten (and start afresh if revisited)


class DeviceRateLimiter:
    def __init__(self, report_every_s: Mapping[str, float], factor: float) -> None:
        """`report_every_s`: device id -> nominal interval. `factor` 0 turns it off."""
        self._interval = dict(report_every_s)
        self.factor = factor
        self._windows: dict[str, dict[int, int]] = {}

    def allow(self, device_id: str, device_time_s: float) -> bool:
        """Count one message of `device_id` stamped `device_time_s` (epoch seconds)."""
        if self.factor <= 0:
            return True
        interval = self._interval.get(device_id)
        if interval is None:
            return True
        window = int(device_time_s // interval)
        counts = self._windows.setdefault(device_id, {})
        seen = counts.get(window, 0)
        if seen >= self.factor:
            return False
        counts[window] = seen + 1
        if len(counts) > WINDOWS_KEPT:
            del counts[min(counts)]
        return True

    def limit(self, device_id: str) -> str:
        """The budget in words, for dead letters."""
        interval = self._interval.get(device_id, 0.0)
        return f"{self.factor:g} messages per {interval:g} s of device time"
