"""The deployment's own files, run for real without Docker: the broker config and its
compose healthcheck against a real Mosquitto with the accounts `pantau broker config`
writes, and Grafana's read-only PostgreSQL role against a real PostgreSQL."""

from __future__ import annotations

import getpass
import os
import secrets
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from pantau.broker.__main__ import main as broker_main
from pantau.city import load_city
from pantau.local.ports import free_port
from pantau.local.postgres import Postgres
from pantau.settings import MqttSettings, Settings
from pantau.zoneindex import ZoneIndex
from rules.service import make_store
from simulators.__main__ import device_login

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
BROKER_SECRET = secrets.token_urlsafe(33)


@pytest.fixture(scope="module")
def broker_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("broker")
    with pytest.MonkeyPatch.context() as env:
        for key in [k for k in os.environ if k.startswith("PANTAU_")]:
            env.delenv(key)
        env.setenv("PANTAU_BROKER_SECRET", BROKER_SECRET)
        assert broker_main(["config", "--out", str(out)]) == 0
    return out


@pytest.fixture
def broker(broker_files: Path, tmp_path: Path) -> Iterator[int]:
    """deploy/mosquitto/mosquitto.conf as compose mounts it, moved to a free local port."""
    port = free_port()
    conf = (ROOT / "deploy/mosquitto/mosquitto.conf").read_text(encoding="utf-8")
    conf = conf.replace("listener 1883", f"listener {port} 127.0.0.1")
    conf = conf.replace("/mosquitto/config/auth/", f"{broker_files}/")
    conf = conf.replace("/mosquitto/data/", f"{tmp_path}/")
    # Started as root, mosquitto drops to user `mosquitto`, which cannot read the 0600
    # files (compose hands them to the container's mosquitto uid); stay this user here.
    conf += f"user {getpass.getuser()}\n"
    (tmp_path / "mosquitto.conf").write_text(conf, encoding="utf-8")
    process = subprocess.Popen(
        ["/usr/sbin/mosquitto", "-c", str(tmp_path / "mosquitto.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while healthcheck(port) != 0:
            assert process.poll() is None, "mosquitto refused the deploy config"
            assert time.monotonic() < deadline, "mosquitto never became healthy"
            time.sleep(0.1)
        yield port
    finally:
        process.terminate()
        process.wait(10)


def healthcheck(port: int) -> int:
    """The compose healthcheck's shell line, unescaped from Compose's `$$`."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    _, line = compose["services"]["mosquitto"]["healthcheck"]["test"]
    line = line.replace("$$", "$").replace("-h 127.0.0.1", f"-h 127.0.0.1 -p {port}")
    return subprocess.run(["sh", "-c", line], capture_output=True, check=False).returncode


def connect(port: int, username: str | None, password: str | None) -> ReasonCode:
    result: list[ReasonCode] = []
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=username or "anon")
    if username is not None:
        client.username_pw_set(username, password)
    client.on_connect = lambda c, u, f, rc, p: result.append(rc)
    client.connect("127.0.0.1", port)
    client.loop_start()
    deadline = time.monotonic() + 5
    while not result and time.monotonic() < deadline:
        time.sleep(0.05)
    client.loop_stop()
    client.disconnect()
    assert result, "no CONNACK"
    return result[0]


def test_the_deploy_broker_admits_service_accounts_only_and_its_healthcheck_tells(
    broker: int, broker_files: Path
) -> None:
    creds = dict(
        line.split("=", 1) for line in (broker_files / "env/pantau-ingest.env").read_text().split()
    )
    user, password = creds["PANTAU_MQTT__USERNAME"], creds["PANTAU_MQTT__PASSWORD"]
    assert not connect(broker, user, password).is_failure
    assert connect(broker, user, "wrong-password").is_failure
    assert connect(broker, None, None).is_failure
    assert healthcheck(broker) == 0


def test_the_simulator_logs_each_gateway_in_on_its_own_account(
    broker: int, broker_files: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`pantau simulate run` in compose's demo profile: gateway passwords derive from
    PANTAU_BROKER_SECRET, as `pantau broker config` derives them."""
    monkeypatch.setenv("PANTAU_BROKER_SECRET", BROKER_SECRET)
    login = device_login(MqttSettings(port=broker))
    assert login is not None
    gateway = login("gw-karawaci")
    assert gateway.username == "gw-karawaci" and gateway.password is not None
    assert not connect(broker, "gw-karawaci", gateway.password.get_secret_value()).is_failure
    monkeypatch.delenv("PANTAU_BROKER_SECRET")
    assert device_login(MqttSettings(port=broker)) is None


def test_the_healthcheck_fails_without_a_broker() -> None:
    assert healthcheck(free_port()) != 0


def test_grafana_reader_may_read_the_incident_tables_and_write_nothing(
    postgres: Postgres,
) -> None:
    name = f"test_{uuid.uuid4().hex[:12]}"
    admin = f"host={postgres.host} port={postgres.port} user=postgres dbname=postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
        conn.execute("DROP ROLE IF EXISTS grafana_reader")
    try:
        env = {
            **os.environ,
            "PGHOST": postgres.host,
            "PGPORT": str(postgres.port),
            "POSTGRES_USER": "postgres",
            "POSTGRES_DB": name,
            "GRAFANA_PG_PASSWORD": secrets.token_urlsafe(24),
        }
        script = ROOT / "deploy/postgres/10-grafana-reader.sh"
        subprocess.run(["sh", str(script)], env=env, check=True, capture_output=True)
        # the tables come later, from Pantau's migrations (as in compose: rules starts)
        settings = Settings(database_url=postgres.url_of(name))
        make_store(settings, ZoneIndex.for_city(load_city())).close()
        reader = f"host={postgres.host} port={postgres.port} user=grafana_reader dbname={name}"
        with psycopg.connect(reader, autocommit=True) as conn:
            assert conn.execute("SELECT count(*) FROM incidents").fetchone() == (0,)
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("DELETE FROM incidents")
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            conn.execute("DROP ROLE IF EXISTS grafana_reader")
