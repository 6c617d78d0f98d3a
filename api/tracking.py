"""Report tracking tokens: 192 random bits handed to the reporter once; the store keeps
only their SHA-256 (a fast hash is enough for a random key, as for API keys). The link
puts the token in the URL fragment, which browsers never send to a server, so it stays
out of access logs and Referer headers."""

from __future__ import annotations

import hashlib
import secrets

PAGE = "/app/public"
TOKEN_BYTES = 24


def new_token() -> str:
    return "rt_" + secrets.token_urlsafe(TOKEN_BYTES)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def page_url(token: str) -> str:
    return f"{PAGE}#lacak={token}"
