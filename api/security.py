"""Passwords (Argon2id), access tokens (JWT, HS256 only) and API keys.

Tokens must carry `exp`, `iat` and `sub`, be signed with HS256 and the configured key,
and come from issuer "pantau"; anything else (expired, another key, `alg: none`, RS256
confusion) is refused. The signing key itself is checked before the API starts.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

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


T = TypeVar("T")


class HashBusy(Exception):
    """More logins are waiting for a password hash than the queue holds."""


class HashPool:
    """Password hashes run here, `workers` at a time: each Argon2id hash takes
    `argon2_memory_kib`, so memory stays bounded however many logins arrive at once.
    A waiting login holds no thread (only its queue entry), so the API's thread pool
    stays free for everything else."""

    def __init__(self, workers: int, queue: int) -> None:
        self._executor = ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="hash", initializer=_background
        )
        self._queue = queue
        self._waiting = 0
        self._lock = threading.Lock()

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        with self._lock:
            if self._waiting >= self._queue:
                raise HashBusy
            self._waiting += 1
        future = self._executor.submit(fn, *args)
        future.add_done_callback(self._done)
        return future

    def _done(self, _: Future[Any]) -> None:
        with self._lock:
            self._waiting -= 1

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def _background() -> None:
    """A hash thread yields the CPU to request handling (Linux niceness is per thread):
    a login may wait a little longer, every other request does not."""
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)


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


@dataclass(frozen=True, slots=True)
class Bearer:
    """What a verified token says: who, at which session version, until when."""

    principal: Principal
    version: int
    expires: float  # unix seconds


def issue_token(
    principal: Principal, key: str, now: datetime, lifetime: timedelta, version: int = 0
) -> str:
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "sub": principal.subject,
        "role": principal.role.value,
        "agency": principal.agency,
        "kecamatan": None if principal.kecamatan is None else sorted(principal.kecamatan),
        "crew": principal.crew_id,
        "ver": version,
        "iat": int(now.timestamp()),
        "exp": int((now + lifetime).timestamp()),
    }
    return jwt.encode(claims, key, algorithm=ALGORITHM)


def _verified(token: str, key: str) -> Bearer:
    """What a token that passes every check says."""
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
        return Bearer(principal, int(claims.get("ver", 0)), float(claims["exp"]))
    except (jwt.PyJWTError, KeyError, ValueError, TypeError) as err:
        raise TokenError(str(err)) from err


class TokenReader:
    """Reads access tokens, remembering those it has verified until they expire.

    A token is immutable and signed, so once its signature and claims pass, only the
    clock can change the answer: a remembered token is re-checked against its `exp`
    (the same `now < exp` PyJWT applies) and nothing else. Saves the HMAC and the JSON
    parse on every request of a logged-in page. Bounded: forgets everything when full.
    Whether the user still holds that session is `api.sessions`' question.
    """

    MAX_TOKENS = 4096

    def __init__(self, key: str) -> None:
        self._key = key
        self._seen: dict[str, Bearer] = {}
        self._lock = threading.Lock()

    def read(self, token: str) -> Bearer:
        hit = self._seen.get(token)
        if hit is not None and time.time() < hit.expires:
            return hit
        bearer = _verified(token, self._key)  # raises TokenError if expired
        with self._lock:
            if len(self._seen) >= self.MAX_TOKENS:
                self._seen.clear()
            self._seen[token] = bearer
        return bearer


def new_api_key() -> str:
    return "pk_" + secrets.token_urlsafe(32)


def api_key_digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()
