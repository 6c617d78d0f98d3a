"""Which kelurahan a scenario floods most, as the simulator knows it: the oracle's
perfect instruments (testkit.truth plays the fleet noise-free, faults applied) read for
how long each kelurahan's water-level stations stood at or above their Siaga II level
(`levels.alert_cm`, the level the flood rule raises at), and how high they went.

The planning tests rank kelurahan from the incidents Pantau raised and compare."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from pantau.city import City
from simulators.messages import FleetStream
from simulators.scenario import Scenario

BUCKET_S = 60


@dataclass(frozen=True, slots=True)
class KelurahanFlood:
    kelurahan_id: str
    hours: float  # minutes with any station at or above alert, / 60
    peak_cm: float  # highest noise-free water level of its stations


def flood_truth(city: City, scenario: Scenario, end: datetime) -> dict[str, KelurahanFlood]:
    """Per kelurahan with a station that reached its alert level before `end`."""
    stations = {
        d.id: d
        for d in city.devices.values()
        if d.kind == "water_level_station" and d.levels is not None
    }
    series: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for msg in FleetStream(city, scenario, noisy=False):
        if msg.sim_time >= end + timedelta(hours=1):  # held-back batches arrive late
            break
        if msg.device_id not in stations or msg.taken_at >= end:
            continue
        for metric, value in zip(msg.metrics, msg.values, strict=True):
            if metric == "water_level":
                series[msg.device_id].append((msg.reading_time.timestamp(), value))
    minutes: dict[str, set[int]] = defaultdict(set)
    peaks: dict[str, float] = {}
    for device_id, points in series.items():
        d = stations[device_id]
        assert d.levels is not None
        points.sort()
        stop = end.timestamp()
        for (t, v), (t_next, _) in zip(points, [*points[1:], (stop, 0.0)], strict=True):
            if v >= d.levels.alert_cm:
                # Held until the next reading: the level a reading shows lasts until then.
                minutes[d.kelurahan_id].update(range(int(t) // BUCKET_S, int(t_next) // BUCKET_S))
                peaks[d.kelurahan_id] = max(peaks.get(d.kelurahan_id, v), v)
    return {
        k: KelurahanFlood(k, len(m) * BUCKET_S / 3600.0, peaks[k]) for k, m in minutes.items() if m
    }
