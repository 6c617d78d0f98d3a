"""docker-compose.yml: valid for Compose (no engine runs here) and in step with Pantau.

`docker-compose config` (Debian's docker-compose) parses and interpolates the file with
the documented example env file; each Pantau service's environment must then be
accepted by `Settings` itself, so a renamed setting breaks this test, not a deployment.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from pantau.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
PANTAU_SERVICES = ("ingest", "simulator")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    result = subprocess.run(
        ["docker-compose", "--env-file", ".env.example", "--profile", "demo", "config"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    parsed: dict[str, Any] = yaml.safe_load(result.stdout)
    return parsed


def test_compose_refuses_to_start_without_secrets(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFLUX")}
    empty = tmp_path / "empty.env"
    empty.write_text("")
    result = subprocess.run(
        ["docker-compose", "--env-file", str(empty), "config", "-q"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert result.returncode != 0
    assert "INFLUX_" in result.stderr


@pytest.mark.parametrize("service", PANTAU_SERVICES)
def test_pantau_services_get_settings_pantau_accepts(
    compose: dict[str, Any], service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = compose["services"][service]
    env = spec["environment"]
    for key in [k for k in os.environ if k.startswith("PANTAU_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, str(value))
    settings = Settings()
    assert settings.mqtt.host == "mosquitto"
    assert settings.influx.url == "http://influxdb:8086"
    assert settings.influx.token is not None
    assert spec["depends_on"]["mosquitto"]["condition"] == "service_healthy"
    assert spec["depends_on"]["influxdb"]["condition"] == "service_healthy"


def test_influxdb_is_initialised_with_the_bucket_and_token_pantau_uses(
    compose: dict[str, Any],
) -> None:
    influx = compose["services"]["influxdb"]["environment"]
    ingest = compose["services"]["ingest"]["environment"]
    assert influx["DOCKER_INFLUXDB_INIT_BUCKET"] == ingest["PANTAU_INFLUX__DATABASE"]
    assert influx["DOCKER_INFLUXDB_INIT_ORG"] == ingest["PANTAU_INFLUX__ORG"]
    assert influx["DOCKER_INFLUXDB_INIT_ADMIN_TOKEN"] == ingest["PANTAU_INFLUX__TOKEN"]
