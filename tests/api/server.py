"""Run an app in a real uvicorn server on a free port, in a thread, for tests that need
real HTTP (event streams, the browser)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from fastapi import FastAPI

from api.__main__ import server_options
from pantau.local.ports import free_port


@contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    port = free_port()
    # As `pantau api serve` runs it (no proxy headers believed from loopback).
    config = uvicorn.Config(
        app,
        **server_options("127.0.0.1", port),
        log_level="warning",
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
