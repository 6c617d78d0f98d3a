"""Issue 24, item 1: the public transparency page. Its data (no login) carries only
public aggregates: kelurahan state, incidents coarsened to kelurahan and hour, agency
response figures; the page draws them in real headless Chromium on a desktop and a
phone, in Bahasa Indonesia and English, passes axe-core with no serious violation, and
lets a reporter track and rate a report. Screenshots: run/artifacts/public-page/."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from playwright.sync_api import Browser, expect, sync_playwright

from api.app import create_app
from pantau.incidents import DedupKey, Hazard, Severity, WorkflowState
from testkit.browser import artifacts_dir, serious_violations
from tests.api.conftest import World, flood
from tests.api.server import serve

CHROMIUM = "/usr/bin/chromium"
DESKTOP = {"width": 1366, "height": 900}
PHONE = {"width": 390, "height": 844}
# Nothing of these may reach the public: devices, crews, people, places finer than a
# kelurahan, report texts.
PRIVATE_KEYS = {
    "device_ids", "evidence", "assignee_crew_id", "routed_crew_id", "actor", "crew",
    "lon", "lat", "description", "comment", "reason", "timeline", "photo_url",
}  # fmt: skip


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield b
        b.close()


def _keys(doc: Any) -> set[str]:
    if isinstance(doc, dict):
        return set(doc) | {k for v in doc.values() for k in _keys(v)}
    if isinstance(doc, list):
        return {k for v in doc for k in _keys(v)}
    return set()


def _scene(w: World) -> None:
    """Beyond the world's three: a device-health incident and an unverified citizen
    report (neither public), and a flood in kel-sukasari handled and resolved."""
    now = datetime.now(UTC)
    s = w.ctx.store
    s.apply(
        flood(
            "kel-babakan", now - timedelta(minutes=50), rule="offline", hazard=Hazard.SENSOR_OFFLINE
        )
    )
    lon, lat = w.ctx.geo.centre("kel-kunciran") or (0.0, 0.0)
    r = w.client.post(
        "/reports", data={"lon": str(lon), "lat": str(lat), "category": "jalan_rusak"}
    )
    assert r.status_code == 201 and r.json()["outcome"] == "opened"
    done = s.apply(flood("kel-sukasari", now - timedelta(minutes=40), Severity.WASPADA)).incident
    assert done is not None
    s.transition(done.id, WorkflowState.ACKNOWLEDGED, "operator:ops", "seen")
    s.transition(done.id, WorkflowState.RESOLVED, "operator:ops", "receded: ok")


def _sukasari(w: World) -> list[DedupKey]:
    return [DedupKey("flood-level", "kel-sukasari", Hazard.FLOOD)]


def test_public_data_is_aggregate_and_coarse(world: World) -> None:
    w = world
    _scene(w)
    r = w.client.get("/public/overview")  # no login
    assert r.status_code == 200 and r.headers["cache-control"] == "public, max-age=60"
    doc = r.json()
    assert not _keys(doc) & PRIVATE_KEYS
    assert "wl-001" not in r.text and "bpbd-barat-pagi" not in r.text
    state = {k["id"]: k for k in doc["kelurahan"]}
    assert len(state) == 104
    assert state["kel-paninggilan"]["flood"] == "awas"
    assert state["kel-cimone"]["flood"] == "siaga"
    assert state["kel-bugel"]["road"] == "waspada" and state["kel-bugel"]["flood"] == "normal"
    assert state["kel-sukasari"]["flood"] == "normal"  # resolved
    assert state["kel-kunciran"]["road"] == "normal"  # an unverified report is not public
    recent = doc["recent_incidents"]
    assert {i["zone_id"] for i in recent} == {
        "kel-cimone", "kel-paninggilan", "kel-bugel", "kel-sukasari"
    }  # fmt: skip
    for i in recent:
        hour = datetime.fromisoformat(i["hour"])
        assert hour.minute == hour.second == hour.microsecond == 0
    assert next(i for i in recent if i["zone_id"] == "kel-sukasari")["status"] == "resolved"
    bpbd = next(a for a in doc["agencies"] if a["id"] == "bpbd")
    assert bpbd["incidents"] == 3  # cimone, paninggilan, sukasari
    assert bpbd["ack_median_minutes"] is not None and bpbd["resolve_median_minutes"] is not None
    # SLA by hand: each incident owes "acknowledged by" and "resolved by" its due times.
    met = missed = 0
    now = datetime.now(UTC)
    for i in w.ctx.store.active() + [w.ctx.store.history(k)[0] for k in _sukasari(w)]:
        if i.agency != "bpbd":
            continue
        for done, due in ((i.acknowledged_at, i.sla_ack_due), (i.resolved_at, i.sla_resolve_due)):
            if done is not None:
                met, missed = (met + 1, missed) if done <= due else (met, missed + 1)
            elif due < now:
                missed += 1
    assert bpbd["sla_pct"] == round(100 * met / (met + missed), 1)
    # Served from the cache until an incident changes.
    assert w.client.get("/public/overview").content == r.content
    w.ctx.store.transition(w.ciledug.id, WorkflowState.ACKNOWLEDGED, "operator:ops", "seen")
    after = w.client.get("/public/overview").json()
    assert (
        next(a for a in after["agencies"] if a["id"] == "bpbd")["ack_median_minutes"]
        != (bpbd["ack_median_minutes"])
    )
    geo = w.client.get("/public/kelurahan.geojson").json()
    assert len(geo["features"]) == 104 and not _keys(geo) & PRIVATE_KEYS


def _open(browser: Browser, viewport: dict[str, int], url: str) -> Any:
    # axe-core is injected as a script, which the page's CSP (script-src 'self') would
    # refuse: the test's context bypasses CSP for that, nothing else changes.
    context = browser.new_context(viewport=viewport, bypass_csp=True)  # type: ignore[arg-type]
    page = context.new_page()
    page.goto(url)
    expect(page.locator("body")).to_have_attribute("data-loaded", "true", timeout=15_000)
    return context, page


def test_public_page_desktop_phone_languages_accessibility(world: World, browser: Browser) -> None:
    w = world
    _scene(w)
    out = artifacts_dir("public-page")
    with serve(create_app(w.ctx)) as base:
        context, page = _open(browser, DESKTOP, f"{base}/app/public")
        expect(page.locator("#map path")).to_have_count(104)
        expect(page.locator('#map path[data-zone="kel-paninggilan"]')).to_have_attribute(
            "data-level", "awas"
        )
        expect(page.locator('#map path[data-zone="kel-paninggilan"]')).to_have_attribute(
            "fill", "#b91c1c"
        )
        expect(page.locator("html")).to_have_attribute("lang", "id")
        expect(page.locator("#map-title")).to_have_text("Kondisi kelurahan saat ini")
        expect(page.locator("#recent tbody tr")).to_have_count(4)
        expect(page.locator("#agencies tbody tr")).to_have_count(len(w.ctx.city.agencies))
        # The road layer: kel-bugel's road damage.
        page.locator('input[name="layer"][value="road"]').check()
        expect(page.locator('#map path[data-zone="kel-bugel"]')).to_have_attribute(
            "data-level", "waspada"
        )
        page.locator('input[name="layer"][value="flood"]').check()
        assert serious_violations(page) == []
        page.screenshot(path=str(out / "desktop-id.png"), full_page=True)
        page.locator("#lang").click()
        expect(page.locator("html")).to_have_attribute("lang", "en")
        expect(page.locator("#map-title")).to_have_text("Current state of the kelurahan")
        expect(page.locator("#agencies thead th").nth(2)).to_have_text("Median time to respond")
        assert serious_violations(page) == []
        page.screenshot(path=str(out / "desktop-en.png"), full_page=True)
        context.close()

        context, page = _open(browser, PHONE, f"{base}/app/public")
        expect(page.locator("html")).to_have_attribute("lang", "id")  # default, new context
        expect(page.locator("#map path")).to_have_count(104)
        # Nothing wider than the phone: tables scroll inside their own box.
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], width
        box = page.locator("#map").bounding_box()
        assert box is not None and box["width"] >= 300
        assert serious_violations(page) == []
        page.screenshot(path=str(out / "phone-id.png"), full_page=True)
        context.close()
    for name in ("desktop-id.png", "desktop-en.png", "phone-id.png"):
        assert (out / name).stat().st_size > 10_000


def test_reporter_tracks_and_rates_on_the_page(world: World, browser: Browser) -> None:
    w = world
    lon, lat = w.ctx.geo.centre("kel-cimone") or (0.0, 0.0)
    filed = w.client.post("/reports", data={"lon": str(lon), "lat": str(lat), "category": "banjir"})
    link = filed.json()["tracking_url"]
    with serve(create_app(w.ctx)) as base:
        context, page = _open(browser, PHONE, f"{base}{link}")
        expect(page.locator("#track-status")).to_contain_text("diterima, menunggu petugas")
        expect(page.locator("#rate-form")).to_be_hidden()
        assert "lacak" not in page.url  # the token left the address bar
        w.ctx.store.transition(w.karawaci.id, WorkflowState.ACKNOWLEDGED, "operator:ops", "seen")
        w.ctx.store.transition(w.karawaci.id, WorkflowState.RESOLVED, "operator:ops", "fixed: ok")
        page.locator("#track-form button").click()
        expect(page.locator("#track-status")).to_contain_text("selesai")
        expect(page.locator("#rate-form")).to_be_visible()
        page.get_by_label("4 bintang").check()
        page.fill("#comment", "cepat, terima kasih")
        page.locator("#rate-form button").click()
        expect(page.locator("#track-message")).to_have_text("Terima kasih atas penilaian Anda.")
        expect(page.locator("#rate-form")).to_be_hidden()
        assert serious_violations(page) == []
        page.screenshot(path=str(artifacts_dir("public-page") / "phone-track.png"), full_page=True)
        context.close()
    staff = w.client.get("/reports/ratings", headers=w.headers("ops")).json()
    assert [(x["rating"], x["comment"]) for x in staff] == [(4, "cepat, terima kasih")]
    assert json.dumps(staff)  # plain JSON
