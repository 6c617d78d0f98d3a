"""Issue 16's probes as tests: photo metadata stripped, browser headers, every denial
audited, the listing cache keyed on the normalized query, and out-of-scope ids that
cannot be told from missing ones."""

from __future__ import annotations

import re
import statistics
import struct
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import cv2
import numpy as np
from sqlalchemy import select

from api.guards import PAGE_CSP
from pantau.store.api_tables import AuditRow, CitizenReportRow
from tests.api.conftest import World, flood

MONTH = datetime.now(UTC).strftime("%Y-%m")

# --- photos ----------------------------------------------------------------------------


def _exif_with_gps() -> bytes:
    """An APP1 Exif segment: camera make and model, and a GPS IFD with a latitude."""
    make, model = b"SpyCam\x00", b"Model-X9\x00"
    ifd0 = struct.pack(
        "<H" + "HHII" * 3 + "I",
        3,
        0x010F, 2, len(make), 50,  # Make
        0x0110, 2, len(model), 57,  # Model
        0x8825, 4, 1, 66,  # GPS IFD pointer
        0,
    )  # fmt: skip
    gps = struct.pack(
        "<H" + "HHI4s" + "HHII" + "I",
        2,
        0x0001, 2, 2, b"S\x00\x00\x00",  # GPSLatitudeRef
        0x0002, 5, 3, 96,  # GPSLatitude
        0,
    )  # fmt: skip
    latitude = struct.pack("<6I", 6, 1, 10, 1, 3000, 100)
    tiff = b"II*\x00" + struct.pack("<I", 8) + ifd0 + make + model + gps + latitude
    assert len(tiff) == 120
    payload = b"Exif\x00\x00" + tiff
    return b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload


def _segments(jpeg: bytes) -> list[int]:
    """The JPEG's marker bytes up to the start of scan."""
    markers, i = [], 2
    while i + 4 <= len(jpeg) and jpeg[i] == 0xFF:
        marker = jpeg[i + 1]
        markers.append(marker)
        if marker == 0xDA:
            break
        i += 2 + struct.unpack(">H", jpeg[i + 2 : i + 4])[0]
    return markers


def test_a_gps_tagged_photo_goes_in_and_none_comes_out(world: World) -> None:
    pixels = np.full((120, 160, 3), (30, 90, 200), np.uint8)
    ok, plain = cv2.imencode(".jpg", pixels)
    assert ok
    tagged = plain.tobytes()[:2] + _exif_with_gps() + plain.tobytes()[2:]
    assert 0xE1 in _segments(tagged) and b"SpyCam" in tagged and b"Model-X9" in tagged
    centre = world.ctx.geo.centre("kel-sukasari")
    assert centre is not None
    r = world.client.post(
        "/reports",
        data={"lon": str(centre[0]), "lat": str(centre[1]), "category": "banjir"},
        files={"photo": ("IMG_0001.jpg", tagged, "image/jpeg")},
    )
    assert r.status_code == 201, r.text
    ops = world.headers("ops")
    staff = world.client.get(f"/incidents/{r.json()['incident_id']}/reports", headers=ops).json()
    served = world.client.get(staff[0]["photo_url"], headers=ops).content
    # No APPn segment but JFIF's APP0, no comment: no Exif, GPS, XMP or IPTC left.
    assert [m for m in _segments(served) if 0xE1 <= m <= 0xEF or m == 0xFE] == []
    for trace in (b"Exif", b"SpyCam", b"Model-X9", b"IMG_0001"):
        assert trace not in served
    shown = cv2.imdecode(np.frombuffer(served, np.uint8), cv2.IMREAD_COLOR)
    assert shown is not None
    assert shown.shape == pixels.shape
    assert abs(float(shown.mean()) - float(pixels.mean())) < 3  # the same picture
    # The original bytes are not kept anywhere: the stored photo is what staff get.
    with world.ctx.readers() as session:
        stored = session.scalars(select(CitizenReportRow.photo)).all()
    assert served in stored and not any(p and b"SpyCam" in p for p in stored)


def test_a_decompression_bomb_is_refused_before_decoding(world: World) -> None:
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    bomb = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + b"\x00" * 64
    centre = world.ctx.geo.centre("kel-sukasari")
    assert centre is not None
    r = world.client.post(
        "/reports",
        data={"lon": str(centre[0]), "lat": str(centre[1]), "category": "banjir"},
        files={"photo": ("x.png", bomb, "image/png")},
    )
    assert r.status_code == 415 and "too large" in r.text


# --- browser headers -----------------------------------------------------------------


def test_pages_send_a_strict_csp_and_personal_data_is_not_stored(world: World) -> None:
    c = world.client
    for page in ("/app/crew", "/app/ops"):
        r = c.get(page)
        assert r.status_code == 200
        csp = r.headers["content-security-policy"]
        assert csp == PAGE_CSP
        assert "script-src 'self';" in csp and "unsafe-inline" not in csp
        assert "frame-ancestors 'none'" in csp
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["referrer-policy"] == "no-referrer"
        # Nothing inline for the CSP to refuse: scripts and styles are files.
        assert re.findall(r"<script(?![^>]*\bsrc=)", r.text) == []
        assert "<style" not in r.text and " style=" not in r.text
        assert re.findall(r"\son[a-z]+=", r.text) == []
        for asset in re.findall(r'(?:src|href)="(/app/static/[^"]+)"', r.text):
            a = c.get(asset)
            assert a.status_code == 200 and a.headers["x-content-type-options"] == "nosniff"
    token = c.post("/auth/token", data={"username": "ops", "password": "correct-horse-battery"})
    assert token.headers["cache-control"] == "no-store"
    ops = {"Authorization": f"Bearer {token.json()['access_token']}"}
    centre = world.ctx.geo.centre("kel-cimone")
    assert centre is not None
    c.post("/reports", data={"lon": str(centre[0]), "lat": str(centre[1]), "category": "banjir"})
    for path in (
        "/auth/me",
        "/incidents?active=true",
        "/incidents?active=true",  # the cached answer too
        f"/incidents/{world.karawaci.id}",
        f"/incidents/{world.karawaci.id}/reports",  # citizens' coordinates
        "/audit",
        f"/kpi?month={MONTH}",
    ):
        r = c.get(path, headers=ops)
        assert r.status_code == 200, path
        assert "no-store" in r.headers["cache-control"], path
        assert r.headers["x-content-type-options"] == "nosniff", path
    # Public feeds carry nothing personal and may be cached.
    assert "no-store" not in c.get("/feeds/incidents.geojson").headers.get("cache-control", "")


# --- every denial audited ------------------------------------------------------------

# Routes that only ever filter what the caller may see (nothing to deny), and public ones.
FILTERING = {
    ("GET", "/incidents"),
    ("GET", "/zones"),
    ("GET", "/agencies"),
    ("GET", "/crews"),
    ("GET", "/devices"),
    ("GET", "/auth/me"),
    ("GET", "/kpi/report"),
    ("GET", "/reports/ratings"),
}
PUBLIC = {
    ("POST", "/auth/token"),
    ("POST", "/reports"),
    ("GET", "/feeds/incidents.geojson"),
    ("GET", "/feeds/cap.xml"),
    ("GET", "/feeds/cap/{incident_id}.xml"),
    ("POST", "/reports/track"),
    ("POST", "/reports/track/rating"),
    ("GET", "/public/overview"),
    ("GET", "/public/kelurahan.geojson"),
    ("GET", "/audit/signing-key"),
}


def test_each_protected_route_audits_an_out_of_scope_caller(world: World) -> None:
    c = world.client
    centre = world.ctx.geo.centre("kel-cimone")
    assert centre is not None
    report = c.post(
        "/reports", data={"lon": str(centre[0]), "lat": str(centre[1]), "category": "banjir"}
    ).json()
    k = world.karawaci.id
    # What a Selatan crew may not do or see, per route (Karawaci is Barat's).
    denials: dict[tuple[str, str], tuple[str, dict[str, Any] | None]] = {
        ("GET", "/incidents/{incident_id}"): (f"/incidents/{k}", None),
        ("GET", "/incidents/{incident_id}/frames/{camera_id}/{name}"): (
            f"/incidents/{k}/frames/cam-001/20260101T000000.000Z-flood.jpg",
            None,
        ),
        ("GET", "/incidents/{incident_id}/reports"): (f"/incidents/{k}/reports", None),
        ("GET", "/incidents/{incident_id}/reports/{report_id}/photo"): (
            f"/incidents/{k}/reports/{report['report_id']}/photo",
            None,
        ),
        ("POST", "/incidents/{incident_id}/acknowledge"): (f"/incidents/{k}/acknowledge", {}),
        ("POST", "/incidents/{incident_id}/dispatch"): (
            f"/incidents/{k}/dispatch",
            {"crew_id": "bpbd-selatan-pagi"},
        ),
        ("POST", "/incidents/{incident_id}/on-site"): (f"/incidents/{k}/on-site", {}),
        ("POST", "/incidents/{incident_id}/resolve"): (
            f"/incidents/{k}/resolve",
            {"code": "fixed", "note": "x"},
        ),
        ("POST", "/incidents/{incident_id}/close"): (f"/incidents/{k}/close", {}),
        ("POST", "/incidents/{incident_id}/reopen"): (f"/incidents/{k}/reopen", {"reason": "x"}),
        ("POST", "/incidents/{incident_id}/suppress"): (f"/incidents/{k}/suppress", {}),
        ("POST", "/incidents/{incident_id}/notes"): (f"/incidents/{k}/notes", {"note": "x"}),
        ("POST", "/incidents/{incident_id}/assign"): (
            f"/incidents/{k}/assign",
            {"crew_id": "bpbd-barat-siang"},
        ),
        ("POST", "/incidents/{incident_id}/escalate"): (f"/incidents/{k}/escalate", {}),
        ("GET", "/stream/incidents"): (f"/stream/incidents?incident_id={k}", None),
        ("GET", "/kpi"): (f"/kpi?scope=crew&id=bpbd-barat-pagi&month={MONTH}", None),
        ("POST", "/kpi/publish"): (f"/kpi/publish?month={MONTH}", None),
        ("GET", "/audit"): ("/audit", None),
        ("GET", "/audit/verify"): ("/audit/verify", None),
        ("GET", "/audit/kpi-report"): (f"/audit/kpi-report?month={MONTH}", None),
        ("GET", "/planning/flood-hotspots"): (
            "/planning/flood-hotspots?from=2026-01-01&to=2026-02-01",
            None,
        ),
        ("GET", "/planning/season-report"): (
            "/planning/season-report?from=2026-01-01&to=2026-02-01",
            None,
        ),
    }
    # Every API route (the schema lists them all; the pages are static and public).
    schema = c.get("/openapi.json").json()["paths"]
    routes = {(m.upper(), path) for path, ops in schema.items() for m in ops}
    # Every route is classified: a new one must say how it denies.
    assert routes == set(denials) | FILTERING | PUBLIC
    selatan = world.headers("selatan")
    for route, (path, body) in denials.items():
        before = len(_denials(world))
        method = route[0]
        r = (
            c.post(path, json=body, headers=selatan)
            if method == "POST"
            else c.get(path, headers=selatan)
        )
        assert r.status_code in (403, 404), (route, r.status_code, r.text)
        after = _denials(world)
        assert len(after) == before + 1, (route, after[:1])
        assert after[0]["actor"] == "crew:selatan", route


def _denials(world: World) -> list[dict[str, Any]]:
    with world.ctx.readers() as session:
        rows = session.scalars(
            select(AuditRow).where(AuditRow.outcome == "denied").order_by(AuditRow.id.desc())
        ).all()
        return [{"actor": r.actor, "action": r.action, "detail": r.detail} for r in rows]


# --- the listing cache key -----------------------------------------------------------


def test_repeated_filters_in_either_order_give_the_same_incidents(world: World) -> None:
    periuk = world.ctx.geo.zone_ids_in(["kec-periuk"])
    opened = world.ctx.store.apply(flood(periuk[-1], datetime.now(UTC) - timedelta(minutes=5)))
    assert opened.incident is not None
    ops = world.headers("ops")
    one = "/incidents?kecamatan=kec-periuk&kecamatan=kec-karawaci"
    other = "/incidents?kecamatan=kec-karawaci&kecamatan=kec-periuk"
    first = world.client.get(one, headers=ops).json()  # made and cached
    second = world.client.get(other, headers=ops).json()  # the same entry
    ids = {i["id"] for i in first["data"]}
    assert ids == {world.karawaci.id, world.road.id, opened.incident.id}
    assert {i["id"] for i in second["data"]} == ids
    assert world.client.get(other + "&kecamatan=kec-periuk", headers=ops).json() == first
    # A single-valued parameter given twice is ambiguous: refused, never cached.
    r = world.client.get("/incidents?limit=5&limit=50", headers=ops)
    assert r.status_code == 422 and "limit" in r.text


# --- out of scope or missing: the same answer, the same work ----------------------------


def test_out_of_scope_and_missing_ids_take_the_same_time(world: World) -> None:
    c = world.client
    selatan = world.headers("selatan")
    # A missing id of as many digits, so the 404 texts are as long.
    k = world.karawaci.id
    outside, missing = f"/incidents/{k}", f"/incidents/{'9' * len(str(k))}"
    assert world.ctx.store.get(int("9" * len(str(k)))) is None
    for _ in range(10):  # warm up both paths
        c.get(outside, headers=selatan)
        c.get(missing, headers=selatan)
    times: dict[str, list[float]] = {outside: [], missing: []}
    bodies = set()
    for i in range(400):  # 200 each, interleaved so drift hits both alike
        path = (outside, missing)[i % 2]
        t0 = time.perf_counter()
        r = c.get(path, headers=selatan)
        times[path].append(time.perf_counter() - t0)
        assert r.status_code == 404
        bodies.add(len(r.content))
    a, b = statistics.median(times[outside]), statistics.median(times[missing])
    # Generous: the medians within 15 % (the leak was a whole audit write, ~1 ms more).
    assert abs(a - b) < 0.15 * min(a, b), (a, b)
    assert len(bodies) == 1  # the same size too


def test_a_crew_asking_another_crews_kpis_gets_404(world: World) -> None:
    c = world.client
    selatan = world.headers("selatan")
    assert (
        c.get(f"/kpi?scope=crew&id=bpbd-selatan-pagi&month={MONTH}", headers=selatan).status_code
        == 200
    )
    r = c.get(f"/kpi?scope=crew&id=bpbd-barat-pagi&month={MONTH}", headers=selatan)
    assert r.status_code == 404
    # An unknown crew answers the same way (no existence oracle).
    unknown = c.get(f"/kpi?scope=crew&id=bpbd-nobody-pagi&month={MONTH}", headers=selatan)
    assert unknown.status_code == 404
    assert unknown.json()["detail"].replace("nobody", "barat") == r.json()["detail"]
    # A supervisor sees its agency's crews only.
    pupr = world.headers("pupr-sup")
    assert (
        c.get(f"/kpi?scope=crew&id=bpbd-barat-pagi&month={MONTH}", headers=pupr).status_code == 404
    )
