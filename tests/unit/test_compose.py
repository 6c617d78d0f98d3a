"""docker-compose.yml: valid for Compose (no engine runs here) and in step with Pantau.

`docker-compose config` (Debian's docker-compose) parses and interpolates the file with
an env file; each Pantau service's environment, plus the broker credentials its
entrypoint sources from the files `pantau broker config` really writes, must then be
accepted by `Settings` itself in production mode, so a renamed setting, a missing
secret or a missing account breaks this test, not a deployment.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from dashboards.city_overview import KELURAHAN_GEOJSON
from dashboards.model import INFLUX, POSTGRES
from dashboards.push import FOLDER_UID
from pantau.broker.__main__ import main as broker_main
from pantau.cli import COMMANDS
from pantau.local.influxd import DATA_TUNING
from pantau.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
PANTAU_SERVICES = ("ingest", "rules", "api", "vision", "simulator")
ONE_SHOTS = ("broker-config", "simulator")
NO_PORT = ("vision",)  # its health is each camera's state on MQTT
EXAMPLE = ROOT / ".env.example"
PROFILES = ("--profile", "demo")


def compose_config(env_file: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    result = subprocess.run(
        ["docker-compose", "--env-file", str(env_file), *PROFILES, "config"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    parsed: dict[str, Any] = yaml.safe_load(result.stdout)
    return parsed


def example_keys() -> dict[str, str]:
    pairs = (
        line.split("=", 1)
        for line in EXAMPLE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    )
    return {k: v for k, v in pairs}


@pytest.fixture(scope="module")
def strong_env(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """.env.example with every secret replaced by a long random value, as documented."""
    path = tmp_path_factory.mktemp("env") / ".env"
    lines = [
        f"{k}={secrets.token_urlsafe(33) if 'change-me' in v else v}"
        for k, v in example_keys().items()
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def compose(strong_env: Path) -> dict[str, Any]:
    return compose_config(strong_env)


@pytest.fixture(scope="module")
def broker_env(tmp_path_factory: pytest.TempPathFactory, strong_env: Path) -> Path:
    """What the broker-config one-shot writes: `pantau broker config` itself."""
    out = tmp_path_factory.mktemp("broker")
    secret = dict(
        line.split("=", 1) for line in strong_env.read_text().splitlines() if "=" in line
    )["PANTAU_BROKER_SECRET"]
    with pytest.MonkeyPatch.context() as env:
        for key in [k for k in os.environ if k.startswith("PANTAU_")]:
            env.delenv(key)
        env.setenv("PANTAU_BROKER_SECRET", secret)
        assert broker_main(["config", "--out", str(out)]) == 0
    return out / "env"


def test_the_example_env_file_is_enough_for_compose() -> None:
    compose_config(EXAMPLE)


def test_every_variable_compose_reads_is_documented_in_the_example() -> None:
    text = (ROOT / "docker-compose.yml").read_text(encoding="utf-8")
    used = set(re.findall(r"(?<!\$)\$\{([A-Z_][A-Z0-9_]*)", text))
    assert used, "no ${VAR} in docker-compose.yml?"
    assert used <= set(example_keys()), used - set(example_keys())


def test_compose_refuses_to_start_without_secrets(tmp_path: Path) -> None:
    names = set(example_keys())
    env = {k: v for k, v in os.environ.items() if k not in names}
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
    assert "in .env" in result.stderr


@pytest.mark.parametrize("service", PANTAU_SERVICES)
def test_pantau_services_get_every_setting_they_need(
    compose: dict[str, Any], broker_env: Path, service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = compose["services"][service]
    env = {k: str(v) for k, v in spec["environment"].items()}
    # the entrypoint sources /broker/env/$MQTT_ACCOUNT.env: the file broker-config writes
    assert "/broker/env/" in " ".join(spec["entrypoint"])
    assert any(v["target"] == "/broker/env" for v in _volumes(spec))
    account_file = broker_env / f"{env.pop('MQTT_ACCOUNT')}.env"
    assert account_file.exists(), f"{service}: pantau broker config writes no {account_file.name}"
    for line in account_file.read_text().splitlines():
        key, value = line.split("=", 1)
        env[key] = value
    for key in [k for k in os.environ if k.startswith("PANTAU_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    # every PANTAU_ variable is a setting (a misspelt nested one fails in Settings too)
    read_elsewhere = {"PANTAU_BROKER_SECRET"}  # pantau broker and the simulator's logins
    for key in set(env) - read_elsewhere:
        if key.startswith("PANTAU_"):
            top = key.removeprefix("PANTAU_").split("__")[0].lower()
            assert top in Settings.model_fields, f"{service}: {key} is no setting"
    settings = Settings()
    assert settings.environment == "production"  # weak or missing secrets refused
    assert settings.mqtt.host == "mosquitto" and settings.mqtt.username is not None
    assert settings.influx.url == "http://influxdb:8086" and settings.influx.token is not None
    assert settings.database_url.startswith("postgresql+psycopg://")
    assert "@postgres:5432/" in settings.database_url
    if service == "api":
        assert settings.api.jwt_secret is not None
    command = spec["command"][0]
    assert command in COMMANDS
    for needed in ("broker-config", "mosquitto"):
        assert spec["depends_on"][needed]["condition"] in {
            "service_completed_successfully",
            "service_healthy",
        }


def test_services_wait_for_what_they_need_and_report_health(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("ingest", "rules", "api", "vision"):
        deps = services[name]["depends_on"]
        assert deps["broker-config"]["condition"] == "service_completed_successfully"
        for store in ("mosquitto", "influxdb", "postgres"):
            assert deps[store]["condition"] == "service_healthy", (name, store)
    assert services["grafana"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name, spec in services.items():
        if name in ONE_SHOTS:
            continue
        if name in NO_PORT:
            assert spec["healthcheck"]["test"] == ["NONE"]  # `disable: true`, as config prints it
        else:
            assert spec["healthcheck"]["test"] not in ([], ["NONE"]), name
        assert spec["restart"] == "unless-stopped", name
    assert services["simulator"]["profiles"] == ["demo"]
    for name in ("ingest", "rules", "api", "vision"):  # issue 19: two of each
        assert services[name]["deploy"]["replicas"] == 2, name
    assert services["ingest"]["environment"]["PANTAU_INGEST__PARTITIONS"] == "4"
    assert services["vision"]["environment"]["PANTAU_VISION__SHARE_CAMERAS"] == "true"
    assert services["rules"]["environment"]["PANTAU_RULES__PARTITIONED"] == "true"
    assert set(compose["volumes"]) >= {
        "mosquitto-data",
        "influxdb-data",
        "postgres-data",
        "grafana-data",
        "ingest-spool",
        "camera-evidence",
    }


def test_influxdb_is_initialised_with_what_pantau_and_grafana_use(compose: dict[str, Any]) -> None:
    influx = compose["services"]["influxdb"]["environment"]
    ingest = compose["services"]["ingest"]["environment"]
    grafana = compose["services"]["grafana"]["environment"]
    assert influx["DOCKER_INFLUXDB_INIT_BUCKET"] == ingest["PANTAU_INFLUX__DATABASE"]
    assert influx["DOCKER_INFLUXDB_INIT_ORG"] == ingest["PANTAU_INFLUX__ORG"]
    assert influx["DOCKER_INFLUXDB_INIT_ADMIN_TOKEN"] == ingest["PANTAU_INFLUX__TOKEN"]
    assert grafana["INFLUX_BUCKET"] == influx["DOCKER_INFLUXDB_INIT_BUCKET"]
    init = {v["target"] for v in _volumes(compose["services"]["influxdb"])}
    assert "/docker-entrypoint-initdb.d/10-dbrp.sh" in init
    dbrp = (ROOT / "deploy/influxdb/10-dbrp.sh").read_text()
    assert "influx v1 dbrp create" in dbrp and "DOCKER_INFLUXDB_INIT_BUCKET" in dbrp


def test_grafana_is_provisioned_with_the_datasources_and_dashboards_pantau_builds(
    compose: dict[str, Any],
) -> None:
    grafana = compose["services"]["grafana"]
    mounts = {v["target"]: v["source"] for v in _volumes(grafana)}
    provisioning = Path(mounts["/etc/grafana/provisioning"])
    sources = yaml.safe_load((provisioning / "datasources/pantau.yaml").read_text())
    by_uid = {d["uid"]: d for d in sources["datasources"]}
    assert by_uid[INFLUX.uid]["type"] == INFLUX.type
    assert by_uid[INFLUX.uid]["jsonData"]["version"] == "InfluxQL"
    assert by_uid[POSTGRES.uid]["type"] == POSTGRES.type
    assert by_uid[POSTGRES.uid]["user"] == "grafana_reader"
    reader = (ROOT / "deploy/postgres/10-grafana-reader.sh").read_text()
    assert "CREATE ROLE grafana_reader" in reader
    # every ${VAR} the provisioning file uses is in Grafana's environment
    text = (provisioning / "datasources/pantau.yaml").read_text()
    assert set(re.findall(r"\$\{(\w+)\}", text)) <= set(grafana["environment"])

    providers = yaml.safe_load((provisioning / "dashboards/pantau.yaml").read_text())
    (provider,) = providers["providers"]
    assert provider["folderUid"] == FOLDER_UID
    assert Path(mounts[provider["options"]["path"]]) == ROOT / "dashboards" / "generated"
    geojson = "/usr/share/grafana/" + KELURAHAN_GEOJSON
    assert Path(mounts[geojson]) == ROOT / "config" / "zones" / "kelurahan.geojson"


def test_the_broker_uses_the_generated_accounts(compose: dict[str, Any]) -> None:
    mosquitto = compose["services"]["mosquitto"]
    conf = (ROOT / "deploy/mosquitto/mosquitto.conf").read_text()
    assert "allow_anonymous false" in conf
    auth = next(v for v in _volumes(mosquitto) if v["target"] == "/mosquitto/config/auth")
    assert auth["source"] == "broker-auth"
    for name in ("passwd", "acl"):
        assert f"/mosquitto/config/auth/{name}" in conf
    assert mosquitto["depends_on"]["broker-config"]["condition"] == (
        "service_completed_successfully"
    )


def test_the_image_is_slim_and_runs_unprivileged() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM (\S+)", dockerfile, re.MULTILINE)
    assert stages and all(s.endswith("-slim") or s.startswith("ghcr.io") for s in stages[:1])
    assert stages[-1].endswith("-slim")
    assert re.search(r"^USER pantau$", dockerfile, re.MULTILINE)


def _volumes(spec: dict[str, Any]) -> list[dict[str, str]]:
    """Compose's short volume syntax, as `config` prints it, to source/target dicts."""
    out = []
    for v in spec.get("volumes", []):
        if isinstance(v, dict):
            out.append({"source": str(v.get("source", "")), "target": str(v["target"])})
        else:
            source, target = str(v).split(":")[:2]
            out.append({"source": source, "target": target})
    return out


def test_the_image_copies_every_package_the_wheel_builds() -> None:
    """`uv sync` in the image builds the wheel: a package missing from the COPY lines
    (as `bridges` once was) fails the image build, not a test."""
    wheel = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["hatch"]["build"]
    copied = set(re.findall(r"^COPY (\w+) \./\1$", (ROOT / "Dockerfile").read_text(), re.M))
    assert set(wheel["targets"]["wheel"]["packages"]) <= copied


def test_influxdb_snapshots_cold_caches_as_pantaus_own_influxd_does(
    compose: dict[str, Any],
) -> None:
    influx = compose["services"]["influxdb"]["environment"]
    for key, value in DATA_TUNING.items():
        assert influx[f"INFLUXD_STORAGE_{key.upper().replace('-', '_')}"] == value
