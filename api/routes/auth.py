"""/auth: OAuth2 password flow -> JWT; who am I; the audit log for those allowed."""

from __future__ import annotations

import asyncio
import math
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.security import OAuth2PasswordRequestForm

from api.audit import Outcome
from api.deps import UNAUTHORIZED, Ctx, CurrentPrincipal, OptionalId
from api.principal import AUDIT_READERS
from api.schemas import AuditList, AuditOut, Me, Message, Token
from api.security import HashBusy, issue_token

router = APIRouter(tags=["auth"])


@router.post(
    "/auth/token",
    response_model=Token,
    responses={
        401: {"model": Message, "description": "wrong username or password"},
        429: {
            "model": Message,
            "description": "too many failed logins from this address (for this username, "
            "or for any): wait `Retry-After` seconds; `X-Login-Delay` says which",
        },
        503: {"model": Message, "description": "too many logins waiting; retry shortly"},
    },
)
async def token(
    ctx: Ctx, request: Request, form: Annotated[OAuth2PasswordRequestForm, Depends()]
) -> Token:
    # Delayed before the password is even checked (a delayed guess learns nothing),
    # per (username, address) and per address: never the account as such (api.throttle).
    user, address = form.username[:64], request.client.host if request.client else "?"
    delay = await run_in_threadpool(ctx.login_delays.wait, user, address)
    if delay is not None:
        if delay.first:
            await run_in_threadpool(
                ctx.audit.record,
                None,
                "login",
                Outcome.DENIED,
                f"delayed {delay.seconds:.0f} s: failures from {delay.reason.value}",
                subject=user,
            )
        seconds = max(1, math.ceil(delay.seconds))
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            f"too many failed logins from this {delay.reason.value}; retry in {seconds} s",
            {"Retry-After": str(seconds), "X-Login-Delay": delay.reason.value},
        )
    try:
        # Argon2id in the bounded hash pool: waiting here holds no thread.
        future = ctx.hashing.submit(ctx.accounts.authenticate, form.username, form.password)
    except HashBusy:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, "too many logins at once", {"Retry-After": "2"}
        ) from None
    session = await asyncio.wrap_future(future)
    if session is None:
        await run_in_threadpool(ctx.login_delays.failed, user, address)
        await run_in_threadpool(
            ctx.audit.record, None, "login", Outcome.DENIED, "wrong credentials", subject=user
        )
        raise UNAUTHORIZED
    await run_in_threadpool(ctx.login_delays.succeeded, user, address)
    lifetime = ctx.token_lifetime
    return Token(
        access_token=issue_token(
            session.principal, ctx.signing_key, ctx.clock.now(), lifetime, session.version
        ),
        expires_in=int(lifetime.total_seconds()),
    )


@router.get("/auth/me", response_model=Me, responses={401: {"model": Message}})
async def me(who: CurrentPrincipal) -> Me:
    return Me(
        subject=who.subject,
        role=who.role.value,
        agency=who.agency,
        kecamatan=None if who.kecamatan is None else sorted(who.kecamatan),
        crew_id=who.crew_id,
    )


@router.get(
    "/audit",
    response_model=AuditList,
    responses={401: {"model": Message}, 403: {"model": Message}},
    summary="The audit log, newest first (operators, supervisors, auditors)",
)
def audit(
    ctx: Ctx,
    who: CurrentPrincipal,
    incident_id: OptionalId = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> AuditList:
    if who.role not in AUDIT_READERS or who.agency is not None:
        ctx.audit.record(who, "read:audit", Outcome.DENIED, "role may not read the audit log")
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, "the audit log is for operators and auditors"
        )
    entries, total = ctx.audit.entries(incident_id=incident_id, limit=limit, offset=offset)
    return AuditList(
        data=[
            AuditOut(
                id=e.id,
                at=e.at,
                actor=e.actor,
                role=e.role,
                action=e.action,
                incident_id=e.incident_id,
                outcome=e.outcome.value,
                detail=e.detail,
            )
            for e in entries
        ],
        count=total,
    )
