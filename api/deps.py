"""FastAPI dependencies, declared once as typed aliases.

They are `async`: a token check is pure CPU, and a sync dependency would cost every
request a thread-pool hop; only the API-key lookup (SQL) goes to the pool."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Path, Query, Request, Security, status
from fastapi.concurrency import run_in_threadpool
from fastapi.security import APIKeyHeader, OAuth2PasswordBearer

from .context import ApiContext
from .principal import Principal
from .security import TokenError

oauth2 = OAuth2PasswordBearer(tokenUrl="/auth/token", auto_error=False)
api_key = APIKeyHeader(name="X-API-Key", auto_error=False)


async def get_ctx(request: Request) -> ApiContext:
    ctx: ApiContext = request.app.state.ctx
    return ctx


Ctx = Annotated[ApiContext, Depends(get_ctx)]

UNAUTHORIZED = HTTPException(
    status_code=status.HTTP_401_UNAUTHORIZED,
    detail="not authenticated",
    headers={"WWW-Authenticate": "Bearer"},
)


async def authenticated(ctx: ApiContext, token: str | None, key: str | None) -> Principal | None:
    """The caller, or None: a bad or expired token, a session no longer the user's
    (deactivated, role or scope changed, logged out everywhere), a revoked key."""
    if token:
        try:
            bearer = ctx.tokens.read(token)
        except TokenError:
            return None
        holds = ctx.user_sessions.cached(bearer)
        if holds is None:
            holds = await run_in_threadpool(ctx.user_sessions.check, bearer)
        return bearer.principal if holds else None
    if key:
        return await run_in_threadpool(ctx.accounts.principal_for_key, key)
    return None


async def current_principal(
    ctx: Ctx,
    token: Annotated[str | None, Security(oauth2)],
    key: Annotated[str | None, Security(api_key)],
) -> Principal:
    principal = await authenticated(ctx, token, key)
    if principal is None:
        raise UNAUTHORIZED
    return principal


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


def unprocessable(where: tuple[str, ...], message: str) -> HTTPException:
    """A 422 shaped like FastAPI's own validation errors, so one schema describes both."""
    return HTTPException(
        status.HTTP_422_UNPROCESSABLE_CONTENT,
        [{"loc": list(where), "msg": message, "type": "value_error"}],
    )


# Database ids are 32-bit on both engines; larger numbers cannot name anything.
MAX_ID = 2**31 - 1
IncidentId = Annotated[int, Path(ge=1, le=MAX_ID, description="incident id")]
OptionalId = Annotated[int | None, Query(ge=1, le=MAX_ID)]
