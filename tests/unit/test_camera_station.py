"""A flood camera's water follows its station: hand-computed interpolation, the
camera's offset and the gauge's range, and the levels the fleet itself reports."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

from pantau.cameras import load_cameras
from pantau.city import City
from simulators.camera.station import StationDrain, StationLevels, station_levels
from simulators.messages import iter_messages
from simulators.scenario import find_scenario, load_scenario

T0 = datetime(2026, 1, 14, 8, 30, tzinfo=UTC)
M = timedelta(minutes=1)


def test_levels_interpolate_between_readings() -> None:
    levels = StationLevels([(T0 + M, 110.0), (T0, 100.0), (T0 + 3 * M, 90.0)])
    assert levels.at(T0 - M) == 100.0  # before the first: the first
    assert levels.at(T0 + 30 * timedelta(seconds=1)) == 105.0
    assert levels.at(T0 + 2 * M) == 100.0  # halfway from 110 down to 90
    assert levels.at(T0 + 9 * M) == 90.0  # after the last: the last


def test_the_gauge_reads_the_level_less_the_offset_within_its_range(city: City) -> None:
    camera = dataclasses.replace(load_cameras(city)["cam-flood-babakan"], station_offset_cm=80.0)
    assert camera.gauge is not None and camera.gauge.top_cm == 120.0
    levels = StationLevels([(T0, 60.0), (T0 + 10 * M, 160.0), (T0 + 20 * M, 260.0)])
    now = [T0]
    drain = StationDrain(camera, levels, lambda: now[0])
    assert drain.depth_cm(T0) == 0.0  # 60 - 80: below the gauge's zero
    assert drain.depth_cm(T0 + 5 * M) == 30.0  # 110 - 80
    assert drain.depth_cm(T0 + 20 * M) == 120.0  # 260 - 80 = 180, the gauge ends at 120
    now[0] = T0 + 5 * M
    _, truth = drain.render(0.0)
    assert truth.depth_cm == 30.0  # the picture shows what the clock says


def test_station_levels_are_the_fleets_readings(city: City) -> None:
    scenario = load_scenario(find_scenario("storm-karawaci"), city)
    scenario = dataclasses.replace(scenario, duration_s=1800.0)
    levels = station_levels(city, scenario, T0, {"wl-babakan-002"})
    sent = [
        (r.time, r.value)
        for m in iter_messages(city, scenario, start=T0)
        for r in m.readings
        if r.device_id == "wl-babakan-002" and r.metric == "water_level"
    ]
    assert len(sent) >= 10
    for t, v in sent:
        assert levels["wl-babakan-002"].at(t) == v
