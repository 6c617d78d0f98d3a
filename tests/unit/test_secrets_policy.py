"""Production settings refuse placeholder, short or missing secrets; development does not."""

from __future__ import annotations

import secrets

import pytest
from pydantic import ValidationError

from pantau.secrecy import weakness
from pantau.settings import Settings

STRONG = secrets.token_hex(32)


def good() -> dict[str, object]:
    return {
        "mqtt": {"username": "pantau-ingest", "password": secrets.token_urlsafe(24)},
        "influx": {"api": "v2", "token": secrets.token_urlsafe(32)},
        "database_url": f"postgresql+psycopg://pantau:{secrets.token_hex(16)}@db/pantau",
        "api": {"jwt_secret": STRONG},
    }


def test_strong_secrets_pass() -> None:
    s = Settings.model_validate({"environment": "production", **good()})
    assert s.environment == "production"


def test_a_random_token_that_happens_to_spell_a_placeholder_passes() -> None:
    # token_urlsafe(32) holds "xxx", "test" or "todo" about once in a few hundred draws
    for token in ("Kq7-test" + "aZ09" * 8, "xxx" + secrets.token_hex(16).upper() + "abc"):
        assert weakness(token) is None, token
    assert weakness("ChangeMe2024Please!") is not None  # typed, not generated


@pytest.mark.parametrize(
    ("path", "value", "why"),
    [
        (("influx", "token"), "change-me-to-a-long-random-token", "placeholder"),
        (("api", "jwt_secret"), "short", "shorter than"),
        (("mqtt", "password"), "aaaaaaaaaaaaaaaaaaaaaa", "distinct characters"),
        (("database_url",), "postgresql+psycopg://pantau:password@db/pantau", "database_url"),
    ],
)
def test_a_weak_secret_is_refused_in_production(
    path: tuple[str, ...], value: str, why: str
) -> None:
    doc = good()
    if len(path) == 1:
        doc[path[0]] = value
    else:
        section = dict(doc[path[0]])  # type: ignore[call-overload]
        section[path[1]] = value
        doc[path[0]] = section
    with pytest.raises(ValidationError) as err:
        Settings.model_validate({"environment": "production", **doc})
    assert why in str(err.value) and ".".join(path)[:8] in str(err.value)


def test_production_needs_broker_credentials() -> None:
    doc = good()
    doc["mqtt"] = {}
    with pytest.raises(ValidationError, match="anonymous"):
        Settings.model_validate({"environment": "production", **doc})


def test_development_takes_the_demo_defaults() -> None:
    s = Settings.model_validate({"influx": {"api": "v2", "token": "dev-token"}})
    assert s.environment == "development"
    assert weakness("dev-token") is not None  # weak, and allowed where nothing is at stake
