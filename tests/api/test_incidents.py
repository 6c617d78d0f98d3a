"""Incidents through the API on SQLite and PostgreSQL: list filters and pagination,
detail with timeline and evidence, the workflow with its 409s, and crew scope."""

from __future__ import annotations

from sqlalchemy import text

from tests.api.conftest import World


def test_list_filters_and_pages(any_world: World) -> None:
    w = any_world
    h = w.headers("ops")
    everything = w.client.get("/incidents", headers=h).json()
    assert everything["count"] == 3
    # newest first
    assert [i["id"] for i in everything["data"]] == [w.road.id, w.ciledug.id, w.karawaci.id]
    floods = w.client.get("/incidents", params={"hazard": "flood"}, headers=h).json()
    assert {i["id"] for i in floods["data"]} == {w.karawaci.id, w.ciledug.id}
    kec = w.client.get("/incidents", params={"kecamatan": "kec-karawaci"}, headers=h).json()
    assert {i["id"] for i in kec["data"]} == {w.karawaci.id, w.road.id}
    kel = w.client.get("/incidents", params={"kelurahan": "kel-paninggilan"}, headers=h).json()
    assert [i["id"] for i in kel["data"]] == [w.ciledug.id]
    awas = w.client.get("/incidents", params={"severity": ["awas"]}, headers=h).json()
    assert [i["severity"] for i in awas["data"]] == ["awas"]
    pupr = w.client.get("/incidents", params={"agency": "pupr"}, headers=h).json()
    assert [i["hazard"] for i in pupr["data"]] == ["road_damage"]
    page = w.client.get("/incidents", params={"limit": 1, "offset": 1}, headers=h).json()
    assert page["count"] == 3 and [i["id"] for i in page["data"]] == [w.ciledug.id]
    since = w.ciledug.opened_at.isoformat()
    recent = w.client.get("/incidents", params={"opened_from": since}, headers=h).json()
    assert {i["id"] for i in recent["data"]} == {w.ciledug.id, w.road.id}
    naive = w.client.get("/incidents", params={"opened_from": "2026-01-01T00:00:00"}, headers=h)
    assert naive.status_code == 422


def test_detail_has_timeline_and_evidence(world: World) -> None:
    r = world.client.get(f"/incidents/{world.karawaci.id}", headers=world.headers("ops"))
    assert r.status_code == 200
    body = r.json()
    assert body["incident"]["zone_name"] == "Cimone"
    assert body["incident"]["kecamatan_id"] == "kec-karawaci"
    assert [e["to_state"] for e in body["timeline"]][:3] == ["active", "siaga", "open"]
    assert body["evidence"]["metric"] == "water_level"
    assert body["evidence"]["devices"][0]["id"] == "wl-001"
    assert body["evidence"]["series_source"] == "unavailable" or body["evidence"]["series"] == []


def test_workflow_and_invalid_moves(any_world: World) -> None:
    w = any_world
    ops, crew = w.headers("ops"), w.headers("barat")
    base = f"/incidents/{w.karawaci.id}"
    r = w.client.post(f"{base}/acknowledge", json={"note": "seen"}, headers=crew)
    assert r.status_code == 200
    assert r.json()["incident"]["workflow_state"] == "acknowledged"
    assert r.json()["incident"]["assignee_crew_id"] == "bpbd-barat-pagi"  # the crew took it
    # Acknowledging twice is a conflict with a reason.
    again = w.client.post(f"{base}/acknowledge", headers=crew)
    assert again.status_code == 409
    assert again.json()["detail"]["reason"] == "it is already there"
    # A crew may not dispatch; an operator may, to a crew of the incident's agency only.
    assert (
        w.client.post(
            f"{base}/dispatch", json={"crew_id": "bpbd-barat-siang"}, headers=crew
        ).status_code
        == 403
    )
    assert (
        w.client.post(
            f"{base}/dispatch", json={"crew_id": "pupr-barat-pagi"}, headers=ops
        ).status_code
        == 422
    )
    r = w.client.post(f"{base}/dispatch", json={"crew_id": "bpbd-barat-siang"}, headers=ops)
    assert r.status_code == 200 and r.json()["incident"]["assignee_crew_id"] == "bpbd-barat-siang"
    assert w.client.post(f"{base}/on-site", headers=crew).status_code == 200
    # Close before resolve: 409 naming what is allowed.
    early = w.client.post(f"{base}/close", headers=ops)
    assert early.status_code == 409
    assert early.json()["detail"] == {
        "reason": "from on_site only resolved are allowed",
        "from_state": "on_site",
        "to_state": "closed",
    }
    fixed = {"code": "fixed", "note": "pump restarted"}
    # The data still says flood: resolving owes a reason, kept on the timeline.
    assert w.client.post(f"{base}/resolve", json=fixed, headers=crew).status_code == 409
    why = {**fixed, "condition_reason": "level falling"}
    r = w.client.post(f"{base}/resolve", json=why, headers=crew)
    assert r.status_code == 200
    assert r.json()["resolution"] == {
        "code": "fixed",
        "note": "pump restarted; resolved while the condition is still active: level falling",
    }
    assert (
        w.client.post(
            f"{base}/resolve", json={"code": "bogus", "note": "x"}, headers=crew
        ).status_code
        == 422
    )
    assert w.client.post(f"{base}/close", headers=crew).status_code == 403
    assert w.client.post(f"{base}/close", headers=ops).status_code == 200
    r = w.client.post(f"{base}/reopen", json={"reason": "water rose again"}, headers=ops)
    assert r.status_code == 200
    inc = r.json()["incident"]
    assert inc["workflow_state"] == "open" and inc["reopen_count"] == 1
    workflow = [
        (e["to_state"], e["actor"]) for e in r.json()["timeline"] if e["kind"] == "workflow"
    ]
    assert workflow == [
        ("open", "rules"),
        ("acknowledged", "crew:barat"),
        ("dispatched", "operator:ops"),
        ("on_site", "crew:barat"),
        ("resolved", "crew:barat"),
        ("closed", "operator:ops"),
        ("open", "operator:ops"),
    ]
    # Every transition and every refusal is in the audit log.
    log = w.client.get(
        "/audit", params={"incident_id": w.karawaci.id, "limit": 50}, headers=w.headers("audit")
    ).json()
    outcomes = [(e["action"], e["outcome"]) for e in reversed(log["data"])]
    assert outcomes == [
        ("transition:acknowledged", "allowed"),
        ("transition:acknowledged", "denied"),
        ("transition:dispatched", "denied"),
        ("transition:dispatched", "allowed"),
        ("transition:on_site", "allowed"),
        ("transition:closed", "denied"),
        ("transition:resolved", "denied"),
        ("transition:resolved", "allowed"),
        ("transition:closed", "denied"),
        ("transition:closed", "allowed"),
        ("transition:open", "allowed"),
    ]


def test_crew_of_another_zone_gets_404_everywhere(any_world: World) -> None:
    w = any_world
    barat = w.headers("barat")
    listed = w.client.get("/incidents", headers=barat).json()
    # bpbd in barat only: not Ciledug (selatan), not PUPR's road damage in Karawaci.
    assert [i["id"] for i in listed["data"]] == [w.karawaci.id] and listed["count"] == 1
    other = f"/incidents/{w.ciledug.id}"
    assert w.client.get(other, headers=barat).status_code == 404
    for path, body in [
        ("acknowledge", None),
        ("on-site", None),
        ("resolve", {"code": "fixed", "note": "x"}),
        ("close", None),
        ("reopen", {"reason": "x"}),
        ("dispatch", {"crew_id": "bpbd-barat-pagi"}),
    ]:
        r = w.client.post(f"{other}/{path}", json=body, headers=barat)
        assert r.status_code == 404, (path, r.status_code)
    # The same 404 as an id that does not exist: nothing to probe.
    missing = w.client.get("/incidents/999999", headers=barat)
    assert missing.json()["detail"] == "incident 999999 not found"
    assert (
        w.client.get(other, headers=barat).json()["detail"] == f"incident {w.ciledug.id} not found"
    )
    # The incident is untouched and the attempts are audited as denials.
    assert w.ctx.store.get(w.ciledug.id).incident.workflow_state.value == "open"  # type: ignore[union-attr]
    log = w.client.get(
        "/audit", params={"incident_id": w.ciledug.id}, headers=w.headers("ops")
    ).json()
    assert log["count"] == 8 and {e["outcome"] for e in log["data"]} == {"denied"}
    assert {e["actor"] for e in log["data"]} == {"crew:barat"}
    # The agency supervisor of PUPR sees PUPR's incidents only.
    sup = w.client.get("/incidents", headers=w.headers("pupr-sup")).json()
    assert [i["id"] for i in sup["data"]] == [w.road.id]


def test_auditor_reads_but_cannot_act(world: World) -> None:
    h = world.headers("audit")
    assert world.client.get("/incidents", headers=h).json()["count"] == 3
    r = world.client.post(f"/incidents/{world.karawaci.id}/acknowledge", headers=h)
    assert r.status_code == 403
    assert world.client.get("/audit", headers=world.headers("barat")).status_code == 403


def test_audit_log_is_append_only(any_world: World) -> None:
    w = any_world
    w.client.post(f"/incidents/{w.karawaci.id}/acknowledge", headers=w.headers("ops"))
    for statement in ("UPDATE audit_log SET outcome = 'allowed'", "DELETE FROM audit_log"):
        try:
            with w.ctx.engine.begin() as conn:
                conn.execute(text(statement))
        except Exception as err:
            assert "append-only" in str(err)
        else:
            raise AssertionError(f"{statement} was allowed")
    with w.ctx.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM audit_log")).scalar_one() == 1
