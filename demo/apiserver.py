"""The real API served on a free loopback port in a thread, and a small JSON client for it.

Simulated crews and the demo talk to Pantau's API over HTTP like a phone would; this
keeps the client to the standard library (no test-only HTTP package at run time).
"""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import uvicorn

from api.app import create_app
from api.context import ApiContext


class ApiCallError(RuntimeError):
    def __init__(self, method: str, path: str, status: int, body: str) -> None:
        super().__init__(f"{method} {path} answered {status}: {body[:300]}")
        self.status = status


@contextmanager
def serve(ctx: ApiContext, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve `create_app(ctx)` with uvicorn until the block ends; yields the base URL.
    The socket is bound here, so the port is known (and free) before the server starts."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound_port = sock.getsockname()[1]
    config = uvicorn.Config(create_app(ctx), log_config=None, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="pantau-api", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise RuntimeError("the API server did not start")
        time.sleep(0.01)
    try:
        yield f"http://{host}:{bound_port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


class HttpApi:
    """JSON over HTTP with a bearer token; any status but 200 raises `ApiCallError`."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")

    def post(self, path: str, token: str, body: Mapping[str, str] | None = None) -> Any:
        return self._call("POST", path, token, json.dumps(dict(body or {})).encode())

    def get(self, path: str, token: str, params: Mapping[str, str] | None = None) -> Any:
        query = f"?{urllib.parse.urlencode(dict(params))}" if params else ""
        return self._call("GET", path + query, token, None)

    def _call(self, method: str, path: str, token: str, data: bytes | None) -> Any:
        request = urllib.request.Request(  # noqa: S310 - our own http://127.0.0.1 URL
            self.base_url + path,
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
                return json.loads(response.read())
        except urllib.error.HTTPError as err:
            raise ApiCallError(method, path, err.code, err.read().decode(errors="replace")) from err
