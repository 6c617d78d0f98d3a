"""Issue 24, item 2: a reporter follows the report with a token (only its hash is
stored), rates the resolved response once, and the ratings become the satisfaction KPI
(JSON, CSV, the e-Kinerja score); comments reach staff only."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from api.kpi_queries import month_bounds
from pantau.incidents import WorkflowState

from .conftest import World, make_world


def _report(client: TestClient, zone: str, world: World, category: str = "banjir") -> Any:
    lon, lat = world.ctx.geo.centre(zone) or (0.0, 0.0)
    r = client.post("/reports", data={"lon": str(lon), "lat": str(lat), "category": category})
    assert r.status_code == 201, r.text
    return r.json()


def _resolve(w: World, incident_id: int) -> None:
    w.ctx.store.transition(incident_id, WorkflowState.ACKNOWLEDGED, "operator:ops", "seen")
    w.ctx.store.transition(incident_id, WorkflowState.RESOLVED, "operator:ops", "fixed: ok")


def test_track_then_rate_once(any_world: World) -> None:
    w, c = any_world, any_world.client
    filed = _report(c, "kel-cimone", w)  # corroborates the karawaci flood
    token = filed["tracking_token"]
    assert filed["tracking_url"].endswith("#lacak=" + token)  # fragment: never sent
    assert len(token) >= 32
    # Only the hash is stored; the token itself is nowhere in the database.
    with w.ctx.engine.connect() as conn:
        stored = conn.execute(text("SELECT track_sha256 FROM citizen_reports")).scalars().all()
    assert stored == [hashlib.sha256(token.encode()).hexdigest()]

    status = c.post("/reports/track", json={"token": token}).json()
    assert status["report_id"] == filed["report_id"]
    assert status["workflow_state"] == "open" and status["can_rate"] is False
    assert status["zone_name"] and "crew" not in str(status).lower()
    early = c.post("/reports/track/rating", json={"token": token, "rating": 5})
    assert early.status_code == 409 and "not resolved" in early.json()["detail"]
    assert c.post("/reports/track", json={"token": token[:-2] + "xx"}).status_code == 404

    _resolve(w, filed["incident_id"])
    status = c.post("/reports/track", json={"token": token}).json()
    assert status["workflow_state"] == "resolved" and status["can_rate"] is True
    body = {"token": token, "rating": 2, "comment": "lambat, air sudah surut sendiri"}
    r = c.post("/reports/track/rating", json=body)
    assert r.status_code == 201, r.text
    assert r.json()["rating"] == 2 and r.json()["can_rate"] is False
    again = c.post("/reports/track/rating", json={**body, "rating": 5})
    assert again.status_code == 409 and "already" in again.json()["detail"]
    assert c.post("/reports/track/rating", json={**body, "rating": 6}).status_code == 422
    # The rating is on the incident's timeline (hash-chained), the comment is not.
    detail = w.ctx.store.get(filed["incident_id"])
    assert detail is not None
    reasons = [e.reason for e in detail.timeline]
    assert f"citizen rating of report #{filed['report_id']}: 2/5" in reasons
    assert not any("lambat" in r for r in reasons)
    # The public status never shows the comment; staff see it.
    assert "lambat" not in c.post("/reports/track", json={"token": token}).text
    assert c.get("/reports/ratings").status_code == 401
    staff = c.get("/reports/ratings", headers=w.headers("audit")).json()
    assert [(x["rating"], x["comment"], x["agency"]) for x in staff] == [
        (2, "lambat, air sudah surut sendiri", "bpbd")
    ]
    # A crew of another kecamatan does not see it.
    assert c.get("/reports/ratings", headers=w.headers("selatan")).json() == []


@pytest.mark.integration
def test_ratings_become_the_satisfaction_kpi(full_world: World) -> None:
    w, c = full_world, full_world.client
    tokens = [_report(c, "kel-cimone", w)["tracking_token"] for _ in range(3)]
    _resolve(w, w.karawaci.id)
    for token, stars in zip(tokens, (5, 4, 2), strict=True):
        assert (
            c.post("/reports/track/rating", json={"token": token, "rating": stars}).status_code
            == 201
        )
    month = w.karawaci.opened_at.astimezone(w.ctx.city.facts.time_zone).strftime("%Y-%m")
    ops = w.headers("ops")
    bpbd = c.get("/kpi", params={"scope": "agency", "id": "bpbd", "month": month}, headers=ops)
    k = bpbd.json()
    assert k["satisfaction_ratings"] == 3
    assert abs(k["satisfaction_mean"] - 11 / 3) < 1e-9
    # Scored against config/kpi.yaml's target 4.0 (higher is better).
    assert abs(k["subscores"]["satisfaction_mean"] - round(100 * (11 / 3) / 4.0, 2)) < 1e-9
    kec = c.get(
        "/kpi", params={"scope": "kecamatan", "id": "kec-karawaci", "month": month}, headers=ops
    ).json()
    assert kec["satisfaction_ratings"] == 3
    pupr = c.get("/kpi", params={"scope": "agency", "id": "pupr", "month": month}, headers=ops)
    assert pupr.json()["satisfaction_ratings"] == 0 and pupr.json()["satisfaction_mean"] is None
    assert "satisfaction_mean" not in pupr.json()["subscores"]
    csv_text = c.get(
        "/kpi/report", params={"month": month, "format": "csv"}, headers=ops
    ).text.splitlines()
    header = csv_text[0].split(",")
    bpbd_row = next(line.split(",") for line in csv_text if line.startswith("agency,bpbd,"))
    assert bpbd_row[header.index("satisfaction_mean")] == "3.67"
    assert bpbd_row[header.index("satisfaction_ratings")] == "3"
    # The InfluxDB KPI series (measurement `kpi`) carries it for Grafana.
    assert c.post("/kpi/publish", params={"month": month}, headers=ops).status_code == 200
    assert w.ctx.influx is not None
    rows = w.ctx.influx.rows(
        "SELECT satisfaction_mean, satisfaction_ratings FROM kpi "
        "WHERE \"scope\" = 'agency' AND \"id\" = 'bpbd' AND \"period\" = 'month' "
        "AND time = $t",
        params={"t": month_start(month, w)},
    )
    assert [
        (round(float(str(r["satisfaction_mean"])), 4), r["satisfaction_ratings"]) for r in rows
    ] == [(round(11 / 3, 4), 3.0)]


def month_start(month: str, w: World) -> str:
    start, _ = month_bounds(month, w.ctx.city.facts.time_zone)
    return start.isoformat()


def test_tracking_is_rate_limited(sqlite_url: str) -> None:
    for w in make_world(sqlite_url, track_rate_per_hour=3):
        c = w.client
        codes = [
            c.post("/reports/track", json={"token": "rt_" + "x" * 32}).status_code for _ in range(4)
        ]
        assert codes == [404, 404, 404, 429]
