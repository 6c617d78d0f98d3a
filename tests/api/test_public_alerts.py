"""Trust in what the public sees: unverified citizen reports stay off the public feeds,
CAP 1.2 messages keep their identity and `sent` across fetches, updates reference what
they update, every alert validates against the OASIS CAP 1.2 schema; a corroborating
report reaches the timeline and the live stream; resolving asks for what it owes."""

from __future__ import annotations

import queue
import threading
import time
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import xmlschema
from fastapi.testclient import TestClient

from api import cap
from api.app import create_app
from pantau.incidents import (
    ConditionChange,
    ConditionState,
    DedupKey,
    Evidence,
    Hazard,
    Severity,
    WorkflowState,
)
from pantau.store import EventKind, IncidentEvent
from tests.api.conftest import World, flood
from tests.api.server import serve
from tests.api.test_stream_reports import PNG, _next, _reader, _report

CAP_NS = "{urn:oasis:names:tc:emergency:cap:1.2}"
SCHEMA = xmlschema.XMLSchema(Path(__file__).parent / "schemas" / "CAP-v1.2.xsd")


def _alerts(client: TestClient) -> dict[str, ET.Element]:
    """The CAP feed's alerts by their Atom entry id, each checked against the schema."""
    r = client.get("/feeds/cap.xml")
    assert r.status_code == 200
    feed = ET.fromstring(r.content)
    out = {}
    for entry in feed.findall("{http://www.w3.org/2005/Atom}entry"):
        alert = entry.find(f".//{CAP_NS}alert")
        assert alert is not None
        SCHEMA.validate(ET.tostring(alert, encoding="unicode"))
        out[entry.findtext("{http://www.w3.org/2005/Atom}id") or ""] = alert
    return out


def _one(client: TestClient, incident_id: int) -> ET.Element:
    r = client.get(f"/feeds/cap/{incident_id}.xml")
    assert r.status_code == 200, r.text
    SCHEMA.validate(r.text)
    return ET.fromstring(r.content)


def _public_ids(client: TestClient) -> set[int]:
    gj = client.get("/feeds/incidents.geojson").json()
    return {f["properties"]["id"] for f in gj["features"]}


def test_the_schema_refuses_what_cap_forbids() -> None:
    # The vendored schema is the real check: a wrong order or value fails it.
    good = (
        '<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>a</identifier>'
        "<sender>s</sender><sent>2026-01-14T08:30:00-00:00</sent><status>Actual</status>"
        "<msgType>Alert</msgType><scope>Public</scope></alert>"
    )
    SCHEMA.validate(good)
    for bad in (
        good.replace("Actual", "Real"),
        good.replace("2026-01-14T08:30:00-00:00", "2026-01-14T08:30:00Z"),  # CAP wants ±hh:mm
        good.replace("<scope>Public</scope>", ""),
    ):
        assert not SCHEMA.is_valid(bad)


def test_unverified_report_stays_off_the_public_feeds(world: World) -> None:
    c, ops = world.client, world.headers("ops")
    sukasari = world.ctx.geo.centre("kel-sukasari")
    assert sukasari is not None
    r = _report(c, sukasari, "banjir", files={"photo": ("x.png", PNG, "image/png")})
    assert r.status_code == 201 and r.json()["outcome"] == "opened"
    reported = r.json()["incident_id"]
    # Staff see it, marked, with the photo; the public sees nothing of it.
    listed = c.get("/incidents", params={"active": "true"}, headers=ops).json()["data"]
    mine = next(i for i in listed if i["id"] == reported)
    assert mine["awaiting_verification"] is True and mine["origin"] == "citizen_report"
    assert not any(i["awaiting_verification"] for i in listed if i["id"] != reported)
    staff = c.get(f"/incidents/{reported}/reports", headers=ops).json()
    photo = c.get(staff[0]["photo_url"], headers=ops)  # re-encoded without metadata
    assert photo.status_code == 200 and photo.headers["content-type"].startswith("image/")
    assert reported not in _public_ids(c)
    assert f"urn:pantau:incident:{reported}" not in _alerts(c)
    assert c.get(f"/feeds/cap/{reported}.xml").status_code == 404
    # An operator verifies it (acknowledges): now public, saying who verified it.
    ack = c.post(f"/incidents/{reported}/acknowledge", headers=ops)
    assert ack.status_code == 200
    assert ack.json()["incident"]["awaiting_verification"] is False
    assert ack.json()["timeline"][-1]["reason"] == "verified"
    assert reported in _public_ids(c)
    alert = _one(c, reported)
    note = "Laporan warga, diverifikasi oleh operator Pusat Komando."
    assert alert.findtext(f"{CAP_NS}note") == note
    assert alert.findtext(f"{CAP_NS}info/{CAP_NS}certainty") == "Likely"
    assert (alert.findtext(f"{CAP_NS}info/{CAP_NS}description") or "").startswith(note)
    # Rejected as a false alarm after all: off the feeds again, for good.
    rejected = c.post(
        f"/incidents/{reported}/resolve",
        json={"code": "false_alarm", "note": "tidak ada genangan"},
        headers=ops,
    )
    assert rejected.status_code == 200
    assert reported not in _public_ids(c)
    assert c.get(f"/feeds/cap/{reported}.xml").status_code == 404
    # Another report, rejected straight from open (no step to skip for a rejection).
    cimone_jaya = world.ctx.geo.centre("kel-cimone-jaya")
    assert cimone_jaya is not None
    other = _report(c, cimone_jaya, "jalan_rusak").json()["incident_id"]
    refused = c.post(
        f"/incidents/{other}/resolve", json={"code": "fixed", "note": "x"}, headers=ops
    )
    assert refused.status_code == 409
    ok = c.post(
        f"/incidents/{other}/resolve", json={"code": "false_alarm", "note": "x"}, headers=ops
    )
    assert ok.status_code == 200
    assert other not in _public_ids(c)


def test_a_rule_corroborates_a_citizen_report(world: World) -> None:
    c = world.client
    sukasari = world.ctx.geo.centre("kel-sukasari")
    assert sukasari is not None
    reported = _report(c, sukasari, "genangan").json()["incident_id"]
    assert reported not in _public_ids(c)
    # The sensors see it too: the rules open a flood incident in the same kelurahan.
    world.ctx.store.apply(flood("kel-sukasari", datetime.now(UTC), Severity.WASPADA))
    assert reported in _public_ids(c)
    alert = _one(c, reported)
    assert alert.findtext(f"{CAP_NS}note") == (
        "Laporan warga, diverifikasi oleh data pemantauan Pantau (aturan flood-level)."
    )
    gj = c.get("/feeds/incidents.geojson").json()
    props = next(f["properties"] for f in gj["features"] if f["id"] == reported)
    assert props["verified_by"] == "data pemantauan Pantau (aturan flood-level)"


def test_cap_sent_is_fixed_and_updates_reference_the_alert(world: World) -> None:
    c = world.client
    entry = f"urn:pantau:incident:{world.karawaci.id}"
    first = _alerts(c)[entry]
    time.sleep(1.1)  # `sent` has whole seconds: a clock-read `sent` would now differ
    again = _alerts(c)[entry]
    for tag in ("identifier", "sent", "msgType"):
        assert first.findtext(f"{CAP_NS}{tag}") == again.findtext(f"{CAP_NS}{tag}"), tag
    assert first.findtext(f"{CAP_NS}msgType") == "Alert"
    assert first.find(f"{CAP_NS}references") is None
    info = first.find(f"{CAP_NS}info")
    assert info is not None
    assert info.findtext(f"{CAP_NS}instruction") == world.ctx.cap.hazards[Hazard.FLOOD].instruction
    assert "Hindari genangan" in (info.findtext(f"{CAP_NS}instruction") or "")
    sent = datetime.fromisoformat(first.findtext(f"{CAP_NS}sent") or "")
    expires = datetime.fromisoformat(info.findtext(f"{CAP_NS}expires") or "")
    assert expires - sent == timedelta(hours=6)  # config/cap.yaml, flood
    # The water rises: an Update, with its own identifier, that references the Alert.
    now = datetime.now(UTC)
    world.ctx.store.apply(flood("kel-cimone", now, Severity.AWAS))
    update = _one(c, world.karawaci.id)
    assert update.findtext(f"{CAP_NS}msgType") == "Update"
    assert update.findtext(f"{CAP_NS}identifier") != first.findtext(f"{CAP_NS}identifier")
    assert update.findtext(f"{CAP_NS}references") == (
        f"{world.ctx.city.facts.cap_sender},{first.findtext(f'{CAP_NS}identifier')},{first.findtext(f'{CAP_NS}sent')}"
    )
    assert update.findtext(f"{CAP_NS}info/{CAP_NS}severity") == "Extreme"
    assert datetime.fromisoformat(update.findtext(f"{CAP_NS}sent") or "") >= sent


def _event(seq: int, kind: EventKind, to: str, recorded: datetime, frm: str | None = None) -> Any:
    return IncidentEvent(
        incident_id=7, seq=seq, at=recorded, recorded_at=recorded, kind=kind,
        from_state=frm, to_state=to, actor="rules", reason="r",
    )  # fmt: skip


def test_a_standing_alert_is_renewed_before_it_expires(world: World) -> None:
    """By hand: opened at 10:00 with 6 h expiry, severity rose at 11:00; the Update of
    11:00 stands until 14:00 (half its life), then a renewal every 3 h, each with a
    fixed `sent`."""
    t0 = datetime(2026, 1, 14, 10, 0, tzinfo=UTC)
    incident = world.karawaci
    timeline = [
        _event(1, EventKind.CONDITION, "active", t0),
        _event(2, EventKind.WORKFLOW, "open", t0),
        _event(3, EventKind.SEVERITY, "awas", t0 + timedelta(hours=1), "siaga"),
    ]
    six = timedelta(hours=6)
    base = f"pantau-tangerang-incident-{incident.id}-0"

    def current(now: datetime) -> cap.Issue:
        return cap.issues(incident, timeline, t0, now, six, city=world.ctx.city.facts)[-1]

    assert current(t0 + timedelta(minutes=30)) == cap.Issue(base, t0, "Alert")
    at_11 = cap.Issue(f"{base}-3", t0 + timedelta(hours=1), "Update")
    assert current(t0 + timedelta(hours=3, minutes=59)) == at_11
    renewed = cap.Issue(f"{base}-3-r1", t0 + timedelta(hours=4), "Update")
    assert current(t0 + timedelta(hours=4)) == renewed
    assert current(t0 + timedelta(hours=6, minutes=59)) == renewed
    assert current(t0 + timedelta(hours=7)).sent == t0 + timedelta(hours=7)


def test_corroborating_report_on_timeline_and_stream(world: World) -> None:
    ops = world.headers("ops")
    cimone = world.ctx.geo.centre("kel-cimone")
    assert cimone is not None
    with serve(create_app(world.ctx)) as base:
        live: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(
            target=_reader, args=(f"{base}/stream/incidents", ops, live), daemon=True
        ).start()
        time.sleep(0.5)  # connected: the stream starts after the latest event
        with httpx.Client(base_url=base) as client:
            r = client.post(
                "/reports",
                data={"lon": str(cimone[0]), "lat": str(cimone[1]), "category": "banjir",
                      "description": "air masuk rumah"},
                files={"photo": ("x.png", PNG, "image/png")},
            )  # fmt: skip
        assert r.status_code == 201 and r.json()["outcome"] == "corroborated"
        event = _next(live)
    report_id = r.json()["report_id"]
    reason = f"citizen report #{report_id}: banjir, with photo: air masuk rumah"
    assert event["incident_id"] == world.karawaci.id
    assert (event["kind"], event["actor"], event["reason"]) == ("report", "citizen", reason)
    timeline = world.client.get(f"/incidents/{world.karawaci.id}", headers=ops).json()["timeline"]
    assert timeline[-1]["kind"] == "report" and timeline[-1]["reason"] == reason
    assert timeline[-1]["to_state"] == "open"  # the workflow did not move


@pytest.mark.parametrize("who", ["barat", "ops"])
def test_resolving_from_open_needs_a_role_that_may_skip_steps(world: World, who: str) -> None:
    r = world.client.post(
        f"/incidents/{world.karawaci.id}/resolve",
        json={"code": "fixed", "note": "x", "condition_reason": "y"},
        headers=world.headers(who),
    )
    assert r.status_code == 409
    assert "acknowledge it first" in r.json()["detail"]["reason"]
    assert world.ctx.store.get(world.karawaci.id).incident.workflow_state is WorkflowState.OPEN  # type: ignore[union-attr]


def test_resolving_while_the_condition_is_active_needs_a_reason(world: World) -> None:
    sup = world.headers("pupr-sup")  # a supervisor may skip steps: resolve from open
    path = f"/incidents/{world.road.id}/resolve"
    body = {"code": "fixed", "note": "ditambal"}
    refused = world.client.post(path, json=body, headers=sup)
    assert refused.status_code == 409
    assert "condition is still active" in refused.json()["detail"]["reason"]
    ok = world.client.post(
        path, json={**body, "condition_reason": "sensor belum dikalibrasi ulang"}, headers=sup
    )
    assert ok.status_code == 200
    assert ok.json()["timeline"][-1]["reason"] == (
        "fixed: ditambal; resolved while the condition is still active: "
        "sensor belum dikalibrasi ulang"
    )
    # Once the data has cleared, no reason is owed.
    at = datetime.now(UTC)
    world.ctx.store.apply(flood("kel-cimone", at, Severity.SIAGA))
    world.ctx.store.apply(
        ConditionChange(
            key=DedupKey("flood-level", "kel-cimone", Hazard.FLOOD),
            state=ConditionState.CLEARED,
            severity=None,
            at=at + timedelta(minutes=1),
            evidence=Evidence(
                device_ids=("wl-001",), metric="water_level", peak_value=90.0,
                first_at=at, last_at=at + timedelta(minutes=1),
            ),
            reason="cleared",
        )
    )  # fmt: skip
    ops = world.headers("ops")
    assert world.client.post(f"/incidents/{world.karawaci.id}/acknowledge", headers=ops).is_success
    done = world.client.post(
        f"/incidents/{world.karawaci.id}/resolve", json={"code": "receded", "note": "surut"},
        headers=ops,
    )  # fmt: skip
    assert done.status_code == 200 and done.json()["timeline"][-1]["reason"] == "receded: surut"
