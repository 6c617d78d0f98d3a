"""ASGI layers in front of every route: who the client is (trusted proxies), request
bodies bounded while they are read, and the headers a browser needs.

Each runs before FastAPI reads a body, which is the point: a route's own checks come
only after the whole body has been parsed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
from collections.abc import Iterable

from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .context import ApiContext

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def networks(entries: Iterable[str]) -> tuple[IpNetwork, ...]:
    """`10.0.0.5`, `10.0.0.0/24` or `::1` -> networks; a bad entry raises ValueError."""
    return tuple(ipaddress.ip_network(e.strip(), strict=False) for e in entries)


def _ip(text: str) -> IpAddress | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def forwarded_client(peer: str, forwarded_for: list[str], trusted: tuple[IpNetwork, ...]) -> str:
    """The client's address: the peer itself unless the peer is a trusted proxy; then
    the rightmost `X-Forwarded-For` entry that is not a trusted proxy (entries further
    left were written by the client and may be anything)."""
    peer_ip = _ip(peer)
    if peer_ip is None or not any(peer_ip in n for n in trusted):
        return peer
    hops = [h for value in forwarded_for for h in value.split(",") if h.strip()]
    client = peer
    for hop in reversed(hops):
        ip = _ip(hop)
        if ip is None:
            break  # garbage from the client side: keep the last hop we could trust
        client = str(ip)
        if not any(ip in n for n in trusted):
            break
    return client


class ClientAddress:
    """Puts the real client address in `scope["client"]`, so every `request.client`
    (rate limits, login throttling) sees it. With no trusted proxies (the default)
    `X-Forwarded-For` is ignored; uvicorn's own proxy handling is off (`api.serve`)."""

    def __init__(self, app: ASGIApp, trusted: tuple[IpNetwork, ...]) -> None:
        self.app = app
        self.trusted = trusted

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = scope.get("client")
        if self.trusted and scope["type"] in ("http", "websocket") and client:
            xff = [v.decode("latin-1") for k, v in scope["headers"] if k == b"x-forwarded-for"]
            address = forwarded_client(client[0], xff, self.trusted)
            if address != client[0]:
                scope = {**scope, "client": (address, 0)}
        await self.app(scope, receive, send)


async def answer(
    send: Send, status: int, detail: str, headers: dict[str, str] | None = None
) -> None:
    body = json.dumps({"detail": detail}).encode()
    raw = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),  # the rest of the body is not read: no reuse
        *((k.lower().encode(), v.encode()) for k, v in (headers or {}).items()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class BodyRejected(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


REPORTS = "/reports"
FORM_OVERHEAD = 64 * 1024  # a report's fields and multipart framing around the photo


class BodyLimits:
    """Bounds every request body while it is read.

    - A declared `Content-Length` over the path's limit: 413 before a byte is read.
    - The bytes actually received over the limit (chunked, or a lying length): 413 as
      soon as they pass it; nothing past the limit is ever read, buffered or spooled.
    - A body slower than `api.body_timeout_s` plus its size at `api.body_min_rate` bytes/s:
      408 (a client trickling bytes holds a connection for seconds, not forever).
    - Citizen reports: the per-address limit is counted before the body is read, so an
      address over it costs one header parse (429), not a 50 MiB upload.
    """

    def __init__(self, app: ASGIApp, ctx: ApiContext) -> None:
        self.app = app
        self.ctx = ctx
        api = ctx.settings.api
        self.default_limit = api.max_body_bytes
        self.report_limit = api.report_photo_max_bytes + FORM_OVERHEAD

    def limit(self, path: str) -> int:
        return self.report_limit if path == REPORTS else self.default_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            # No route reads a body for these; uvicorn stops reading an unread body
            # at 64 KiB (flow control), so nothing accumulates.
            await self.app(scope, receive, send)
            return
        path, limit = scope["path"], self.limit(scope["path"])
        declared: int | None = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                declared = int(value) if value.isdigit() else -1
        if declared == -1:
            await answer(send, 400, "bad Content-Length")
            return
        if scope["method"] == "POST" and path == REPORTS:
            client = scope.get("client")
            address = client[0] if client else "unknown"
            wait = await run_in_threadpool(self.ctx.report_limiter.allow, address)
            if wait is not None:
                retry = {"Retry-After": f"{wait:.0f}"}
                await answer(send, 429, "too many reports; try later", retry)
                return
        if declared is not None and declared > limit:
            await answer(send, 413, f"request body over {limit} bytes")
            return
        api = self.ctx.settings.api
        expected = limit if declared is None else declared
        budget = api.body_timeout_s + expected / api.body_min_rate
        await _Bounded(limit, budget, receive, send).run(self.app, scope)


class _Bounded:
    """One request whose body is counted and timed as it is read."""

    def __init__(self, limit: int, budget_s: float, receive: Receive, send: Send) -> None:
        self.limit = limit
        self.loop = asyncio.get_running_loop()
        self.deadline = self.loop.time() + budget_s
        self._receive, self._send = receive, send
        self.read = 0
        self.error: BodyRejected | None = None
        self.started = self.replaced = False

    def fail(self, status: int, detail: str) -> BodyRejected:
        self.error = BodyRejected(status, detail)
        return self.error

    async def receive(self) -> Message:
        if self.error is not None:
            raise self.error
        remaining = self.deadline - self.loop.time()
        try:
            if remaining <= 0:
                raise TimeoutError
            message = await asyncio.wait_for(self._receive(), remaining)
        except TimeoutError:
            raise self.fail(408, "request body too slow") from None
        if message["type"] == "http.request":
            self.read += len(message.get("body", b""))
            if self.read > self.limit:
                raise self.fail(413, f"request body over {self.limit} bytes")
        return message

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start" and self.error is not None:
            # The app turned our exception into an answer of its own (FastAPI: 400
            # "error parsing the body"); the client gets the real reason instead.
            self.replaced = True
            await answer(self._send, self.error.status, self.error.detail)
            return
        if self.replaced:
            return
        if message["type"] == "http.response.start":
            self.started = True
        await self._send(message)

    async def run(self, app: ASGIApp, scope: Scope) -> None:
        try:
            await app(scope, self.receive, self.send)
        except Exception:
            if self.error is None or self.started:
                raise
            if not self.replaced:
                await answer(self._send, self.error.status, self.error.detail)


# Pages load scripts and styles from this origin only: no inline script, no framing.
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
PAGE_TYPES = (b"text/html", b"text/javascript", b"application/javascript")
# Everything else is data, never a document to render.
DATA_CSP = "default-src 'none'; frame-ancestors 'none'"
# Swagger UI and ReDoc (development only: off in production) need inline script.
DOC_PATHS = ("/docs", "/redoc")
# Public and not personal: caches may keep these.
CACHEABLE = ("/feeds/", "/app/static/")


class SecurityHeaders:
    """nosniff, no referrer and no framing on every answer; a CSP (strict on pages);
    `Cache-Control: no-store` unless the route chose otherwise or the answer is public
    (tokens, incidents, reports, the audit log: nothing a shared computer should keep)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                headers += [
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"x-frame-options", b"DENY"),
                ]
                if not path.startswith(DOC_PATHS):
                    # A page, or a script (a service worker runs under its own
                    # script's CSP, and must reach this origin).
                    page = any(
                        k.lower() == b"content-type" and v.startswith(PAGE_TYPES)
                        for k, v in headers
                    )
                    csp = PAGE_CSP if page else DATA_CSP
                    headers.append((b"content-security-policy", csp.encode()))
                if b"cache-control" not in names and not path.startswith(CACHEABLE):
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)
