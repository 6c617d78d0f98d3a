"""The city as config: real zones, the device registry and line-precise errors."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pantau.city import City, load_city
from pantau.cli import main
from pantau.devices import default_config_dir
from pantau.errors import ConfigErrors
from pantau.incidents import Hazard


def test_zones_come_from_the_real_boundaries(city: City) -> None:
    assert len(city.zones.kelurahan) == 104
    assert len(city.zones.kecamatan) == 13
    # The data README's trap: the coarse kecamatan layer puts this point in Karawaci.
    zone = city.index.kelurahan_at(106.63, -6.18)
    assert zone is not None
    assert (zone.name, zone.parent_id) == ("Sukasari", "kec-tangerang")
    assert city.index.kelurahan_at(106.80, -6.20) is None  # Jakarta, outside the city


def test_every_kecamatan_is_the_union_of_its_kelurahan(city: City) -> None:
    for kec in city.zones.kecamatan:
        members = [k for k in city.zones.kelurahan if k.parent_id == kec.id]
        assert members
        assert abs(sum(k.geometry.area for k in members) - kec.geometry.area) < 1e-9


def test_registry_has_the_fleet_the_city_needs(city: City) -> None:
    kinds = {d.kind for d in city.devices.values()}
    assert len(city.devices) >= 300
    assert kinds >= {
        "water_level_station",
        "rain_gauge",
        "flow_meter",
        "pump_station",
        "flood_gate",
        "traffic_counter",
        "road_surface",
    }
    for d in city.devices.values():
        kel = city.index.kelurahan_at(d.lon, d.lat)
        assert kel is not None and kel.id == d.kelurahan_id and kel.parent_id == d.kecamatan_id
        assert d.agency in city.agencies
        if d.kind == "water_level_station":
            assert d.levels is not None and d.levels.alert_cm < d.levels.danger_cm


@pytest.fixture
def config_copy(tmp_path: Path) -> Path:
    return Path(shutil.copytree(default_config_dir(), tmp_path / "config"))


def errors_of(config_dir: Path) -> list[str]:
    with pytest.raises(ConfigErrors) as info:
        load_city(config_dir)
    return [str(e) for e in info.value.errors]


def line_of(path: Path, needle: str) -> int:
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in {path}")


def test_unknown_key_names_file_and_line(config_copy: Path) -> None:
    devices = config_copy / "devices.yaml"
    text = devices.read_text().replace("  agency: bpbd\n", "  agency: bpbd\n  colour: red\n", 1)
    devices.write_text(text)
    (error,) = errors_of(config_copy)
    assert error.startswith(f"{devices}:{line_of(devices, 'colour: red')}: ")
    assert "colour: unknown key" in error


def test_device_outside_every_zone_names_its_line(config_copy: Path) -> None:
    devices = config_copy / "devices.yaml"
    text = devices.read_text()
    first_location = text.split("location: ", 1)[1].split("\n", 1)[0]
    devices.write_text(text.replace(first_location, "[106.8, -6.2]", 1))
    (error,) = errors_of(config_copy)
    assert error.startswith(f"{devices}:{line_of(devices, '[106.8, -6.2]')}: ")
    assert "outside every kelurahan" in error


def test_bad_unit_in_the_catalogue(config_copy: Path) -> None:
    catalogue = config_copy / "catalogue.yaml"
    catalogue.write_text(catalogue.read_text().replace("unit: mm/h", "unit: mm/hr", 1))
    (error,) = errors_of(config_copy)
    assert error.startswith(f"{catalogue}:{line_of(catalogue, 'rainfall_rate:')}: ")
    assert "'mm/hr' is not a SenML unit" in error


def test_several_problems_are_reported_together(config_copy: Path) -> None:
    devices = config_copy / "devices.yaml"
    text = devices.read_text().replace("kind: rain_gauge", "kind: rain_gouge", 1)
    text = text.replace("agency: dishub", "agency: police", 1)
    devices.write_text(text)
    errors = errors_of(config_copy)
    assert len(errors) == 2
    assert any("unknown kind 'rain_gouge'" in e for e in errors)
    assert any("unknown agency 'police'" in e for e in errors)


def test_city_facts_come_from_city_yaml(city: City) -> None:
    facts = city.facts
    assert (facts.display_name, facts.kota_id) == ("Kota Tangerang", "kota-tangerang")
    assert (city.zones.kota.id, city.zones.kota.name) == ("kota-tangerang", "Kota Tangerang")
    # Local time by the IANA zone: 2026-11-30 20:00 UTC is already December in Tangerang.
    local = facts.local(datetime(2026, 11, 30, 20, 0, tzinfo=UTC))
    assert (local.month, local.day, local.hour, local.tzname()) == (12, 1, 3, "WIB")
    assert city.hazard_agency[Hazard.FLOOD] == "bpbd"
    assert set(city.hazard_agency) == set(Hazard)


def test_unknown_time_zone_names_its_line(config_copy: Path) -> None:
    path = config_copy / "city.yaml"
    path.write_text(path.read_text().replace("time_zone: Asia/Jakarta", "time_zone: WIB", 1))
    (error,) = errors_of(config_copy)
    assert error.startswith(f"{path}:{line_of(path, 'time_zone: WIB')}: time_zone: ")
    assert "unknown IANA time zone 'WIB'" in error


def test_every_hazard_has_one_known_agency(config_copy: Path) -> None:
    path = config_copy / "agencies.yaml"
    text = path.read_text().replace("  traffic_jam: dishub\n", "", 1)
    path.write_text(text.replace("road_damage: pupr", "road_damage: binamarga", 1))
    errors = errors_of(config_copy)
    assert len(errors) == 2, errors
    assert any(
        e.startswith(f"{path}:{line_of(path, 'road_damage: binamarga')}: hazards.road_damage: ")
        and "unknown agency 'binamarga'" in e
        for e in errors
    ), errors
    assert any("no agency answers for 'traffic_jam'" in e for e in errors), errors


def test_yaml_syntax_and_duplicate_keys(config_copy: Path) -> None:
    agencies = config_copy / "agencies.yaml"
    agencies.write_text(agencies.read_text() + "  pupr:\n    name: again\n")
    (error,) = errors_of(config_copy)
    assert "duplicate key" in error and str(agencies) in error
    agencies.write_text("agencies: [unclosed\n")
    (error,) = errors_of(config_copy)
    assert error.startswith(f"{agencies}:") and "YAML syntax" in error


def test_check_config_command(config_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", "--config-dir", str(config_copy)]) == 0
    assert "devices: 325" in capsys.readouterr().out
    devices = config_copy / "devices.yaml"
    devices.write_text(devices.read_text().replace("kind: flow_meter", "kind: flowmeter", 1))
    assert main(["check-config", "--config-dir", str(config_copy)]) == 1
    err = capsys.readouterr().err
    assert f"{devices}:{line_of(devices, 'kind: flowmeter')}: " in err
    assert "unknown kind 'flowmeter'" in err
    assert main(["no-such-command"]) == 2
