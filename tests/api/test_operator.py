"""The operations page's own actions through the API: notes, crew (re)assignment and
escalation by hand, each role-checked, on the timeline and in the audit log; and the
detail's context (place, map link, instruction, dashboards)."""

from __future__ import annotations

import json
from typing import Any

from tests.api.conftest import World


def _audit(w: World, incident_id: int) -> list[tuple[str, str]]:
    log = w.client.get(
        "/audit", params={"incident_id": incident_id, "limit": 50}, headers=w.headers("audit")
    ).json()
    return [(e["action"], e["outcome"]) for e in reversed(log["data"])]


def _events(body: dict[str, Any], kind: str) -> list[tuple[str | None, str, str, str]]:
    return [
        (e["from_state"], e["to_state"], e["actor"], e["reason"])
        for e in body["timeline"]
        if e["kind"] == kind
    ]


def test_note_assign_reassign_escalate(any_world: World) -> None:
    w = any_world
    ops, crew, auditor = w.headers("ops"), w.headers("barat"), w.headers("audit")
    url = f"/incidents/{w.karawaci.id}"
    r = w.client.post(f"{url}/notes", json={"note": "warga melapor air masuk rumah"}, headers=ops)
    assert r.status_code == 200, r.text
    assert _events(r.json(), "note") == [
        ("open", "open", "operator:ops", "warga melapor air masuk rumah")
    ]
    assert w.client.post(f"{url}/notes", json={"note": "x"}, headers=auditor).status_code == 403
    assert w.client.post(f"{url}/notes", json={"note": ""}, headers=ops).status_code == 422
    # A crew may add a note but not assign crews.
    assert w.client.post(f"{url}/notes", json={"note": "menuju lokasi"}, headers=crew).is_success
    body = {"crew_id": "bpbd-barat-siang"}
    assert w.client.post(f"{url}/assign", json=body, headers=crew).status_code == 403
    r = w.client.post(f"{url}/assign", json={"crew_id": "bpbd-barat-pagi"}, headers=ops)
    assert r.status_code == 200, r.text
    assert r.json()["incident"]["assignee_crew_id"] == "bpbd-barat-pagi"
    assert r.json()["incident"]["workflow_state"] == "open"
    r = w.client.post(f"{url}/assign", json=body, headers=ops)
    assert r.json()["incident"]["assignee_crew_id"] == "bpbd-barat-siang"
    assert _events(r.json(), "assignment") == [
        (None, "bpbd-barat-pagi", "operator:ops", "assigned bpbd-barat-pagi"),
        (
            "bpbd-barat-pagi",
            "bpbd-barat-siang",
            "operator:ops",
            "reassigned bpbd-barat-pagi -> bpbd-barat-siang",
        ),
    ]
    assert w.client.post(f"{url}/assign", json=body, headers=ops).status_code == 409
    pupr = {"crew_id": "pupr-barat-pagi"}
    assert w.client.post(f"{url}/assign", json=pupr, headers=ops).status_code == 422
    # Escalation: supervisor first, then the operations centre, then refused.
    r = w.client.post(f"{url}/escalate", json={"note": "kru tidak menjawab"}, headers=ops)
    assert r.status_code == 200, r.text
    assert r.json()["incident"]["escalation_level"] == 1
    assert w.client.post(f"{url}/escalate", headers=ops).json()["incident"]["escalation_level"] == 2
    assert w.client.post(f"{url}/escalate", headers=ops).status_code == 409
    assert w.client.post(f"{url}/escalate", headers=crew).status_code == 403
    sla = _events(w.client.get(url, headers=ops).json(), "sla")
    assert [(s[1], s[2]) for s in sla if s[2] != "rules"] == [
        ("escalated_supervisor", "operator:ops"),
        ("escalated_ops", "operator:ops"),
    ]
    assert [s[3] for s in sla[-2:]] == ["kru tidak menjawab", "escalated by hand"]
    sent = [json.loads(m.payload) for m in w.ctx.store.unpublished()]
    outbox = [(m.topic, b) for m, b in zip(w.ctx.store.unpublished(), sent, strict=True)]
    escalations = [(t, b) for t, b in outbox if b.get("alert") == "escalation"]
    assert [(t.rsplit("/", 2)[-2:], b["by"]) for t, b in escalations] == [
        (["crews", "bpbd-supervisor"], "operator:ops"),
        (["alerts", "ops"], "operator:ops"),
    ]
    assert _audit(w, w.karawaci.id) == [
        ("note", "allowed"),
        ("note", "denied"),
        ("note", "allowed"),
        ("assign", "denied"),
        ("assign", "allowed"),
        ("assign", "allowed"),
        ("assign", "denied"),
        ("escalate", "allowed"),
        ("escalate", "allowed"),
        ("escalate", "denied"),
        ("escalate", "denied"),
    ]


def test_out_of_scope_actions_are_404(world: World) -> None:
    crew = world.headers("barat")
    url = f"/incidents/{world.ciledug.id}"  # kec-ciledug: not crew barat's
    assert world.client.post(f"{url}/notes", json={"note": "x"}, headers=crew).status_code == 404


def test_detail_context_place_instruction_links(world: World) -> None:
    r = world.client.get(f"/incidents/{world.karawaci.id}", headers=world.headers("ops"))
    c = r.json()["context"]
    assert c["place"]["kelurahan_name"] == "Cimone"
    assert c["place"]["kecamatan_name"] == "Karawaci"
    lat, lon = c["place"]["lat"], c["place"]["lon"]
    assert -6.3 < lat < -6.1 and 106.5 < lon < 106.8
    assert c["place"]["geo_uri"] == f"geo:{lat},{lon}"
    assert c["place"]["map_url"].startswith("https://www.openstreetmap.org/?mlat=")
    assert c["instruction"].startswith("Hindari genangan")
    urls = [link["url"] for link in c["grafana"]]
    assert urls[0] == (
        "http://localhost:3000/d/pantau-city-overview/city-overview"
        "?var-kecamatan=kec-karawaci&var-kelurahan=kel-cimone"
    )


def test_an_action_sent_twice_with_one_key_happens_once(any_world: World) -> None:
    w = any_world
    crew = w.headers("barat")
    url = f"/incidents/{w.karawaci.id}/acknowledge"
    key = {"Idempotency-Key": "3f9c2a7e-offline-1"}
    first = w.client.post(url, json={}, headers={**crew, **key})
    again = w.client.post(url, json={}, headers={**crew, **key})
    assert first.status_code == again.status_code == 200
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    # Without the key, the same move is refused: it happened already.
    assert w.client.post(url, json={}, headers=crew).status_code == 409
    detail = w.ctx.store.get(w.karawaci.id)
    assert detail is not None
    assert [e.to_state for e in detail.timeline if e.kind.value == "workflow"] == [
        "open",
        "acknowledged",
    ]
    # The key is the caller's and the request's own.
    other = w.client.post(url, json={}, headers={**w.headers("ops"), **key})
    assert other.status_code == 422
    note = w.client.post(
        f"/incidents/{w.karawaci.id}/notes", json={"note": "x"}, headers={**crew, **key}
    )
    assert note.status_code == 422
    bad = w.client.post(url, json={}, headers={**crew, "Idempotency-Key": "x"})
    assert bad.status_code == 422
