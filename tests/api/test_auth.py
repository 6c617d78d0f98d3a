"""Tokens and keys: only HS256 tokens signed with the configured key, unexpired, with
the required claims get in; the API refuses to start with a weak signing key."""

from __future__ import annotations

import base64
import json
import secrets
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from pydantic import SecretStr

from api.__main__ import main
from api.context import build_context
from api.principal import Principal, Role
from api.security import InsecureSecret, check_signing_key, issue_token
from pantau.settings import ApiSettings, Settings
from tests.api.conftest import CITY, ZONES, World

OPS = Principal(subject="ops", role=Role.OPERATOR)


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _claims(now: datetime, **extra: object) -> dict[str, object]:
    return {
        "iss": "pantau",
        "sub": "ops",
        "role": "operator",
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(hours=1)).timestamp()),
        **extra,
    }


def _status(w: World, token: str) -> int:
    r = w.client.get("/incidents", headers={"Authorization": f"Bearer {token}"})
    code: int = r.status_code
    return code


def test_a_good_token_works_and_bad_ones_get_401(world: World) -> None:
    now = datetime.now(UTC)
    key = world.ctx.signing_key
    assert _status(world, issue_token(OPS, key, now, timedelta(minutes=5))) == 200
    expired = issue_token(OPS, key, now - timedelta(hours=2), timedelta(minutes=5))
    assert _status(world, expired) == 401
    other_key = issue_token(OPS, secrets.token_urlsafe(32), now, timedelta(minutes=5))
    assert _status(world, other_key) == 401
    alg_none = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(_claims(now))}."
    assert _status(world, alg_none) == 401
    hs512 = jwt.encode(_claims(now), key, algorithm="HS512")  # right key, wrong algorithm
    assert _status(world, hs512) == 401
    no_exp = jwt.encode({k: v for k, v in _claims(now).items() if k != "exp"}, key, "HS256")
    assert _status(world, no_exp) == 401
    wrong_issuer = jwt.encode(_claims(now, iss="elsewhere"), key, "HS256")
    assert _status(world, wrong_issuer) == 401
    bad_role = jwt.encode(_claims(now, role="root"), key, "HS256")
    assert _status(world, bad_role) == 401
    assert _status(world, "not-a-token") == 401
    assert world.client.get("/incidents").status_code == 401


def test_login_issues_a_token_and_failures_are_audited(world: World) -> None:
    r = world.client.post("/auth/token", data={"username": "barat", "password": "wrong-password"})
    assert r.status_code == 401
    r = world.client.post("/auth/token", data={"username": "nobody", "password": "whatever-123"})
    assert r.status_code == 401
    me = world.client.get("/auth/me", headers=world.headers("barat")).json()
    assert me == {
        "subject": "barat",
        "role": "crew",
        "agency": "bpbd",
        "kecamatan": sorted(["kec-periuk", "kec-jati-uwung", "kec-cibodas", "kec-karawaci"]),
        "crew_id": "bpbd-barat-pagi",
    }
    log = world.client.get("/audit", headers=world.headers("audit")).json()
    logins = [(e["actor"], e["outcome"]) for e in log["data"] if e["action"] == "login"]
    assert sorted(logins) == [("anonymous:barat", "denied"), ("anonymous:nobody", "denied")]


def test_api_key_reads_but_cannot_write(world: World) -> None:
    key = world.ctx.accounts.create_api_key("grafana", agency="bpbd", kecamatan=["kec-ciledug"])
    h = {"X-API-Key": key}
    listed = world.client.get("/incidents", headers=h).json()
    assert [i["id"] for i in listed["data"]] == [world.ciledug.id]
    assert (
        world.client.post(f"/incidents/{world.ciledug.id}/acknowledge", headers=h).status_code
        == 403
    )
    assert world.client.get("/incidents", headers={"X-API-Key": key + "x"}).status_code == 401


@pytest.mark.parametrize(
    ("secret", "why"),
    [
        (None, "no signing key"),
        ("short-key-123", "at least 32"),
        ("changethis-changethis-changethis-changethis", "placeholder"),
        ("ab" * 20, "distinct"),
    ],
)
def test_refuses_to_start_with_a_weak_key(secret: str | None, why: str, tmp_path: object) -> None:
    with pytest.raises(InsecureSecret, match=why):
        check_signing_key(secret)
    settings = Settings(
        database_url=f"sqlite:///{tmp_path}/x.db",
        api=ApiSettings(jwt_secret=None if secret is None else SecretStr(secret)),
    )
    with pytest.raises(InsecureSecret, match=why):
        build_context(settings, city=CITY, zones=ZONES, use_influx=False)


def test_cli_refuses_to_start_without_a_key(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    monkeypatch.delenv("PANTAU_API__JWT_SECRET", raising=False)
    monkeypatch.setenv("PANTAU_DATABASE_URL", f"sqlite:///{tmp_path}/x.db")
    assert main(["serve"]) == 2
