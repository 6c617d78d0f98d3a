"""Camera frames as incident evidence, through the API against the run's real InfluxDB:
listed on the incident detail for staff who may see it, the JPEG served only through
the incident that links it, never in the public feeds."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from api.app import create_app
from api.context import ApiContext, build_context
from api.principal import Role
from ingest.cameras import analysis_lines, camera_tags
from pantau.cameras import load_cameras
from pantau.frame_analysis import FrameAnalysis, Measure
from pantau.incidents import ConditionChange, ConditionState, DedupKey, Evidence, Hazard, Severity
from pantau.influx.writers import make_writer
from pantau.settings import ApiSettings, Settings
from tests.api.conftest import BARAT, CITY, PASSWORD, ZONES

pytestmark = pytest.mark.integration

T0 = datetime(2026, 10, 5, 10, 0, tzinfo=UTC)
CAMERAS = load_cameras(CITY)
CAM = "cam-flood-babakan"  # kel-babakan, kec-tangerang


@pytest.fixture
def ctx(settings: Settings, tmp_path: Path) -> Iterator[ApiContext]:
    s = settings.model_copy(
        update={
            "database_url": f"sqlite:///{tmp_path}/pantau.db",
            "evidence_dir": tmp_path / "evidence",
            "api": ApiSettings(
                jwt_secret=SecretStr("frame-test-" + "0123456789abcdefghijklmnopqrstuv"),
                argon2_memory_kib=1024,
                argon2_time_cost=1,
            ),
        }
    )
    c = build_context(s, city=CITY, zones=ZONES)
    yield c
    c.close()


def saved_frame(settings: Settings, camera: str, at: datetime, reason: str) -> tuple[str, bytes]:
    """A JPEG where vision saves it (the name vision.analyzer gives it) and its point in
    InfluxDB as ingest writes it (the path as the vision worker's host saw it)."""
    evidence_dir = settings.evidence_dir
    name = f"{at:%Y%m%dT%H%M%S}.{at.microsecond // 1000:03d}Z-{reason}.jpg"
    image = np.full((36, 64, 3), 90, np.uint8)
    ok, jpeg = cv2.imencode(".jpg", image)
    assert ok
    folder = evidence_dir / camera
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(jpeg.tobytes())
    analysis = FrameAnalysis(
        camera_id=camera,
        time=at,
        seq=1,
        width=64,
        height=36,
        measures=(Measure("water_depth", 61.0, "cm", 0.9),),
        faults=("occluded",) if reason == "occluded" else (),
        evidence=f"/srv/vision/run/evidence/{camera}/{name}",  # another host's path
    )
    lines = analysis_lines(analysis, camera_tags(CAMERAS[camera]))
    writer = make_writer(settings.influx)
    writer.write(lines)
    writer.close()
    return name, jpeg.tobytes()


def test_frames_of_an_incident_are_listed_and_served_to_staff_only(ctx: ApiContext) -> None:
    evidence_dir = ctx.settings.evidence_dir
    flood_at = T0 + timedelta(minutes=2)
    name, jpeg = saved_frame(ctx.settings, CAM, flood_at, "flood")
    old, _ = saved_frame(ctx.settings, CAM, T0 - timedelta(hours=2), "occluded")
    other, _ = saved_frame(ctx.settings, "cam-flood-karawaci", flood_at, "flood")
    kel = CAMERAS[CAM].kelurahan_id
    change = ConditionChange(
        key=DedupKey("flood-camera-depth", kel, Hazard.FLOOD),
        state=ConditionState.ACTIVE,
        severity=Severity.WASPADA,
        at=flood_at + timedelta(minutes=1),
        evidence=Evidence(
            device_ids=(CAM,),
            metric="water_depth",
            peak_value=61.0,
            first_at=flood_at,
            last_at=flood_at + timedelta(minutes=1),
        ),
        reason="water_depth 61 cm >= waspada 60 cm (levels.flood_depth_cm) at cam-flood-babakan",
    )
    inc = ctx.store.apply(change).incident
    assert inc is not None
    ctx.accounts.create_user("ops", PASSWORD, Role.OPERATOR)
    ctx.accounts.create_user(
        "barat", PASSWORD, Role.CREW, agency="bpbd", kecamatan=BARAT, crew_id="bpbd-barat-pagi"
    )
    with TestClient(create_app(ctx)) as client:

        def login(user: str) -> dict[str, str]:
            r = client.post("/auth/token", data={"username": user, "password": PASSWORD})
            return {"Authorization": f"Bearer {r.json()['access_token']}"}

        ops = login("ops")
        detail = client.get(f"/incidents/{inc.id}", headers=ops).json()
        ev = detail["evidence"]
        assert [d["kind"] for d in ev["devices"]] == ["cctv_flood"]
        assert ev["devices"][0]["kelurahan_id"] == kel
        url = f"/incidents/{inc.id}/frames/{CAM}/{name}"
        assert ev["camera_frames"] == [
            {"camera_id": CAM, "at": "2026-10-05T10:02:00Z", "faults": [], "url": url}
        ]
        got = client.get(url, headers=ops)
        assert got.status_code == 200
        assert got.content == jpeg
        assert got.headers["content-type"] == "image/jpeg"
        assert "no-store" in got.headers["cache-control"]
        audit = client.get("/audit", headers=ops).json()["data"]
        assert any(e["action"] == "read:camera-frame" and e["outcome"] == "allowed" for e in audit)
        # Not logged in, outside the caller's scope (a crew of kecamatan barat), or a
        # frame this incident does not link (too old, another camera): no picture.
        assert client.get(url).status_code == 401
        assert client.get(url, headers=login("barat")).status_code == 404
        for path in (f"{CAM}/{old}", f"cam-flood-karawaci/{other}", f"{CAM}/x.jpg"):
            assert client.get(f"/incidents/{inc.id}/frames/{path}", headers=ops).status_code in (
                404,
                422,
            )
        traversal = f"/incidents/{inc.id}/frames/{CAM}/..%2F..%2Fpantau.db"
        assert client.get(traversal, headers=ops).status_code in (404, 422)
        # A frame that was linked but is gone from disk: 404, not a crash.
        (evidence_dir / CAM / name).unlink()
        assert client.get(url, headers=ops).status_code == 404
        # The public feeds carry no camera frame.
        for feed in ("/feeds/incidents.geojson", "/feeds/cap.xml", f"/feeds/cap/{inc.id}.xml"):
            body = client.get(feed).text
            assert "frames" not in body and ".jpg" not in body, feed
