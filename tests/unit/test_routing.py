"""Routing: the responsible agency's crew covering the zone on shift at event time (WIB),
else the agency's supervisor; crews.yaml mistakes come back with file and line."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from pantau.city import City
from pantau.errors import ConfigErrors
from pantau.incidents import Hazard
from pantau.roster import load_roster
from pantau.zoneindex import ZoneIndex
from rules.routing import Router

WIB = timezone(timedelta(hours=7))


@pytest.fixture(scope="module")
def router(city: City) -> Router:
    return Router(load_roster(city), ZoneIndex.for_city(city))


def wib(hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2026, 1, 14, hour, minute, second, tzinfo=WIB)


@pytest.mark.parametrize(
    ("at", "crew"),
    [
        (wib(7, 0), "bpbd-barat-pagi"),  # a shift starts on its first minute
        (wib(14, 59, 59), "bpbd-barat-pagi"),
        (wib(15, 0), "bpbd-barat-siang"),  # ... and ends before its last
        (wib(22, 59, 59), "bpbd-barat-siang"),
        (wib(23, 0), "bpbd-barat-malam"),
        (wib(0, 30), "bpbd-barat-malam"),  # the night shift wraps past midnight
        (wib(6, 59, 59), "bpbd-barat-malam"),
    ],
)
def test_flood_goes_to_the_bpbd_crew_on_shift(router: Router, at: datetime, crew: str) -> None:
    assert router.route("kel-cimone", Hazard.FLOOD, at) == crew


def test_shifts_are_wib_whatever_the_zone_of_the_timestamp(router: Router) -> None:
    # 08:00 UTC is 15:00 WIB: the evening shift.
    at = datetime(2026, 1, 14, 8, 0, tzinfo=UTC)
    assert router.route("kec-karawaci", Hazard.FLOOD, at) == "bpbd-barat-siang"
    with pytest.raises(ValueError, match="tz-aware"):
        router.route("kec-karawaci", Hazard.FLOOD, datetime(2026, 1, 14, 8, 0))


def test_each_hazard_goes_to_its_agency(router: Router) -> None:
    at = wib(10)
    assert router.route("kel-cipadu", Hazard.FLOOD, at) == "bpbd-selatan-pagi"
    assert router.route("kel-cipadu", Hazard.HEAVY_RAIN, at) == "bpbd-selatan-pagi"
    assert router.route("kel-cipadu", Hazard.PUMP_FAILURE, at) == "pupr-selatan-pagi"
    assert router.route("kel-cipadu", Hazard.ROAD_DAMAGE, at) == "pupr-selatan-pagi"
    assert router.route("kel-cipadu", Hazard.TRAFFIC_JAM, at) == "dishub-pagi"
    assert router.route("kel-cipadu", Hazard.SENSOR_OFFLINE, at) == "diskominfo-pagi"
    assert router.route("kel-cipadu", Hazard.CAMERA_FAULT, at) == "diskominfo-pagi"


def test_no_crew_on_shift_or_no_kecamatan_falls_back_to_the_supervisor(router: Router) -> None:
    # PUPR has no night crews; Diskominfo none at night either.
    assert router.route("kel-cimone", Hazard.PUMP_FAILURE, wib(2)) == "pupr-supervisor"
    assert router.route("kel-cimone", Hazard.BATTERY_LOW, wib(23, 30)) == "diskominfo-supervisor"
    # A city-wide incident has no kecamatan: no sector crew covers it.
    assert router.route("kota-tangerang", Hazard.FLOOD, wib(10)) == "bpbd-supervisor"


def test_every_kecamatan_has_a_bpbd_crew_around_the_clock(city: City, router: Router) -> None:
    for kec in city.zones.kecamatan:
        for hour in range(24):
            assert router.route(kec.id, Hazard.FLOOD, wib(hour)) != "bpbd-supervisor"


def test_roster_errors_name_file_and_line(city: City, tmp_path: Path) -> None:
    path = tmp_path / "crews.yaml"
    path.write_text(
        "shifts:\n"
        "  pagi: {start: '07:00', end: '15:00'}\n"
        "supervisors:\n"
        "  bpbd: {id: bpbd-sup, name: Piket}\n"
        "crews:\n"
        "  - {id: a, agency: bpbd, shift: pagi, kecamatan: [kec-karawaci]}\n"
        "  - {id: b, agency: bpbd, shift: pagi, kecamatan: [kec-karawaci, kec-nowhere]}\n"
        "  - {id: c, agency: bpbd, shift: sore, kecamatan: [kec-benda]}\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigErrors) as err:
        load_roster(city, path)
    text = str(err.value)
    assert f"{path}:3: supervisors: agency 'dishub' has no supervisor" in text
    assert f"{path}:7: crews[1].kecamatan[0]: kec-karawaci on pagi is already covered" in text
    assert f"{path}:7: crews[1].kecamatan[1]: unknown kecamatan 'kec-nowhere'" in text
    assert f"{path}:8: crews[2].shift: unknown shift 'sore'" in text
