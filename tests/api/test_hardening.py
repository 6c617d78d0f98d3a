"""API hardening: login throttling, CORS closed unless configured, docs behind auth in
production."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from api.app import create_app
from api.context import build_context
from pantau.settings import ApiSettings, MqttSettings, Settings
from tests.api.conftest import CITY, PASSWORD, ZONES, World, seed


def test_failed_logins_are_delayed_per_username_and_address_and_audited(world: World) -> None:
    free = world.ctx.settings.api.login_failures_free
    for _ in range(free):
        r = world.client.post("/auth/token", data={"username": "barat", "password": "guess-1"})
        assert r.status_code == 401
    r = world.client.post("/auth/token", data={"username": "barat", "password": PASSWORD})
    assert r.status_code == 429  # even the right password waits: no oracle for the guesser
    assert int(r.headers["Retry-After"]) >= 1
    assert r.headers["X-Login-Delay"] == "account"
    # another account from the same address is not delayed (below the address allowance)
    assert (
        world.client.post(
            "/auth/token", data={"username": "selatan", "password": PASSWORD}
        ).status_code
        == 200
    )
    log = world.client.get("/audit", headers=world.headers("audit")).json()["data"]
    assert any(e["action"] == "login" and e["detail"].startswith("delayed") for e in log), log


def test_cors_is_closed_unless_origins_are_configured(world: World, tmp_path: Path) -> None:
    preflight = {
        "Origin": "https://evil.example",
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "Authorization",
    }
    r = world.client.options("/incidents", headers=preflight)
    assert "access-control-allow-origin" not in r.headers
    r = world.client.get("/feeds/incidents.geojson", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in r.headers

    settings = world.ctx.settings.model_copy(
        update={
            "api": world.ctx.settings.api.model_copy(
                update={"cors_origins": ["https://ops.tangerangkota.go.id"]}
            )
        }
    )
    app = create_app(build_context(settings, city=CITY, zones=ZONES, use_influx=False))
    with TestClient(app) as client:
        ok = client.options(
            "/incidents", headers={**preflight, "Origin": "https://ops.tangerangkota.go.id"}
        )
        assert ok.headers["access-control-allow-origin"] == "https://ops.tangerangkota.go.id"
        evil = client.options("/incidents", headers=preflight)
        assert "access-control-allow-origin" not in evil.headers


@pytest.fixture
def production(tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(
        environment="production",
        database_url=f"sqlite:///{tmp_path}/pantau.db",
        mqtt=MqttSettings(username="pantau-api", password=SecretStr(secrets.token_hex(16))),
        api=ApiSettings(
            jwt_secret=SecretStr(secrets.token_hex(32)), argon2_memory_kib=1024, argon2_time_cost=1
        ),
    )
    ctx = build_context(settings, city=CITY, zones=ZONES, use_influx=False)
    seed(ctx)
    with TestClient(create_app(ctx)) as client:
        yield client
    ctx.close()


def test_docs_are_for_logged_in_users_in_production(production: TestClient) -> None:
    assert production.get("/docs").status_code == 404
    assert production.get("/redoc").status_code == 404
    assert production.get("/openapi.json").status_code == 401
    token = production.post("/auth/token", data={"username": "ops", "password": PASSWORD})
    bearer = {"Authorization": f"Bearer {token.json()['access_token']}"}
    schema = production.get("/openapi.json", headers=bearer)
    assert schema.status_code == 200 and "/incidents" in schema.json()["paths"]


def test_docs_are_open_in_development(world: World) -> None:
    assert world.client.get("/openapi.json").status_code == 200
    assert world.client.get("/docs").status_code == 200


def test_a_crew_cannot_change_fields_it_does_not_own(world: World) -> None:
    crew = world.headers("barat")
    inc = world.karawaci
    before = world.client.get(f"/incidents/{inc.id}", headers=crew).json()
    sneaky = {"zone_id": "kel-paninggilan", "severity": "info", "assignee_crew_id": "me"}
    for action, body in (
        ("acknowledge", {"note": "ok", **sneaky}),
        ("on-site", sneaky),
        ("resolve", {"code": "fixed", "note": "done", **sneaky}),
    ):
        r = world.client.post(f"/incidents/{inc.id}/{action}", json=body, headers=crew)
        assert r.status_code == 422, (action, r.text)
    # dispatching to another crew than itself is refused as well
    r = world.client.post(
        f"/incidents/{inc.id}/dispatch", json={"crew_id": "bpbd-utara-pagi"}, headers=crew
    )
    assert r.status_code in (403, 409, 422), r.text
    after = world.client.get(f"/incidents/{inc.id}", headers=crew).json()
    assert after == before  # nothing applied
