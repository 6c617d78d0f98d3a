"""/auth: OAuth2 password flow -> JWT; who am I; the audit log for those allowed."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from fastapi.security import OAuth2PasswordRequestForm

from api.audit import Outcome
from api.deps import UNAUTHORIZED, Ctx, CurrentPrincipal, OptionalId
from api.principal import AUDIT_READERS
from api.schemas import AuditList, AuditOut, Me, Message, Token
from api.security import issue_token

router = APIRouter(tags=["auth"])


@router.post(
    "/auth/token",
    response_model=Token,
    responses={
        401: {"model": Message, "description": "wrong username or password"},
        429: {"model": Message, "description": "too many failed logins"},
    },
)
def token(
    ctx: Ctx, request: Request, form: Annotated[OAuth2PasswordRequestForm, Depends()]
) -> Token:
    # Throttled before the password is even checked: guessing costs the guesser time,
    # per username (one account attacked) and per address (many accounts tried).
    user, address = form.username[:64], request.client.host if request.client else "?"
    wait = ctx.login_failures.blocked(user) or ctx.login_failures_by_address.blocked(address)
    if wait is not None:
        ctx.audit.record(None, "login", Outcome.DENIED, "throttled", subject=user)
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            "too many failed logins; try later",
            {"Retry-After": str(int(wait))},
        )
    principal = ctx.accounts.authenticate(form.username, form.password)
    if principal is None:
        ctx.login_failures.record(user)
        ctx.login_failures_by_address.record(address)
        ctx.audit.record(None, "login", Outcome.DENIED, "wrong credentials", subject=user)
        raise UNAUTHORIZED
    lifetime = ctx.token_lifetime
    return Token(
        access_token=issue_token(principal, ctx.signing_key, ctx.clock.now(), lifetime),
        expires_in=int(lifetime.total_seconds()),
    )


@router.get("/auth/me", response_model=Me, responses={401: {"model": Message}})
def me(who: CurrentPrincipal) -> Me:
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
