"""Account passwords: derived from one broker secret, stored as Mosquitto hashes.

Every account's password is HMAC-SHA256(secret, username), so the operator keeps one
secret (PANTAU_BROKER_SECRET) instead of 400 passwords, a device's password can be
printed again for provisioning, and rotating the secret rotates them all. The password
file holds only Mosquitto 2's PBKDF2-SHA512 hashes (`$7$`), never a password.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re

from pantau.secrecy import weakness

MIN_SECRET_CHARS = 32
ITERATIONS = 101  # what mosquitto_passwd 2.0 writes; the count is stored in the hash
HASH_PATTERN = re.compile(r"\$7\$(\d+)\$([A-Za-z0-9+/]+={0,2})\$([A-Za-z0-9+/]+={0,2})")


class WeakSecret(ValueError):
    pass


def check_secret(secret: str) -> str:
    """The secret, if it is long enough and not a documented placeholder."""
    if len(secret) < MIN_SECRET_CHARS:
        raise WeakSecret(f"the broker secret needs at least {MIN_SECRET_CHARS} characters")
    why = weakness(secret)
    if why is not None:
        raise WeakSecret(f"the broker secret {why}")
    return secret


def derive_password(secret: str, username: str) -> str:
    digest = hmac.new(secret.encode(), f"pantau-mqtt:{username}".encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(digest.digest()).decode().rstrip("=")


def hash_password(password: str, salt: bytes | None = None) -> str:
    """Mosquitto 2's `$7$` hash: PBKDF2-HMAC-SHA512, 12-byte salt, base64 fields."""
    salt = os.urandom(12) if salt is None else salt
    key = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, ITERATIONS)
    b64 = base64.b64encode
    return f"$7${ITERATIONS}${b64(salt).decode()}${b64(key).decode()}"


def verify_password(password: str, hashed: str) -> bool:
    m = HASH_PATTERN.fullmatch(hashed)
    if m is None:
        return False
    salt, want = base64.b64decode(m.group(2)), base64.b64decode(m.group(3))
    got = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, int(m.group(1)), len(want))
    return hmac.compare_digest(got, want)
