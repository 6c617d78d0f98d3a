"""Readings: one metric value from one device at one device time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class Reading:
    """A validated reading in the catalogue's canonical unit.

    Identity (what makes a replay overwrite instead of duplicating) is
    (device_id, metric, time): never ingest time, never a worker id.
    """

    device_id: str
    metric: str
    value: float
    unit: str
    time: datetime
    seq: int | None = None
