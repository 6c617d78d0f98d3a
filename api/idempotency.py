"""Idempotency-Key on incident writes: the same action sent twice happens once.

A crew phone that acted without signal queues the action with a random key and sends
it when the signal returns; if an earlier try did reach the API and only the answer
was lost, the retry gets the first answer back (`Idempotent-Replayed: true`) instead of
acting again. Keys are kept in `api_request_keys` (durable, shared by every API
process) for `KEEP` and belong to the caller and the request they were first used
with: another caller's key or another request under the same key is refused (422).
Two tries racing with one key are both let through; the workflow refuses the second
move (409), so the incident still moves once.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta

from fastapi.concurrency import run_in_threadpool
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pantau.store.api_tables import RequestKeyRow

from .context import ApiContext
from .deps import authenticated

HEADER = b"idempotency-key"
KEY = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
KEEP = timedelta(days=2)
PREFIX = "/incidents/"


class IdempotentWrites:
    def __init__(self, app: ASGIApp, ctx: ApiContext) -> None:
        self.app = app
        self.ctx = ctx

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope.get("headers", [])) if scope["type"] == "http" else {}
        key = headers.get(HEADER)
        if key is None or scope["method"] != "POST" or not scope["path"].startswith(PREFIX):
            await self.app(scope, receive, send)
            return
        text = key.decode("latin-1")
        if not KEY.match(text):
            await _answer(send, 422, {"detail": "Idempotency-Key: 8-64 of A-Z a-z 0-9 _ -"})
            return
        auth = headers.get(b"authorization", b"").decode("latin-1")
        token = auth[7:] if auth.lower().startswith("bearer ") else None
        who = await authenticated(self.ctx, token, headers.get(b"x-api-key", b"").decode() or None)
        if who is None:  # the app answers 401
            await self.app(scope, receive, send)
            return
        request = f"POST {scope['path']}"
        row = await run_in_threadpool(self._find, text)
        if row is not None:
            if row.actor != who.actor or row.request != request:
                why = "this Idempotency-Key was used for another request"
                await _answer(send, 422, {"detail": why})
                return
            extra = [(b"idempotent-replayed", b"true")]
            await _raw(send, row.status, row.body, extra)
            return
        started: dict[str, int] = {}
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                started["status"] = message["status"]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
            await send(message)

        await self.app(scope, receive, capture)
        status = started.get("status", 500)
        if status < 500:
            await run_in_threadpool(self._keep, text, who.actor, request, status, b"".join(chunks))

    def _find(self, key: str) -> RequestKeyRow | None:
        with self.ctx.sessions() as session:
            row = session.get(RequestKeyRow, key)
            if row is not None:
                session.expunge(row)
            return row

    def _keep(self, key: str, actor: str, request: str, status: int, body: bytes) -> None:
        now = self.ctx.clock.now()
        try:
            with self.ctx.sessions() as session, session.begin():
                session.execute(delete(RequestKeyRow).where(RequestKeyRow.created_at < now - KEEP))
                session.add(
                    RequestKeyRow(
                        key=key,
                        actor=actor,
                        request=request,
                        status=status,
                        body=body,
                        created_at=now,
                    )
                )
        except IntegrityError:
            pass  # a racing try with the same key kept its answer first


async def _raw(send: Send, status: int, body: bytes, extra: list[tuple[bytes, bytes]]) -> None:
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *extra,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _answer(send: Send, status: int, payload: dict[str, str]) -> None:
    await _raw(send, status, json.dumps(payload).encode(), [])
