"""The simulated world behaves: storms raise rain and, later, drains; traffic has rush
hours; a calm day stays calm. Checked on the message stream, no broker."""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from pantau.city import City
from simulators.fleet import DeviceTrack, build_tracks
from simulators.messages import SimMessage, iter_messages
from simulators.scenario import Scenario, find_scenario, load_scenario
from simulators.traffic import local_hours, local_seconds

Series = dict[tuple[str, str], list[tuple[float, float]]]  # (device, metric) -> (min, value)


@pytest.fixture(scope="module")
def storm(city: City) -> Scenario:
    return load_scenario(find_scenario("storm-karawaci"), city)


@pytest.fixture(scope="module")
def storm_messages(city: City, storm: Scenario) -> list[SimMessage]:
    return list(iter_messages(city, storm))


@pytest.fixture(scope="module")
def storm_series(storm: Scenario, storm_messages: list[SimMessage]) -> Series:
    series: Series = defaultdict(list)
    for m in storm_messages:
        minute = (m.sim_time - storm.start).total_seconds() / 60
        for metric, value in zip(m.metrics, m.values, strict=True):
            series[(m.device_id, metric)].append((minute, value))
    return series


@pytest.fixture(scope="module")
def calm_tracks(city: City) -> list[DeviceTrack]:
    # The fault-free signals of the whole 24 h day (encoding it all is not needed here).
    return build_tracks(city, load_scenario(find_scenario("calm-day"), city))


def ids(city: City, kind: str, kecamatan: str | None = None) -> list[str]:
    return sorted(
        d.id
        for d in city.devices.values()
        if d.kind == kind and (kecamatan is None or d.kecamatan_id == kecamatan)
    )


def peak(points: list[tuple[float, float]]) -> tuple[float, float]:
    """(minute, value) of the highest value."""
    return max(points, key=lambda p: p[1])


def test_storm_rains_under_the_cell_not_far_away(city: City, storm_series: Series) -> None:
    under = [
        peak(storm_series[(g, "rainfall_rate")])[1] for g in ids(city, "rain_gauge", "kec-karawaci")
    ]
    far = [
        peak(storm_series[(g, "rainfall_rate")])[1] for g in ids(city, "rain_gauge", "kec-larangan")
    ]
    assert min(under) >= 60.0  # heavy convective rain over every Karawaci gauge
    assert max(far) <= 20.0  # Larangan, 12 km east, barely gets the edge


def test_drains_peak_after_the_rain(city: City, storm_series: Series) -> None:
    rain_peaks = [
        peak(storm_series[(g, "rainfall_rate")])[0] for g in ids(city, "rain_gauge", "kec-karawaci")
    ]
    level_peaks = [
        peak(storm_series[(s, "water_level")])[0]
        for s in ids(city, "water_level_station", "kec-karawaci")
    ]
    assert statistics.median(level_peaks) > statistics.median(rain_peaks) + 15


def test_drains_start_at_base_level_and_rise(city: City, storm_series: Series) -> None:
    for s in ids(city, "water_level_station", "kec-karawaci"):
        levels = [v for _, v in storm_series[(s, "water_level")]]
        bank = city.devices[s].levels
        assert bank is not None
        assert levels[0] < bank.alert_cm
        assert max(levels) <= bank.bankfull_cm + 2  # sensor noise on a full channel


def test_storm_pushes_karawaci_and_downstream_past_alert(city: City, storm_series: Series) -> None:
    def crossed(kecamatan: str) -> tuple[int, int, list[float]]:
        stations = ids(city, "water_level_station", kecamatan)
        hits, times = 0, []
        for s in stations:
            levels = city.devices[s].levels
            assert levels is not None
            minute, top = peak(storm_series[(s, "water_level")])
            if top >= levels.alert_cm:
                hits += 1
                times.append(minute)
        return hits, len(stations), times

    karawaci, n_karawaci, karawaci_times = crossed("kec-karawaci")
    assert karawaci >= n_karawaci // 2
    # Neglasari lies downstream (north, towards the sea): it floods later.
    downstream, _, downstream_times = crossed("kec-neglasari")
    assert downstream >= 1
    assert statistics.median(downstream_times) > statistics.median(karawaci_times)
    # Ciledug, 10 km to the south-east and off the cell's track, stays quiet.
    assert crossed("kec-ciledug")[0] == 0


def test_pumps_run_in_the_storm(city: City, storm_series: Series) -> None:
    pumps = ids(city, "pump_station", "kec-karawaci") + ids(city, "pump_station", "kec-neglasari")
    late = [v for p in pumps for minute, v in storm_series[(p, "pump_running")] if minute > 60]
    assert np.mean(late) > 0.9


def test_gates_open_with_the_water(city: City, storm_series: Series) -> None:
    gates = ids(city, "flood_gate", "kec-karawaci") + ids(city, "flood_gate", "kec-neglasari")
    for g in gates:
        openings = [v for _, v in storm_series[(g, "gate_opening")]]
        assert openings[0] <= 30
        assert max(openings) >= 60
        assert all(v % 10 == 0 for v in openings)  # operators set round openings


def test_calm_day_never_reaches_alert(city: City, calm_tracks: list[DeviceTrack]) -> None:
    for t in calm_tracks:
        if t.device.kind == "water_level_station":
            assert t.device.levels is not None
            assert max(t.values["water_level"]) < t.device.levels.alert_cm
        if t.device.kind == "rain_gauge":
            assert max(t.values["rainfall_rate"]) == 0.0


def test_pump_hysteresis_on_calm_day(calm_tracks: list[DeviceTrack]) -> None:
    pumps = [t for t in calm_tracks if t.device.kind == "pump_station"]
    switches = 0
    for t in pumps:
        running, level = t.values["pump_running"], t.values["water_level"]
        for i in range(1, len(running)):
            if running[i] and not running[i - 1]:
                switches += 1
                assert level[i] >= 170  # starts high ...
            if running[i - 1] and not running[i]:
                assert level[i] <= 100  # ... stops low
    assert switches >= len(pumps)  # dry-weather inflow cycles each pump during a day


def _local_hour(city: City, start: datetime, offset_s: int) -> float:
    local = city.facts.local(start + timedelta(seconds=offset_s))
    return local.hour + local.minute / 60


def test_traffic_runs_on_the_city_clock() -> None:
    at = np.array([datetime(2026, 11, 30, 20, 0, tzinfo=UTC).timestamp()])
    for zone, hour in (("Asia/Jakarta", 3.0), ("Asia/Makassar", 4.0)):
        hours, weekend = local_hours(local_seconds(at, ZoneInfo(zone)))
        assert (hours[0], bool(weekend[0])) == (hour, False)  # Tuesday 1 December
    # A zone with summer time: the offset of each instant, not one for the whole run.
    spring = datetime(2026, 3, 29, 0, 30, tzinfo=UTC).timestamp()  # 01:00 UTC: CET -> CEST
    hours, _ = local_hours(
        local_seconds(np.array([spring, spring + 3600]), ZoneInfo("Europe/Amsterdam"))
    )
    assert hours.tolist() == [1.5, 3.5]


def test_rush_hours_beat_the_night(city: City, calm_tracks: list[DeviceTrack]) -> None:
    start = datetime(2026, 7, 7, 17, 0, tzinfo=UTC)  # calm-day: 00:00 in the city
    night, morning, evening = [], [], []
    night_speed, rush_speed = [], []
    for t in calm_tracks:
        if t.device.kind != "traffic_counter":
            continue
        for j, off in enumerate(t.offsets_s):
            h = _local_hour(city, start, off)
            flow, speed = t.values["traffic_flow"][j], t.values["speed"][j]
            if 2.5 <= h < 3.5:
                night.append(flow)
                night_speed.append(speed)
            elif 7.0 <= h < 8.5:
                morning.append(flow)
                rush_speed.append(speed)
            elif 17.5 <= h < 19.0:
                evening.append(flow)
                rush_speed.append(speed)
    assert np.mean(morning) > 3 * np.mean(night)
    assert np.mean(evening) > 3 * np.mean(night)
    assert np.mean(rush_speed) < 0.7 * np.mean(night_speed)


def test_rain_slows_traffic(city: City, storm: Scenario) -> None:
    dry = replace(storm, cells=())
    wet_tracks = {t.device.id: t for t in build_tracks(city, storm)}
    dry_tracks = {t.device.id: t for t in build_tracks(city, dry)}
    wet_speed, dry_speed = [], []
    for c in ids(city, "traffic_counter", "kec-karawaci"):
        # 30-50 minutes in: the core is over Karawaci.
        window = [j for j, off in enumerate(wet_tracks[c].offsets_s) if 30 * 60 <= off < 50 * 60]
        wet_speed += [wet_tracks[c].values["speed"][j] for j in window]
        dry_speed += [dry_tracks[c].values["speed"][j] for j in window]
    assert np.mean(wet_speed) < 0.85 * np.mean(dry_speed)


def test_battery_drains_and_rssi_is_noisy(calm_tracks: list[DeviceTrack]) -> None:
    for t in calm_tracks:
        if "battery" in t.values:
            battery = t.values["battery"]
            assert np.mean(battery[-30:]) < np.mean(battery[:30])
        rssi = t.values["rssi"]
        assert len(set(rssi)) > 3
        assert all(-140 <= v <= 0 for v in rssi)


def test_road_roughness_drifts_slowly(calm_tracks: list[DeviceTrack]) -> None:
    for t in calm_tracks:
        if t.device.kind == "road_surface":
            iri = t.values["road_roughness"]
            assert abs(np.mean(iri[-12:]) - np.mean(iri[:12])) < 1.5  # m/km over a day
