"""Issue 24, item 3: the audit log and the timelines are hash-chained; `pantau audit
verify` and GET /audit/verify name a row edited and a row deleted directly in SQL; an
auditor's signed KPI report verifies and its figures recompute from its incidents."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, text

from api import signing
from api.kpi import IncidentFacts, compute
from pantau.cli import main as pantau
from pantau.incidents import Hazard, Severity, WorkflowState
from pantau.store.chain import GENESIS, audit_fields, link

from .conftest import World, make_world


@pytest.fixture(params=["sqlite", "postgresql"])
def signed_world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    key = tmp_path / "report-key.pem"
    signing.write_new_key(key)
    url = (
        f"sqlite:///{tmp_path}/pantau.db"
        if request.param == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    yield from make_world(url, report_signing_key_file=key)


def _activity(w: World) -> None:
    """Transitions, a denial and a report: rows on both kinds of chain."""
    ops = w.headers("ops")
    assert w.client.post(f"/incidents/{w.karawaci.id}/acknowledge", headers=ops).status_code == 200
    body = {"code": "fixed", "note": "pompa jalan lagi", "condition_reason": "recovered"}
    r = w.client.post(f"/incidents/{w.karawaci.id}/resolve", json=body, headers=ops)
    assert r.status_code == 200, r.text
    crew = w.headers("barat")
    for path in ("/audit", "/audit/verify", "/audit"):  # denials, audited
        assert w.client.get(path, headers=crew).status_code == 403
    w.ctx.store.transition(w.road.id, WorkflowState.ACKNOWLEDGED, "operator:ops", "seen")


def _run_verify(url: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = pantau(["audit", "verify", url])
    return code, out.getvalue()


def _lift_audit_guard(conn: Connection) -> None:
    """What someone with the database's owner role could do: switch off the triggers
    that keep audit_log append-only."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("ALTER TABLE audit_log DISABLE TRIGGER USER"))
    else:
        conn.execute(text("DROP TRIGGER audit_log_no_update"))
        conn.execute(text("DROP TRIGGER audit_log_no_delete"))


def test_verify_names_an_edited_and_a_deleted_row(signed_world: World) -> None:
    w = signed_world
    _activity(w)
    url = w.ctx.settings.database_url
    code, out = _run_verify(url)
    assert code == 0 and "OK: every chain holds" in out, out
    auditor = w.headers("audit")
    clean = w.client.get("/audit/verify", headers=auditor).json()
    assert clean["ok"] is True and clean["breaks"] == []
    assert clean["audit_rows"] >= 5 and clean["events"] >= 12
    # A crew may not run it (and that denial is itself chained).
    assert w.client.get("/audit/verify", headers=w.headers("barat")).status_code == 403

    with w.ctx.engine.connect() as conn:
        ids = [r[0] for r in conn.execute(text("SELECT id FROM audit_log ORDER BY id"))]
        events = conn.execute(
            text("SELECT id, seq FROM incident_events WHERE incident_id = :i ORDER BY seq"),
            {"i": w.karawaci.id},
        ).all()
    edited, deleted = ids[1], ids[3]
    ev_edited, ev_deleted = events[1][0], events[3]
    with w.ctx.engine.begin() as conn:
        _lift_audit_guard(conn)
        conn.execute(
            text("UPDATE audit_log SET outcome = 'allowed', detail = 'nothing' WHERE id = :i"),
            {"i": edited},
        )
        conn.execute(text("DELETE FROM audit_log WHERE id = :i"), {"i": deleted})
        conn.execute(
            text("UPDATE incident_events SET reason = 'all fine' WHERE id = :i"), {"i": ev_edited}
        )
        conn.execute(text("DELETE FROM incident_events WHERE id = :i"), {"i": ev_deleted[0]})

    code, out = _run_verify(url)
    assert code == 1, out
    assert f"row id {edited} was altered" in out
    assert f"row(s) missing between id {ids[2]} and id {ids[4]}" in out
    assert f"event id {ev_edited} (seq 2) was altered" in out
    assert f"incident {w.karawaci.id}: seq {ev_deleted[1]}..{ev_deleted[1]} missing" in out

    report = w.client.get("/audit/verify", headers=auditor).json()
    assert report["ok"] is False
    named = {(b["table"], b["kind"], b["row_id"]) for b in report["breaks"]}
    assert ("audit_log", "altered", edited) in named
    assert ("audit_log", "missing", ids[4]) in named
    assert ("incident_events", "altered", ev_edited) in named
    assert any(
        b["table"] == "incident_events"
        and b["kind"] == "missing"
        and b["incident_id"] == w.karawaci.id
        for b in report["breaks"]
    )
    # The other incidents' timelines still hold.
    assert {b["incident_id"] for b in report["breaks"] if b["incident_id"]} == {w.karawaci.id}


def test_anchor_catches_a_rewritten_chain(world: World, tmp_path: Path) -> None:
    """Rewriting every hash after an edit keeps the chain consistent, but not the hash
    an auditor kept."""
    w = world
    _activity(w)
    url = w.ctx.settings.database_url
    code, out = _run_verify(url)
    anchor = next(line.split()[1] for line in out.splitlines() if line.startswith("anchor:"))
    aid = int(anchor.split(":")[0])
    with w.ctx.engine.begin() as conn:
        _lift_audit_guard(conn)
        rows = conn.execute(
            text(
                "SELECT id, at, actor, role, action, incident_id, outcome, detail "
                "FROM audit_log ORDER BY id"
            )
        ).all()
        prev = GENESIS
        for r in rows:
            detail = "rewritten" if r[0] == rows[0][0] else r[7]
            at = datetime.fromisoformat(str(r[1])).replace(tzinfo=None)
            fields = audit_fields(
                at=at.replace(tzinfo=UTC),
                actor=r[2],
                role=r[3],
                action=r[4],
                incident_id=r[5],
                outcome=r[6],
                detail=detail,
            )
            h = link(prev, fields)
            conn.execute(
                text(
                    "UPDATE audit_log SET detail = :d, prev_hash = :p, row_hash = :h WHERE id = :i"
                ),
                {"d": detail, "p": prev, "h": h, "i": r[0]},
            )
            prev = h
    code, out = _run_verify(url)
    assert code == 0, out  # consistent again...
    out2 = io.StringIO()
    with contextlib.redirect_stdout(out2):
        code = pantau(["audit", "verify", url, "--anchor", anchor])
    assert code == 1
    assert f"the anchored row id {aid} has another hash than the anchor" in out2.getvalue()


def _facts(rec: dict[str, Any]) -> IncidentFacts:
    def t(name: str) -> datetime | None:
        v = rec[name]
        return None if v is None else datetime.fromisoformat(v)

    return IncidentFacts(
        id=rec["id"],
        hazard=Hazard(rec["hazard"]),
        severity_max=Severity(rec["severity_max"]),
        workflow_state=WorkflowState(rec["workflow_state"]),
        opened_at=datetime.fromisoformat(rec["opened_at"]),
        acknowledged_at=t("acknowledged_at"),
        resolved_at=t("resolved_at"),
        sla_ack_due=datetime.fromisoformat(rec["sla_ack_due"]),
        sla_resolve_due=datetime.fromisoformat(rec["sla_resolve_due"]),
        reopen_count=rec["reopen_count"],
        evidence_first_at=t("evidence_first_at"),
        ratings=tuple(rec["ratings"]),
    )


def test_signed_kpi_report_verifies_and_recomputes(signed_world: World) -> None:
    w = signed_world
    _activity(w)
    month = w.karawaci.opened_at.astimezone(w.ctx.city.facts.time_zone).strftime("%Y-%m")
    auditor = w.headers("audit")
    r = w.client.get("/audit/kpi-report", params={"month": month}, headers=auditor)
    assert r.status_code == 200, r.text
    envelope = r.json()
    published = w.client.get("/audit/signing-key").text
    assert envelope["public_key"] == published
    assert signing.verify(envelope, published)
    doc = envelope["report"]
    assert doc["chains"]["ok"] is True and doc["chains"]["audit_head"]["id"] > 0
    incidents = doc["incidents"]
    assert {i["id"] for i in incidents} == {w.karawaci.id, w.ciledug.id, w.road.id}

    as_of = datetime.fromisoformat(doc["as_of"])
    start, end = datetime.fromisoformat(doc["start"]), datetime.fromisoformat(doc["end"])
    by_scope = {(s["scope"], s["id"]): s["figures"] for s in doc["scopes"]}
    members = {
        ("kota", next(k for k in by_scope if k[0] == "kota")[1]): incidents,
        ("agency", "bpbd"): [i for i in incidents if i["agency"] == "bpbd"],
        ("agency", "pupr"): [i for i in incidents if i["agency"] == "pupr"],
        ("kecamatan", "kec-karawaci"): [
            i for i in incidents if i["kecamatan_id"] == "kec-karawaci"
        ],
    }
    for key, recs in members.items():
        figures = by_scope[key]
        again = compute([_facts(x) for x in recs], start, end, as_of)
        assert figures["incidents"] == again.incidents == len(recs), key
        assert figures["sla_met"] == again.sla_met and figures["sla_missed"] == again.sla_missed
        assert figures["backlog"] == again.backlog
        assert figures["ack_minutes"]["mean"] == again.ack_minutes.mean
        assert figures["resolve_minutes"]["mean"] == again.resolve_minutes.mean
    # And by hand, without Pantau's formulas: the kota's mean time to acknowledge.
    acks = [
        (
            datetime.fromisoformat(i["acknowledged_at"]) - datetime.fromisoformat(i["opened_at"])
        ).total_seconds()
        / 60
        for i in incidents
        if i["acknowledged_at"]
    ]
    kota = next(v for k, v in by_scope.items() if k[0] == "kota")
    assert len(acks) == 2 and kota["ack_minutes"]["mean"] == pytest.approx(sum(acks) / 2)
    assert kota["backlog"] == 2  # ciledug and the road still open

    # Any change to a figure breaks the signature.
    kota["incidents"] += 1
    assert not signing.verify(envelope, published)
    # Auditors and operators only.
    crew = w.client.get("/audit/kpi-report", params={"month": month}, headers=w.headers("barat"))
    assert crew.status_code == 403


def test_report_without_key_is_503(world: World) -> None:
    r = world.client.get(
        "/audit/kpi-report", params={"month": "2026-12"}, headers=world.headers("audit")
    )
    assert r.status_code == 503 and "signing key" in r.json()["detail"]
