"""Scenario files: the shipped ones load, and mistakes point at file and line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import shapely

from pantau.city import City
from pantau.errors import ConfigError, ConfigErrors
from simulators.geo import LocalFrame
from simulators.scenario import (
    ClockSkew,
    find_scenario,
    load_scenario,
    parse_duration,
    scenario_paths,
)
from simulators.weather import centre_km

MINIMAL = """\
name: tiny
description: a test scenario
start: 2026-01-14T08:30:00Z
duration: 30m
seed: 1
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "scenario.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def errors_of(path: Path, city: City) -> list[ConfigError]:
    with pytest.raises((ConfigError, ConfigErrors)) as info:
        load_scenario(path, city)
    err = info.value
    if isinstance(err, ConfigErrors):
        return err.errors
    assert isinstance(err, ConfigError)
    return [err]


def test_shipped_scenarios_load(city: City) -> None:
    names = {p.stem for p in scenario_paths()}
    assert {"calm-day", "storm-karawaci"} <= names
    for path in scenario_paths():
        scenario = load_scenario(path, city)
        assert scenario.name == path.stem
        assert scenario.start.utcoffset() is not None


def test_calm_day_is_a_dry_day_with_minor_faults(city: City) -> None:
    calm = load_scenario(find_scenario("calm-day"), city)
    assert calm.duration_s == 24 * 3600
    assert calm.cells == ()
    assert 1 <= len(calm.faults) <= 6


def test_storm_path_crosses_karawaci(city: City) -> None:
    storm = load_scenario(find_scenario("storm-karawaci"), city)
    assert storm.duration_s == 2 * 3600
    karawaci = city.zones.by_id()["kec-karawaci"].geometry
    kota = city.zones.kota.geometry
    frame = LocalFrame(kota.centroid.x, kota.centroid.y)
    core = max(storm.cells, key=lambda c: c.peak_mm_h)
    # Sample the centre along its life; some of the track lies inside Karawaci.
    t = np.linspace(core.begins_s, core.ends_s, 50)
    x, y = centre_km(core, frame, t)
    lon = frame.lon0 + x / frame.km_per_deg_lon
    lat = frame.lat0 + y / 110.574
    inside = shapely.contains_xy(karawaci, lon, lat)
    assert inside.any()
    assert not inside.all()  # it moves across, not parked


def test_unknown_key_names_file_and_line(tmp_path: Path, city: City) -> None:
    path = write(tmp_path, MINIMAL + "senml_fractoin: 0.5\n")
    [err] = errors_of(path, city)
    assert err.path == path
    assert err.line == 6
    assert "unknown key" in str(err)


def test_bad_zone_id_names_file_and_line(tmp_path: Path, city: City) -> None:
    text = MINIMAL + (
        "storm_cells:\n"
        "  - name: c\n"
        "    over: kec-atlantis\n"
        "    at: 10m\n"
        "    heading_deg: 0\n"
        "    speed_kmh: 5\n"
        "    radius_km: 3\n"
        "    peak_mm_h: 80\n"
        "    begins: 0s\n"
        "    ends: 20m\n"
    )
    [err] = errors_of(write(tmp_path, text), city)
    assert err.line == 8
    assert "kec-atlantis" in str(err)
    assert "kec-karawaci" in str(err)  # says what would have been right


def test_fault_with_unknown_device_and_zone(tmp_path: Path, city: City) -> None:
    text = MINIMAL + (
        "faults:\n"
        "  - kind: dropout\n"
        "    devices: [wl-nowhere-999]\n"
        "  - kind: stuck\n"
        "    zone: kel-nowhere\n"
    )
    errs = errors_of(write(tmp_path, text), city)
    assert [e.line for e in errs] == [8, 10]


def test_fault_kind_is_checked(tmp_path: Path, city: City) -> None:
    text = MINIMAL + "faults:\n  - kind: gremlins\n    devices: [rg-cimone-008]\n"
    [err] = errors_of(write(tmp_path, text), city)
    assert err.line == 7


def test_ambiguous_clock_skew_is_refused(tmp_path: Path, city: City) -> None:
    text = MINIMAL + "faults:\n  - kind: clock_skew\n    devices: [rg-cimone-008]\n    offset: 1h\n"
    [err] = errors_of(write(tmp_path, text), city)
    assert err.line == 9
    assert "ambiguous" in str(err)


def test_group_fault_selects_devices(tmp_path: Path, city: City) -> None:
    text = MINIMAL + (
        "faults:\n"
        "  - kind: clock_skew\n"
        "    kinds: [rain_gauge]\n"
        "    zone: kec-karawaci\n"
        "    offset: 5d\n"
    )
    scenario = load_scenario(write(tmp_path, text), city)
    [fault] = scenario.faults
    assert isinstance(fault, ClockSkew)
    assert fault.refused
    expected = {
        d.id
        for d in city.devices.values()
        if d.kind == "rain_gauge" and d.kecamatan_id == "kec-karawaci"
    }
    assert fault.devices == expected
    assert fault.end_s == 1800


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90.0), ("90s", 90.0), ("45m", 2700.0), ("1h30m", 5400.0), ("2d", 172800.0)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_negative_and_bad_durations() -> None:
    assert parse_duration("-1d") == -86400.0
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("soon")
