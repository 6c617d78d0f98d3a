"""Request bodies bounded while read (declared and actual size), the report limit counted
before the body, slow bodies timed out; and X-Forwarded-For believed from configured
proxies only. Over real HTTP (uvicorn as `pantau api serve` runs it) with raw sockets,
since the point is what the server does before a body has arrived."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from api.app import create_app
from api.guards import FORM_OVERHEAD
from tests.api.conftest import PASSWORD, World, make_world
from tests.api.server import serve

PHOTO_MAX = 256 * 1024
LIMIT = PHOTO_MAX + FORM_OVERHEAD
MIB = 1024 * 1024


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    yield from make_world(
        f"sqlite:///{tmp_path}/pantau.db",
        report_photo_max_bytes=PHOTO_MAX,
        body_timeout_s=1.0,
        body_min_rate=MIB,
    )


def _connect(base: str) -> socket.socket:
    url = urlsplit(base)
    return socket.create_connection((url.hostname or "127.0.0.1", url.port or 80), timeout=10)


def _status(sock: socket.socket) -> int:
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError(f"closed after {data!r}")
        data += chunk
    return int(data.split(b" ")[1])


def _head(path: str, headers: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: pantau", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


MULTIPART = "multipart/form-data; boundary=bound"
PART = (
    b'--bound\r\nContent-Disposition: form-data; name="photo"; filename="x.jpg"\r\n'
    b"Content-Type: image/jpeg\r\n\r\n"
)


def test_an_oversized_upload_is_refused_before_or_as_soon_as_it_passes_the_limit(
    world: World,
) -> None:
    with serve(create_app(world.ctx)) as base:
        # Declared: 50 MiB announced, not one body byte sent; the answer comes at once.
        sock = _connect(base)
        t0 = time.monotonic()
        sock.sendall(
            _head("/reports", {"Content-Type": MULTIPART, "Content-Length": str(50 * MIB)})
        )
        assert _status(sock) == 413
        assert time.monotonic() - t0 < 2
        sock.close()

        # Actual: chunked (no length), 50 MiB offered; the server answers 413 and closes
        # once the limit is passed. What it took is bounded by the limit plus the kernel's
        # socket buffers, far below what was offered.
        sock = _connect(base)
        sock.sendall(_head("/reports", {"Content-Type": MULTIPART, "Transfer-Encoding": "chunked"}))
        statuses: list[int] = []
        reader = threading.Thread(target=lambda: statuses.append(_status(sock)), daemon=True)
        reader.start()
        chunk = b"x" * 65536
        framed = f"{len(PART):x}\r\n".encode() + PART + b"\r\n"
        sent = 0
        try:
            sock.sendall(framed)
            while sent < 50 * MIB and reader.is_alive():
                sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                sent += len(chunk)
        except OSError:
            pass  # the server closed the connection: that is the point
        reader.join(10)
        sock.close()
        assert statuses == [413]
        assert sent < 16 * MIB, f"{sent} bytes went in before the refusal"


def test_the_report_limit_answers_before_the_body(world: World) -> None:
    cimone = world.ctx.geo.centre("kel-cimone")
    assert cimone is not None
    form = {"lon": str(cimone[0]), "lat": str(cimone[1]), "category": "macet"}
    with serve(create_app(world.ctx)) as base:
        codes = [httpx.post(f"{base}/reports", data=form).status_code for _ in range(11)]
        assert codes == [201] * 10 + [429]
        # Over the limit: a body of allowed size is announced and never sent; 429 at once.
        sock = _connect(base)
        t0 = time.monotonic()
        sock.sendall(_head("/reports", {"Content-Type": MULTIPART, "Content-Length": str(MIB)}))
        assert _status(sock) == 429
        assert time.monotonic() - t0 < 2
        sock.close()


def _trickle(base: str, out: list[tuple[int, float]]) -> None:
    sock = _connect(base)
    t0 = time.monotonic()
    body = b"username=barat&password=" + b"x" * 100
    sock.sendall(
        _head(
            "/auth/token",
            {
                "Content-Type": "application/x-www-form-urlencoded",
                "Content-Length": str(len(body)),
            },
        )
    )
    statuses: list[int] = []
    reader = threading.Thread(target=lambda: statuses.append(_status(sock)), daemon=True)
    reader.start()
    try:
        for byte in body:  # one byte every 0.2 s: 25 s for the whole body
            if not reader.is_alive():
                break
            sock.sendall(bytes([byte]))
            time.sleep(0.2)
    except OSError:
        pass
    reader.join(10)
    sock.close()
    out.append((statuses[0] if statuses else 0, time.monotonic() - t0))


def test_slow_bodies_time_out(world: World) -> None:
    """20 clients trickling a login at 5 bytes/s: each is answered 408 within the
    body's time budget (1 s + size / rate here), not when it finishes (25 s)."""
    results: list[tuple[int, float]] = []
    with serve(create_app(world.ctx)) as base:
        clients = [
            threading.Thread(target=_trickle, args=(base, results), daemon=True) for _ in range(20)
        ]
        for t in clients:
            t.start()
        for t in clients:
            t.join(30)
        # The API still answers others meanwhile and after.
        assert httpx.get(f"{base}/feeds/incidents.geojson").status_code == 200
    assert [code for code, _ in results] == [408] * 20
    assert max(took for _, took in results) < 5


def _spoofed_reports(base: str, forwarded_for: list[str]) -> list[int]:
    cimone = (106.6, -6.18)
    form = {"lon": str(cimone[0]), "lat": str(cimone[1]), "category": "macet"}
    return [
        httpx.post(f"{base}/reports", data=form, headers={"X-Forwarded-For": xff}).status_code
        for xff in forwarded_for
    ]


def test_a_spoofed_forwarded_for_from_an_untrusted_peer_changes_nothing(world: World) -> None:
    assert world.ctx.settings.api.trusted_proxies == []  # the default: no proxy
    with serve(create_app(world.ctx)) as base:
        # A new X-Forwarded-For per request does not reset the per-address limit...
        spoofed = [f"203.0.113.{i}" for i in range(11)]
        assert _spoofed_reports(base, spoofed) == [201] * 10 + [429]
        # ...nor the login delays.
        free = world.ctx.settings.api.login_failures_free
        codes = [
            httpx.post(
                f"{base}/auth/token",
                data={"username": "barat", "password": "guess"},
                headers={"X-Forwarded-For": f"198.51.100.{i}"},
            ).status_code
            for i in range(free + 1)
        ]
        assert codes == [401] * free + [429]


def test_forwarded_for_is_believed_from_a_configured_proxy_only(tmp_path: Path) -> None:
    for w in make_world(f"sqlite:///{tmp_path}/p.db", trusted_proxies=["127.0.0.1/32"]):
        with serve(create_app(w.ctx)) as base:
            # Each client behind the proxy has its own limit...
            many = [f"203.0.113.{i}" for i in range(12)]
            assert _spoofed_reports(base, many) == [201] * 12
            # ...and what a client writes left of the proxy's entry is not believed.
            forged = [f"6.6.6.{i}, 198.51.100.9" for i in range(11)]
            assert _spoofed_reports(base, forged) == [201] * 10 + [429]
            ok = httpx.post(
                f"{base}/auth/token",
                data={"username": "ops", "password": PASSWORD},
                headers={"X-Forwarded-For": "192.0.2.1"},
            )
            assert ok.status_code == 200
