"""API fixtures: the real app on a real database (SQLite file or the run's private
PostgreSQL), seeded with users and incidents through Pantau's own incident store."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from api.app import create_app
from api.context import ApiContext, build_context
from api.principal import Role
from api.signing import write_new_key
from pantau.city import load_city
from pantau.incidents import (
    ConditionChange,
    ConditionState,
    DedupKey,
    Evidence,
    Hazard,
    Severity,
)
from pantau.settings import ApiSettings, Settings
from pantau.store import Incident
from pantau.zoneindex import ZoneIndex

PASSWORD = "correct-horse-battery"
BARAT = ["kec-periuk", "kec-jati-uwung", "kec-cibodas", "kec-karawaci"]
SELATAN = ["kec-cipondoh", "kec-pinang", "kec-karang-tengah", "kec-ciledug", "kec-larangan"]


CITY = load_city()
ZONES = ZoneIndex.for_city(CITY)


def api_settings(database_url: str, **api: Any) -> Settings:
    # Argon2id at its minimum cost: the same code path, a hundredth of the time.
    return Settings(
        database_url=database_url,
        api=ApiSettings(
            jwt_secret=SecretStr(secrets.token_urlsafe(32)),
            argon2_memory_kib=1024,
            argon2_time_cost=1,
            **api,
        ),
    )


def flood(
    zone_id: str,
    at: datetime,
    severity: Severity = Severity.SIAGA,
    rule: str = "flood-level",
    hazard: Hazard = Hazard.FLOOD,
    device: str = "wl-001",
) -> ConditionChange:
    return ConditionChange(
        key=DedupKey(rule, zone_id, hazard),
        state=ConditionState.ACTIVE,
        severity=severity,
        at=at,
        evidence=Evidence(
            device_ids=(device,),
            metric="water_level",
            peak_value=150.0,
            first_at=at - timedelta(minutes=5),
            last_at=at,
        ),
        reason="water_level 150 cm >= alert 120 cm for 5 min",
    )


@dataclass
class World:
    ctx: ApiContext
    client: TestClient
    karawaci: Incident  # bpbd flood in kec-karawaci (crew barat)
    ciledug: Incident  # bpbd flood in kec-ciledug (crew selatan)
    road: Incident  # pupr road damage in kec-karawaci

    def headers(self, username: str, password: str = PASSWORD) -> dict[str, str]:
        r = self.client.post("/auth/token", data={"username": username, "password": password})
        assert r.status_code == 200, r.text
        return {"Authorization": f"Bearer {r.json()['access_token']}"}


def seed(ctx: ApiContext) -> tuple[Incident, Incident, Incident]:
    a = ctx.accounts
    a.create_user("ops", PASSWORD, Role.OPERATOR)
    a.create_user("audit", PASSWORD, Role.AUDITOR)
    a.create_user("pupr-sup", PASSWORD, Role.SUPERVISOR, agency="pupr")
    a.create_user(
        "barat", PASSWORD, Role.CREW, agency="bpbd", kecamatan=BARAT, crew_id="bpbd-barat-pagi"
    )
    a.create_user(
        "selatan",
        PASSWORD,
        Role.CREW,
        agency="bpbd",
        kecamatan=SELATAN,
        crew_id="bpbd-selatan-pagi",
    )
    now = datetime.now(UTC).replace(microsecond=0)
    s = ctx.store
    k = s.apply(flood("kel-cimone", now - timedelta(minutes=30))).incident
    c = s.apply(flood("kel-paninggilan", now - timedelta(minutes=20), Severity.AWAS)).incident
    r = s.apply(
        flood(
            "kel-bugel",
            now - timedelta(minutes=10),
            Severity.WASPADA,
            rule="road-rough",
            hazard=Hazard.ROAD_DAMAGE,
            device="rs-001",
        )
    ).incident
    assert k is not None and c is not None and r is not None
    return k, c, r


def make_world(database_url: str, base: Settings | None = None, **api: Any) -> Iterator[World]:
    """With `base` (the run's services), InfluxDB is used too; `api`: ApiSettings."""
    settings = api_settings(database_url, **api)
    if base is not None:
        settings = settings.model_copy(update={"influx": base.influx, "mqtt": base.mqtt})
    ctx = build_context(settings, city=CITY, zones=ZONES, use_influx=base is not None)
    k, c, r = seed(ctx)
    with TestClient(create_app(ctx)) as client:
        yield World(ctx, client, k, c, r)
    ctx.close()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/pantau.db"


@pytest.fixture
def world(sqlite_url: str) -> Iterator[World]:
    yield from make_world(sqlite_url)


@pytest.fixture(params=["sqlite", "postgresql"])
def any_world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    """The same world on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/pantau.db"
    else:
        url = request.getfixturevalue("postgres_url")
    yield from make_world(url)


@pytest.fixture(params=["sqlite", "postgresql"])
def full_world(
    request: pytest.FixtureRequest, tmp_path: Path, settings: Settings
) -> Iterator[World]:
    """Like any_world, with the run's InfluxDB behind it."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/pantau.db"
    else:
        url = request.getfixturevalue("postgres_url")
    key = tmp_path / "report-key.pem"  # signed KPI reports (api.signing)
    write_new_key(key)
    yield from make_world(url, settings, report_signing_key_file=key)
