"""Passwords (Argon2id), access tokens (JWT, HS256 only) and API keys.

Tokens must carry `exp`, `iat` and `sub`, be signed with HS256 and the configured key,
and come from issuer "pantau"; anything else (expired, another key, `alg: none`, RS256
confusion) is refused. The signing key itself is checked before the API starts.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from datetime import datetime, timedelta
from typing import Any

import jwt
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

from .principal import Principal, Role

ALGORITHM = "HS256"
ISSUER = "pantau"
MIN_SECRET_CHARS = 32
# Placeholders seen in templates and tutorials; a key containing one is refused.
PLACEHOLDERS = ("changethis", "changeme", "secret", "your-secret", "password", "example")


class Passwords:
    """Argon2id hashing with the configured cost."""

    def __init__(self, memory_kib: int = 65536, time_cost: int = 3) -> None:
        self._hash = PasswordHash((Argon2Hasher(memory_cost=memory_kib, time_cost=time_cost),))
        # Verified against when the user does not exist, so timing does not tell
        # existing names from unknown ones.
        self._dummy = self._hash.hash("pantau-no-such-user")

    def hash(self, password: str) -> str:
        return self._hash.hash(password)

    def verify(self, password: str, password_hash: str | None) -> bool:
        if password_hash is None:
            self._hash.verify(password, self._dummy)
            return False
        return self._hash.verify(password, password_hash)


class InsecureSecret(ValueError):
    pass


class TokenError(Exception):
    pass


def check_signing_key(secret: str | None) -> str:
    """The key, or InsecureSecret saying why the API must not start with it."""
    if secret is None:
        raise InsecureSecret("no signing key: set PANTAU_API__JWT_SECRET (>= 32 characters)")
    if len(secret) < MIN_SECRET_CHARS:
        raise InsecureSecret(
            f"the signing key has {len(secret)} characters; at least {MIN_SECRET_CHARS} needed"
        )
    lowered = secret.lower()
    for word in PLACEHOLDERS:
        if word in lowered:
            raise InsecureSecret(f"the signing key contains the placeholder {word!r}")
    if len(set(secret)) < 10:
        raise InsecureSecret("the signing key repeats too few distinct characters")
    return secret


def issue_token(principal: Principal, key: str, now: datetime, lifetime: timedelta) -> str:
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "sub": principal.subject,
        "role": principal.role.value,
        "agency": principal.agency,
        "kecamatan": None if principal.kecamatan is None else sorted(principal.kecamatan),
        "crew": principal.crew_id,
        "iat": int(now.timestamp()),
        "exp": int((now + lifetime).timestamp()),
    }
    return jwt.encode(claims, key, algorithm=ALGORITHM)


def _verified(token: str, key: str) -> tuple[Principal, float]:
    """The principal and the expiry (unix seconds) of a token that passes every check."""
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],  # pinned: never the token's own choice
            issuer=ISSUER,
            options={"require": ["exp", "iat", "sub", "iss"]},
        )
        zones = claims.get("kecamatan")
        principal = Principal(
            subject=str(claims["sub"]),
            role=Role(claims["role"]),
            agency=claims.get("agency"),
            kecamatan=None if zones is None else frozenset(str(z) for z in zones),
            crew_id=claims.get("crew"),
        )
        return principal, float(claims["exp"])
    except (jwt.PyJWTError, KeyError, ValueError, TypeError) as err:
        raise TokenError(str(err)) from err


class TokenReader:
    """Reads access tokens, remembering those it has verified until they expire.

    A token is immutable and signed, so once its signature and claims pass, only the
    clock can change the answer: a remembered token is re-checked against its `exp`
    (the same `now < exp` PyJWT applies) and nothing else. Saves the HMAC and the JSON
    parse on every request of a logged-in page. Bounded: forgets everything when full.
    """

    MAX_TOKENS = 4096

    def __init__(self, key: str) -> None:
        self._key = key
        self._seen: dict[str, tuple[Principal, float]] = {}
        self._lock = threading.Lock()

    def read(self, token: str) -> Principal:
        hit = self._seen.get(token)
        if hit is not None and time.time() < hit[1]:
            return hit[0]
        principal, expires = _verified(token, self._key)  # raises TokenError if expired
        with self._lock:
            if len(self._seen) >= self.MAX_TOKENS:
                self._seen.clear()
            self._seen[token] = (principal, expires)
        return principal


def new_api_key() -> str:
    return "pk_" + secrets.token_urlsafe(32)


def api_key_digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()
