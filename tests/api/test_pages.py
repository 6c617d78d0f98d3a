"""The crew and ops pages in real headless Chromium (Debian's, driven by Playwright):
a crew logs in, sees an alert arrive live, acknowledges, goes on site and resolves it;
the ops map colours kelurahan by their worst active incident. Screenshots are saved in
the test's tmp dir."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Dialog, Page, expect, sync_playwright

from api.app import create_app
from pantau.incidents import Severity, WorkflowState
from tests.api.conftest import PASSWORD, World, flood
from tests.api.server import serve

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield b
        b.close()


def _login(page: Page, base: str, path: str, username: str) -> None:
    page.goto(f"{base}{path}")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.press("#password", "Enter")


def test_crew_page_acknowledge_on_site_resolve(
    world: World, browser: Browser, tmp_path: Path
) -> None:
    page = browser.new_page(viewport={"width": 390, "height": 844})  # a phone
    with serve(create_app(world.ctx)) as base:
        _login(page, base, "/app/crew", "barat")
        expect(page.locator("#who")).to_have_text("bpbd-barat-pagi")
        expect(page.locator("#login")).to_be_hidden()
        expect(page.locator("#live")).to_have_text("● langsung", timeout=10_000)
        # Only the crew's own incident is listed (not Ciledug's, not PUPR's).
        cards = page.locator("article.card")
        expect(cards).to_have_count(1)
        # The card says where (kelurahan, map links a phone opens), what to do, and
        # until when, in WIB; the acknowledge-by time has passed: marked.
        old = page.locator(f'article[data-incident="{world.karawaci.id}"]')
        expect(old.locator('[data-field="place"]')).to_contain_text("Kel. Cimone, Kec. Karawaci")
        expect(old.locator('[data-field="place"] a[href^="geo:-6."]')).to_have_count(1)
        osm = old.locator('[data-field="place"] a[href^="https://www.openstreetmap.org/?mlat=-6."]')
        expect(osm).to_have_count(1)
        expect(old.locator("details.instruction")).to_contain_text("Hindari genangan")
        expect(old.locator(".meta")).to_contain_text("Siaga · Baru · dibuka")
        ack_due = old.locator('[data-field="ack-due"]')
        expect(ack_due).to_contain_text("WIB")
        expect(ack_due).to_contain_text("TERLAMBAT")
        expect(ack_due).to_have_class("late")
        expect(old.locator('[data-field="resolve-due"]')).not_to_have_class("late")
        # A reading against its station's levels (the evidence series needs InfluxDB,
        # not in this world: the same function on a reading).
        text = page.evaluate(
            "latestText({metric: 'water_level', value: 150, at: '2026-11-30T20:00:00Z',"
            " alert: 120, danger: 160, bankfull: 200})"
        )
        assert text == (
            "Tinggi muka air terakhir: 150 cm — di atas Siaga II (Sel, 1/12, 03.00 WIB). "
            "Batas: Siaga II (waspada) 120 cm, Siaga I (awas) 160 cm"
        ), text
        # A new alert in the crew's zone arrives over the stream, no reload.
        at = datetime.now(UTC) - timedelta(minutes=1)
        change = flood("kel-bugel", at, Severity.AWAS, device="wl-bugel-010")
        new = world.ctx.store.apply(change).incident
        assert new is not None
        card = page.locator(f'article[data-incident="{new.id}"]')
        expect(card).to_be_visible(timeout=10_000)
        expect(cards).to_have_count(2)
        expect(cards.first).to_have_attribute("data-incident", str(new.id))  # awas first
        expect(card.locator('[data-field="place"]')).to_contain_text("water level station Bugel")
        card.locator('[data-action="ack"]').click()
        expect(card).to_have_attribute("data-state", "acknowledged")
        card.locator('[data-action="on-site"]').click()
        expect(card).to_have_attribute("data-state", "on_site")
        expect(card.locator(".meta")).to_contain_text("Awas · Di lokasi")
        options = card.locator('[data-field="code"] option').all_inner_texts()
        assert "Surut / reda sendiri" in options and "Alarm palsu" in options, options
        card.locator('[data-field="code"]').select_option("receded")
        note = card.locator('[data-field="note"]')
        note.press_sequentially("air surut, saluran")
        # A live event re-renders the list while the crew types: the field, its text
        # and the focus (a phone's keyboard) survive, and the typing goes on.
        page.evaluate("refresh()")
        expect(note).to_be_focused()
        expect(note).to_have_value("air surut, saluran")
        page.keyboard.type(" dibersihkan")
        expect(note).to_have_value("air surut, saluran dibersihkan")
        page.screenshot(path=str(tmp_path / "crew-before-resolve.png"), full_page=True)
        # One tap does not resolve: the page asks to confirm, then (the water level is
        # still above the line) why it is resolved anyway. Declining keeps it open.
        dialogs: list[tuple[str, str]] = []

        def decline(d: Dialog) -> None:
            dialogs.append((d.type, d.message))
            d.dismiss()

        page.once("dialog", decline)
        card.locator('[data-action="resolve"]').click()
        expect(card).to_have_attribute("data-state", "on_site")
        answers = iter(["", "saluran sudah dibersihkan, air turun"])

        def answer(d: Dialog) -> None:
            dialogs.append((d.type, d.message))
            d.accept(next(answers))

        page.on("dialog", answer)
        card.locator('[data-action="resolve"]').click()
        expect(card).to_have_count(0)
        expect(cards).to_have_count(1)
        page.screenshot(path=str(tmp_path / "crew.png"), full_page=True)
    detail = world.ctx.store.get(new.id)
    assert detail is not None and detail.incident.workflow_state is WorkflowState.RESOLVED
    moves = [(e.to_state, e.actor, e.reason) for e in detail.timeline if e.kind.value == "workflow"]
    assert moves[1:] == [
        ("acknowledged", "crew:barat", "acknowledged"),
        ("dispatched", "crew:barat", "dispatched bpbd-barat-pagi"),
        ("on_site", "crew:barat", "crew on site"),
        (
            "resolved",
            "crew:barat",
            "receded: air surut, saluran dibersihkan; resolved while the condition is "
            "still active: saluran sudah dibersihkan, air turun",
        ),
    ]
    assert [t for t, _ in dialogs] == ["confirm", "confirm", "prompt"]
    assert dialogs[-1][1].startswith("Data sensor masih menunjukkan kondisi aktif")
    assert (tmp_path / "crew.png").stat().st_size > 5_000


def test_ops_page_draws_the_city(world: World, browser: Browser, tmp_path: Path) -> None:
    page = browser.new_page(viewport={"width": 1366, "height": 900})
    # A kecamatan-wide flood colours every kelurahan of Karawaci (kel-cimone: siaga of
    # its own, kel-bugel: waspada road damage, both lifted to awas by it).
    at = datetime.now(UTC) - timedelta(minutes=5)
    wide = world.ctx.store.apply(
        flood("kec-karawaci", at, Severity.AWAS, rule="flood-widespread")
    ).incident
    assert wide is not None and wide.zone_level == "kecamatan"
    with serve(create_app(world.ctx)) as base:
        _login(page, base, "/app/ops", "ops")
        expect(page.locator("body")).to_have_attribute("data-ready", "1", timeout=15_000)
        expect(page.locator("#login")).to_be_hidden()
        zones = page.locator("path.zone")
        expect(zones).to_have_count(104)
        expect(page.locator('path[data-zone="kel-paninggilan"]')).to_have_attribute(
            "fill", "#dc2626"
        )
        for kelurahan in ("kel-cimone", "kel-bugel", "kel-karawaci-baru"):
            expect(page.locator(f'path[data-zone="{kelurahan}"]')).to_have_attribute(
                "fill", "#dc2626"
            )
        expect(page.locator('path[data-zone="kel-sukasari"]')).to_have_attribute("fill", "#e5e7eb")
        # Most severe first, then oldest; places and states in Bahasa Indonesia.
        rows = page.locator("#incidents tr")
        expect(rows).to_have_count(4)
        order = [rows.nth(n).get_attribute("data-incident") for n in range(4)]
        assert order == [str(i.id) for i in (world.ciledug, wide, world.karawaci, world.road)]
        expect(rows.nth(1)).to_contain_text("Seluruh Kec. Karawaci")
        expect(rows.nth(2)).to_contain_text("Cimone, Kec. Karawaci")
        expect(rows.nth(0)).to_contain_text("Baru")
        # Filters: hazard, then kecamatan.
        page.select_option("#f-hazard", "road_damage")
        expect(rows).to_have_count(1)
        page.select_option("#f-hazard", "")
        page.select_option("#f-kecamatan", "kec-ciledug")
        expect(rows).to_have_count(1)
        expect(page.locator('path[data-zone="kel-cimone"]')).to_have_attribute("fill", "#e5e7eb")
        page.select_option("#f-kecamatan", "")
        # The city's name and clock come from config/city.yaml (Asia/Jakarta: WIB).
        expect(page.locator("header strong")).to_have_text("Pantau · Pusat Komando Kota Tangerang")
        shown = page.evaluate("localTime('2026-11-30T20:00:00Z')")
        assert shown.startswith("1/12/2026") and "03.00" in shown, shown
        # A resolution elsewhere recolours the map live.
        world.ctx.store.transition(
            world.ciledug.id, WorkflowState.RESOLVED, "operator:ops", "fixed: ok"
        )
        expect(page.locator('path[data-zone="kel-paninggilan"]')).to_have_attribute(
            "fill", "#e5e7eb", timeout=10_000
        )
        expect(rows).to_have_count(3)
        page.screenshot(path=str(tmp_path / "ops.png"), full_page=True)
    assert (tmp_path / "ops.png").stat().st_size > 10_000


def test_ops_incident_panel_and_actions(world: World, browser: Browser, tmp_path: Path) -> None:
    """The incident's own address opens its panel; the operator acts from it."""
    page = browser.new_page(viewport={"width": 1366, "height": 900})
    k = world.karawaci.id
    with serve(create_app(world.ctx)) as base:
        _login(page, base, f"/app/ops/incidents/{k}", "ops")
        panel = page.locator("#detail")
        expect(panel).to_have_attribute("data-incident", str(k), timeout=15_000)
        expect(panel.locator("#detail-title")).to_contain_text("Banjir · Siaga")
        expect(panel.locator('[data-field="place"]')).to_contain_text("Kel. Cimone, Kec. Karawaci")
        expect(panel.locator('[data-field="ack-due"]')).to_have_class("late")
        expect(panel.locator('[data-field="ack-due"]')).to_contain_text("WIB")
        expect(panel.locator('[data-field="crew"]')).to_have_text("Kru: belum ada")
        expect(panel.locator(".instruction")).to_contain_text("Hindari genangan")
        grafana = panel.locator(".links a").first
        expect(grafana).to_have_attribute(
            "href",
            "http://localhost:3000/d/pantau-city-overview/city-overview"
            "?var-kecamatan=kec-karawaci&var-kelurahan=kel-cimone",
        )
        # Acknowledge, assign a crew, reassign, add a note, escalate: each by the API.
        panel.locator('[data-action="ack"]').click()
        expect(panel).to_have_attribute("data-state", "acknowledged")
        page.select_option("#assign-crew", "bpbd-barat-pagi")
        panel.locator('[data-action="assign"]').click()
        expect(panel.locator('[data-field="crew"]')).to_contain_text("bpbd-barat-pagi (ditugaskan)")
        page.select_option("#assign-crew", "bpbd-barat-siang")
        # A live event re-renders the panel: the operator's pick, the note being typed and
        # the focus survive it.
        note = panel.locator("#note")
        note.press_sequentially("pompa portabel")
        page.evaluate("OpsDetail.refresh()")
        expect(note).to_be_focused()
        expect(panel.locator("#assign-crew")).to_have_value("bpbd-barat-siang")
        page.keyboard.type(" dikirim dari gudang")
        panel.locator('[data-action="assign"]').click()
        crew = panel.locator('[data-field="crew"]')
        expect(crew).to_contain_text("bpbd-barat-siang (ditugaskan)")
        expect(note).to_have_value("pompa portabel dikirim dari gudang")
        panel.locator('[data-action="note"]').click()
        expect(panel.locator('ol.timeline li[data-kind="note"]')).to_contain_text(
            "pompa portabel dikirim dari gudang"
        )
        panel.locator('[data-action="escalate"]').click()
        expect(panel.locator("ol.timeline")).to_contain_text("dieskalasi ke supervisor dinas")
        expect(page.locator(f'#incidents tr[data-incident="{k}"]')).to_contain_text("Diterima")
        page.screenshot(path=str(tmp_path / "ops-detail.png"), full_page=True)
        # Closing the panel goes back to /app/ops; the browser's back button reopens it.
        panel.locator('[data-action="close"]').click()
        expect(panel).to_be_hidden()
        assert page.url.endswith("/app/ops")
        page.go_back()
        expect(panel).to_be_visible()
        # Another incident opens from the list, at its own address.
        page.locator(f'#incidents tr[data-incident="{world.road.id}"] a').click()
        expect(panel).to_have_attribute("data-incident", str(world.road.id))
        assert page.url.endswith(f"/app/ops/incidents/{world.road.id}")
    detail = world.ctx.store.get(k)
    assert detail is not None
    kinds = [(e.kind.value, e.actor) for e in detail.timeline if e.actor == "operator:ops"]
    assert kinds == [
        ("workflow", "operator:ops"),
        ("assignment", "operator:ops"),
        ("assignment", "operator:ops"),
        ("note", "operator:ops"),
        ("sla", "operator:ops"),
    ]
    assert detail.incident.assignee_crew_id == "bpbd-barat-siang"
    assert detail.incident.escalation_level == 1


def test_ops_page_verifies_and_rejects_citizen_reports(world: World, browser: Browser) -> None:
    page = browser.new_page(viewport={"width": 1366, "height": 900})
    at = datetime.now(UTC) - timedelta(minutes=2)
    reported = [
        world.ctx.store.apply(flood(z, at, Severity.WASPADA, rule="citizen-report")).incident
        for z in ("kel-sukasari", "kel-babakan")
    ]
    assert all(reported)
    with serve(create_app(world.ctx)) as base:
        _login(page, base, "/app/ops", "ops")
        expect(page.locator("body")).to_have_attribute("data-ready", "1", timeout=15_000)
        panel = page.locator("#detail")
        verify, reject = (r.id for r in reported if r is not None)
        page.locator(f'#incidents tr[data-incident="{verify}"] a').click()
        expect(panel).to_contain_text("laporan warga, belum diverifikasi")
        panel.locator('[data-action="verify"]').click()
        expect(panel).to_have_attribute("data-state", "acknowledged")
        page.locator(f'#incidents tr[data-incident="{reject}"] a').click()
        expect(panel).to_have_attribute("data-incident", str(reject))
        page.once("dialog", lambda d: d.accept())
        panel.locator('[data-action="reject"]').click()
        expect(panel).to_have_attribute("data-state", "resolved")
        expect(page.locator(f'#incidents tr[data-incident="{reject}"]')).to_have_count(0)
    rejected = world.ctx.store.get(reject)
    assert rejected is not None
    assert rejected.timeline[-1].reason == "false_alarm: laporan ditolak operator"


def test_the_crew_page_says_when_and_why_a_login_is_delayed(
    world: World, browser: Browser, tmp_path: Path
) -> None:
    page = browser.new_page(viewport={"width": 390, "height": 844})
    violations: list[str] = []
    page.on(
        "console",
        lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None,
    )
    free = world.ctx.settings.api.login_failures_free
    with serve(create_app(world.ctx)) as base:
        page.goto(f"{base}/app/crew")
        page.fill("#username", "barat")
        for _ in range(free):
            page.fill("#password", "salah-tebak")
            page.press("#password", "Enter")
            expect(page.locator("#login-error")).to_have_text(
                "Nama pengguna atau kata sandi salah."
            )
            page.evaluate("document.getElementById('login-error').textContent = ''")
        page.fill("#password", PASSWORD)
        page.press("#password", "Enter")
        error = page.locator("#login-error")
        expect(error).to_contain_text("Terlalu banyak kata sandi salah untuk akun ini")
        expect(error).to_contain_text("coba lagi pukul")
        expect(error).to_contain_text("Akun Anda tidak dikunci")
        expect(page.locator("#login-button")).to_be_disabled()
        page.screenshot(path=str(tmp_path / "crew-delayed.png"), full_page=True)
    assert violations == []
