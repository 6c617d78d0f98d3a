"""The live stream over real HTTP (only what the caller may see), and citizen reports."""

from __future__ import annotations

import json
import queue
import threading
from typing import Any

import cv2
import httpx
import numpy as np
from fastapi.testclient import TestClient

from api.app import create_app
from tests.api.conftest import World
from tests.api.server import serve


def _png() -> bytes:
    pixels = np.zeros((48, 64, 3), np.uint8)
    pixels[:, :32] = (200, 120, 40)
    ok, data = cv2.imencode(".png", pixels)
    assert ok
    return data.tobytes()


PNG = _png()


def _reader(url: str, headers: dict[str, str], out: queue.Queue[dict[str, Any]]) -> None:
    try:
        with httpx.stream("GET", url, headers=headers, timeout=30) as r:
            for line in r.iter_lines():
                if line.startswith("data: "):
                    out.put(json.loads(line[6:]))
    except httpx.RemoteProtocolError:
        pass  # the test's server stopped mid-stream: the stream ends there


def _next(q: queue.Queue[dict[str, Any]]) -> dict[str, Any]:
    return q.get(timeout=10)


def test_stream_shows_only_the_callers_incidents(world: World) -> None:
    barat, ops = world.headers("barat"), world.headers("ops")
    with serve(create_app(world.ctx)) as base:
        # A replay from the start: the crew sees its incident's events only.
        replay: queue.Queue[dict[str, Any]] = queue.Queue()
        reader = threading.Thread(
            target=_reader, args=(f"{base}/stream/incidents?since=0", barat, replay), daemon=True
        )
        reader.start()
        first = [_next(replay) for _ in range(4)]
        assert {e["incident_id"] for e in first} == {world.karawaci.id}
        assert [e["to_state"] for e in first] == ["active", "siaga", "open", "siaga"]
        # Live: a change elsewhere is not sent, a change in the crew's zone is.
        with httpx.Client(base_url=base, headers=ops) as c:
            assert c.post(f"/incidents/{world.ciledug.id}/acknowledge").status_code == 200
            assert c.post(f"/incidents/{world.road.id}/acknowledge").status_code == 200
            assert c.post(f"/incidents/{world.karawaci.id}/acknowledge").status_code == 200
        live = _next(replay)
        assert live["incident_id"] == world.karawaci.id and live["to_state"] == "acknowledged"
        assert live["actor"] == "operator:ops"
        assert live["incident"]["workflow_state"] == "acknowledged"
        assert replay.empty()
        # Following another zone's incident is a 404, as everywhere else.
        r = httpx.get(f"{base}/stream/incidents?incident_id={world.ciledug.id}", headers=barat)
        assert r.status_code == 404
        assert httpx.get(f"{base}/stream/incidents").status_code == 401
    reader.join(10)  # the server has stopped: the stream ended without an error
    assert not reader.is_alive()


def _report(client: TestClient, lonlat: tuple[float, float], category: str, **kw: Any) -> Any:
    data = {"lon": str(lonlat[0]), "lat": str(lonlat[1]), "category": category}
    return client.post("/reports", data={**data, **kw.pop("data", {})}, **kw)


def test_citizen_reports_corroborate_or_open(world: World) -> None:
    c = world.client
    cimone = world.ctx.geo.centre("kel-cimone")
    sukasari = world.ctx.geo.centre("kel-sukasari")
    assert cimone is not None and sukasari is not None
    # A flood report where a flood incident is active attaches to it.
    r = _report(c, cimone, "banjir", data={"description": "air setinggi lutut, Pak Budi 0812"})
    assert r.status_code == 201
    body = r.json()
    assert body["outcome"] == "corroborated" and body["incident_id"] == world.karawaci.id
    assert "Budi" not in r.text and "0812" not in r.text  # nothing personal echoed back
    # Elsewhere it opens a reported incident awaiting verification; a second report joins it.
    r = _report(c, sukasari, "genangan", files={"photo": ("x.png", PNG, "image/png")})
    opened = r.json()
    assert r.status_code == 201 and opened["outcome"] == "opened"
    r2 = _report(c, sukasari, "saluran_tersumbat")
    # Every report gets its own tracking token (tests/api/test_report_tracking.py).
    assert r2.json()["tracking_token"] != opened["tracking_token"]
    mine = ("tracking_token", "tracking_url")
    assert {k: v for k, v in r2.json().items() if k not in mine} == {
        **{k: v for k, v in opened.items() if k not in mine},
        "report_id": opened["report_id"] + 1,
        "outcome": "corroborated",
    }
    ops = world.headers("ops")
    detail = c.get(f"/incidents/{opened['incident_id']}", headers=ops).json()
    assert detail["incident"]["origin"] == "citizen_report"
    assert detail["incident"]["severity"] == "info" and detail["citizen_reports"] == 2
    staff = c.get(f"/incidents/{opened['incident_id']}/reports", headers=ops).json()
    assert [s["has_photo"] for s in staff] == [True, False]
    # Staff fetch the photo (audited); another zone's crew and the public cannot.
    photo_url = staff[0]["photo_url"]
    assert staff[1]["photo_url"] is None
    photo = c.get(photo_url, headers=ops)
    assert photo.status_code == 200 and photo.content.startswith(b"\xff\xd8")  # re-encoded
    assert photo.headers["content-type"] == "image/jpeg"
    shown = cv2.imdecode(np.frombuffer(photo.content, np.uint8), cv2.IMREAD_COLOR)
    assert shown is not None
    assert shown.shape == (48, 64, 3)
    assert photo.headers["cache-control"] == "private, no-store"
    assert c.get(photo_url).status_code == 401
    assert c.get(photo_url, headers=world.headers("selatan")).status_code == 404
    second = f"/incidents/{opened['incident_id']}/reports/{staff[1]['id']}/photo"
    assert c.get(second, headers=ops).status_code == 404  # that report has none
    audit = c.get("/audit", headers=ops).json()["data"]
    assert any(e["action"] == "read:report-photo" and e["outcome"] == "allowed" for e in audit)
    # Unverified: not on the public feed at all (tests/api/test_public_alerts.py).
    feed = c.get("/feeds/incidents.geojson").text
    assert "x.png" not in feed and "PNG" not in feed and "citizen_report" not in feed
    # Bad input.
    assert _report(c, (106.0, -6.0), "banjir").status_code == 422  # outside the city
    assert _report(c, cimone, "gempa").status_code == 422  # unknown category
    fake = _report(c, cimone, "banjir", files={"photo": ("x.png", b"<svg/>", "image/png")})
    assert fake.status_code == 415


def test_reports_are_rate_limited(world: World) -> None:
    cimone = world.ctx.geo.centre("kel-cimone")
    assert cimone is not None
    codes = [_report(world.client, cimone, "macet").status_code for _ in range(11)]
    assert codes == [201] * 10 + [429]
