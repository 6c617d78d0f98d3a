"""Simulated time, gateways and the CLI, without a broker."""

from __future__ import annotations

import json
import shutil
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pantau.city import City
from pantau.clock import ManualClock
from pantau.settings import MqttSettings
from simulators.__main__ import main
from simulators.publisher import PublishError, gateway_plans, run_scenario, status_payload
from simulators.scenario import find_scenario, load_scenario
from simulators.simclock import SimulatedClock, anchored_start, latest_start

NOW = datetime(2026, 11, 27, 20, 15, 30, tzinfo=UTC)
TWO_HOURS = 7200.0


def test_latest_start_keeps_simulated_time_behind_the_wall() -> None:
    assert latest_start(TWO_HOURS, NOW, None) == NOW - timedelta(hours=2)
    assert latest_start(TWO_HOURS, NOW, 1.0) == NOW
    # x60: two simulated hours take two minutes, so the start is 1 h 58 min back.
    assert latest_start(TWO_HOURS, NOW, 60.0) == NOW - timedelta(hours=1, minutes=58)


@pytest.mark.parametrize("speed", [None, 1.0, 60.0])
def test_anchored_start_keeps_the_time_of_day(speed: float | None) -> None:
    scenario_start = datetime(2026, 1, 14, 8, 30, tzinfo=UTC)
    start = anchored_start(scenario_start, TWO_HOURS, NOW, speed)
    assert (start.hour, start.minute) == (8, 30)
    assert start <= latest_start(TWO_HOURS, NOW, speed)
    assert latest_start(TWO_HOURS, NOW, speed) - start < timedelta(days=1)


def test_simulated_clock_runs_faster() -> None:
    wall = ManualClock(NOW)
    sim_start = datetime(2026, 1, 14, 8, 30, tzinfo=UTC)
    clock = SimulatedClock(wall, sim_start, speed=60.0)
    assert clock.now() == sim_start
    wall.advance(timedelta(seconds=2))
    assert clock.now() == sim_start + timedelta(minutes=2)
    assert clock.wall_seconds_until(sim_start + timedelta(minutes=3)) == pytest.approx(1.0)


def test_one_gateway_per_kecamatan(city: City) -> None:
    plans = gateway_plans(city)
    assert len(plans) == len(city.zones.kecamatan)
    seen = [d for p in plans for d in p.devices]
    assert sorted(seen) == sorted(city.devices)
    karawaci = next(p for p in plans if p.id == "gw-karawaci")
    assert all(city.devices[d].kecamatan_id == "kec-karawaci" for d in karawaci.devices)


def test_status_payload() -> None:
    body = json.loads(
        status_payload(
            "wl-x", "online", NOW, gateway="gw-karawaci", kind="water_level_station", reason="up"
        )
    )
    assert body == {
        "device": "wl-x",
        "status": "online",
        "time": "2026-11-27T20:15:30.000Z",
        "gateway": "gw-karawaci",
        "kind": "water_level_station",
        "reason": "up",
    }


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_run_without_a_broker_fails_clearly(city: City) -> None:
    scenario = load_scenario(find_scenario("storm-karawaci"), city)
    with pytest.raises(PublishError, match="cannot reach"):
        run_scenario(city, scenario, MqttSettings(port=_closed_port()), speed=None)


def test_cli_lists_scenarios(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scenarios"]) == 0
    out = capsys.readouterr().out
    assert "storm-karawaci" in out
    assert "calm-day" in out


def test_cli_dry_run(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--scenario", "storm-karawaci", "--speed", "max", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "storm-karawaci" in out
    assert "malformed" in out


def test_cli_rejects_bad_speed(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["run", "--scenario", "storm-karawaci", "--speed", "fast"])
    assert "speed" in capsys.readouterr().err


def test_cli_place_devices_is_reproducible(city: City, tmp_path: Path) -> None:
    config = tmp_path / "config"
    shutil.copytree(city.config_dir, config)
    (config / "devices.yaml").unlink()
    assert main(["--config-dir", str(config), "place-devices", "--seed", "2026"]) == 0
    assert (config / "devices.yaml").read_text() == (city.config_dir / "devices.yaml").read_text()
