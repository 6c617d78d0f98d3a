"""`pantau dashboards push` through grafana-client against real local HTTP servers: a
small stand-in for Grafana's dashboard and folder API (no Grafana binary here), one
that refuses the token, one that is not Grafana at all, and a port nobody listens on."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from dashboards.__main__ import main
from dashboards.build import GENERATED
from dashboards.push import PushError, load_generated, push
from pantau.local.ports import free_port

TOKEN = "glsa_pantau_test_token"  # for the stand-in only


class GrafanaState:
    def __init__(self) -> None:
        self.folders: dict[str, str] = {}
        self.dashboards: dict[str, dict[str, Any]] = {}
        self.saves: list[dict[str, Any]] = []


def grafana_handler(state: GrafanaState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def _reply(self, status: int, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _authorised(self) -> bool:
            if self.headers.get("Authorization") == f"Bearer {TOKEN}":
                return True
            self._reply(401, {"message": "invalid API key"})
            return False

        def do_GET(self) -> None:
            if not self._authorised():
                return
            if self.path == "/api/folders":
                self._reply(200, [{"uid": u, "title": t} for u, t in state.folders.items()])
            else:
                self._reply(404, {"message": "not found"})

        def do_POST(self) -> None:
            if not self._authorised():
                return
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if self.path == "/api/folders":
                state.folders[body["uid"]] = body["title"]
                self._reply(200, {"uid": body["uid"], "title": body["title"]})
            elif self.path == "/api/dashboards/db":
                state.saves.append(body)
                uid = body["dashboard"]["uid"]
                old = state.dashboards.get(uid)
                if old is not None and not body.get("overwrite"):
                    self._reply(412, {"message": "version-mismatch"})
                    return
                version = (old["version"] + 1) if old else 1
                state.dashboards[uid] = {"version": version, "folder": body["folderUid"]}
                self._reply(
                    200, {"uid": uid, "url": f"/d/{uid}/x", "version": version, "status": "success"}
                )
            else:
                self._reply(404, {"message": "not found"})

    return Handler


class NotGrafana(BaseHTTPRequestHandler):
    """A web server that answers everything with a page (e.g. a proxy's login page)."""

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self._page()

    def do_POST(self) -> None:
        self._page()

    def _page(self) -> None:
        page = b"<html><body>Welcome</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(page)))
        self.end_headers()
        self.wfile.write(page)


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_push_saves_every_dashboard_by_uid_and_a_second_push_replaces_them() -> None:
    state = GrafanaState()
    models = load_generated()
    with serving(grafana_handler(state)) as url:
        first = push(url, TOKEN, models)
        second = push(url, TOKEN, models)
    uids = {m["uid"] for m in models}
    assert len(uids) == len(list(GENERATED.glob("*.json"))) == 6
    assert {p.uid for p in first} == set(state.dashboards) == uids
    assert state.folders == {"pantau": "Pantau"}  # created once, found the second time
    assert all(p.version == 1 for p in first) and all(p.version == 2 for p in second)
    assert all(d["folder"] == "pantau" for d in state.dashboards.values())
    assert all(s["overwrite"] is True and "id" not in s["dashboard"] for s in state.saves)
    city = next(
        s["dashboard"] for s in state.saves if s["dashboard"]["uid"] == "pantau-city-overview"
    )
    # the panels travel whole: the wall's map among them
    assert "geomap" in {p["type"] for p in city["panels"]}


def test_a_wrong_token_is_named_and_nothing_is_sent() -> None:
    state = GrafanaState()
    with serving(grafana_handler(state)) as url, pytest.raises(PushError) as err:
        push(url, "wrong-token", load_generated())
    assert "refused the token (HTTP 401)" in str(err.value)
    assert not state.saves and not state.folders


def test_a_server_that_is_not_grafana_is_named() -> None:
    with serving(NotGrafana) as url, pytest.raises(PushError) as err:
        push(url, TOKEN, load_generated())
    assert "not as Grafana's HTTP API" in str(err.value)


def test_a_wrong_url_is_named() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(PushError) as err:
        push(url, TOKEN, load_generated())
    assert f"cannot reach Grafana at {url}" in str(err.value)


def test_the_command_exits_non_zero_with_the_reason(capsys: pytest.CaptureFixture[str]) -> None:
    with serving(grafana_handler(GrafanaState())) as url:
        code = main(["push", "--url", url, "--token", "wrong-token"])
        assert main(["push", "--url", url, "--token", TOKEN]) == 0
    assert code == 1
    captured = capsys.readouterr()
    assert "refused the token" in captured.err
    assert "pantau-drainage: version 1" in captured.out


def test_an_empty_directory_says_to_build(tmp_path: Path) -> None:
    with pytest.raises(PushError, match="pantau dashboards build"):
        load_generated(tmp_path)
