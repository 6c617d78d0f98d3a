"""Repeat incident lists served before routing.

An operations screen and every crew phone poll `GET /incidents` with the same few
queries; between two incident events the answer is the same bytes. The route caches
them (`api.listing_cache`); this ASGI layer answers a cache hit before FastAPI
resolves dependencies and validates the 17 query parameters, which cost more than the
answer itself. It serves only what the route already produced for the same scope,
query and version, so validation, auth and scope were applied when the entry was made;
the token is still checked on every request (signature once, expiry every time, the
user's session as `api.sessions` last saw it).
Anything else — another method or path, an API key, a bad token, a miss, a database
error — goes to the app unchanged and gets the app's own answer.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from .context import ApiContext
from .listing_cache import listing_key
from .security import TokenError

PATH = "/incidents"


class CachedListings:
    def __init__(self, app: ASGIApp, ctx: ApiContext) -> None:
        self.app = app
        self.ctx = ctx

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and scope["path"] == PATH:
            body = self._cached(scope)
            if body is not None:
                headers = [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ]
                await send({"type": "http.response.start", "status": 200, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)

    def _cached(self, scope: Scope) -> bytes | None:
        token = _bearer(scope["headers"])
        if token is None:
            return None
        try:
            bearer = self.ctx.tokens.read(token)
            # Only a session known to hold (api.sessions); else the app checks it.
            if not self.ctx.user_sessions.cached(bearer):
                return None
            version = self.ctx.version()
        except (TokenError, self.ctx.engine.dialect.loaded_dbapi.Error):
            return None  # the app answers (401, or its own error)
        key = listing_key(bearer.principal, scope["query_string"])
        return None if key is None else self.ctx.listing_cache.get(key, version)


def _bearer(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The token of `Authorization: Bearer <token>` (scheme case-insensitive, as
    FastAPI's OAuth2PasswordBearer reads it)."""
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token if scheme.lower() == "bearer" and token else None
    return None
