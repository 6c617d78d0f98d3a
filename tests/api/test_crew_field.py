"""The crew page as a field tool, in real headless Chromium: installable (manifest,
service worker), a system notification for a new alert while the page is in the
background (permission granted in the test, the notification read back from the
service worker's registration), and with the network cut (context.set_offline) the
last incidents stay readable and an action taken is sent once the network returns."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from api.app import create_app
from pantau.incidents import Severity, WorkflowState
from tests.api.conftest import PASSWORD, World, flood
from tests.api.server import serve

CHROMIUM = "/usr/bin/chromium"
NOTIFICATIONS = (
    "navigator.serviceWorker.ready.then(r => r.getNotifications()).then(ns => ns.map("
    "n => ({title: n.title, body: n.body, tag: n.tag, data: n.data, vibrate: n.vibrate,"
    " silent: n.silent})))"
)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield b
        b.close()


def _until(page: Page, js: str, timeout_s: float = 15.0) -> None:
    """Poll `js` (page.wait_for_function evaluates a string, which the CSP refuses)."""
    deadline = time.monotonic() + timeout_s
    while not page.evaluate(js):
        assert time.monotonic() < deadline, f"not true within {timeout_s} s: {js}"
        page.wait_for_timeout(200)


def _login(page: Page, base: str) -> None:
    page.goto(f"{base}/app/crew")
    page.fill("#username", "barat")
    page.fill("#password", PASSWORD)
    page.press("#password", "Enter")
    expect(page.locator("body")).to_have_attribute("data-ready", "1", timeout=15_000)


def test_installable_and_notifies_in_the_background(world: World, browser: Browser) -> None:
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, permissions=["notifications"]
    )
    page = context.new_page()
    with serve(create_app(world.ctx)) as base:
        context.grant_permissions(["notifications"], origin=base)
        _login(page, base)
        manifest = json.loads(page.request.get(f"{base}/app/crew.webmanifest").text())
        assert manifest["start_url"] == "/app/crew" and manifest["display"] == "standalone"
        assert page.locator('link[rel="manifest"]').get_attribute("href") == "/app/crew.webmanifest"
        assert page.evaluate("navigator.serviceWorker.ready.then(r => r.active.scriptURL)") == (
            f"{base}/app/crew-sw.js"
        )
        assert page.evaluate("Notification.permission") == "granted"
        # The page goes to the background: another tab in front. (Playwright makes
        # every page believe it has focus; that emulation is turned off for this one,
        # and headless Chromium keeps every tab "visible", so focus is what moves.)
        context.new_cdp_session(page).send("Emulation.setFocusEmulationEnabled", {"enabled": False})
        other = context.new_page()
        other.goto(f"{base}/app/static/icon.svg")
        other.bring_to_front()
        _until(page, "!document.hasFocus() || document.visibilityState !== 'visible'")
        at = datetime.now(UTC) - timedelta(minutes=1)
        change = flood("kel-bugel", at, Severity.AWAS, device="wl-bugel-010")
        new = world.ctx.store.apply(change).incident
        assert new is not None
        _until(page, f"{NOTIFICATIONS}.then(ns => ns.some(n => n.tag === 'insiden-{new.id}'))")
        shown: list[dict[str, Any]] = page.evaluate(NOTIFICATIONS)
        (alert,) = [n for n in shown if n["tag"] == f"insiden-{new.id}"]
        assert alert["title"] == "Awas: Banjir · Bugel"
        assert alert["body"].startswith("Terima sebelum") and "WIB" in alert["body"]
        assert alert["vibrate"] == [400, 150, 400, 150, 400] and alert["silent"] is False
        assert alert["data"] == {"id": new.id, "url": f"/app/crew#insiden-{new.id}"}
        # A tap opens the page at the notification's address: its card comes up.
        other.goto(f"{base}{alert['data']['url']}")
        card = other.locator(f"#insiden-{new.id}")
        expect(card).to_have_class("card flash", timeout=15_000)
        expect(card).to_be_focused()
    context.close()


def test_offline_reading_and_actions_sent_once(world: World, browser: Browser) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    k = world.karawaci.id
    with serve(create_app(world.ctx)) as base:
        _login(page, base)
        page.evaluate("navigator.serviceWorker.ready")
        expect(page.locator(f"#insiden-{k}")).to_be_visible()
        _until(page, "navigator.serviceWorker.controller !== null")
        context.set_offline(True)
        # With no signal the page still opens, with the last incidents it read.
        page.reload()
        card = page.locator(f"#insiden-{k}")
        expect(card).to_be_visible(timeout=15_000)
        expect(card.locator('[data-field="place"]')).to_contain_text("Kel. Cimone")
        expect(page.locator("#offline")).to_be_visible()
        card.locator('[data-action="ack"]').click()
        expect(card.locator('[data-field="pending"]')).to_have_text("1 tindakan menunggu sinyal")
        expect(page.locator("#queued")).to_contain_text("1 tindakan menunggu sinyal")
        before = world.ctx.store.get(k)
        assert before is not None and before.incident.workflow_state is WorkflowState.OPEN
        context.set_offline(False)
        expect(page.locator("#queued")).to_be_hidden(timeout=15_000)
        expect(card).to_have_attribute("data-state", "acknowledged", timeout=15_000)
        expect(page.locator("#offline")).to_be_hidden()
        assert page.evaluate("localStorage.getItem('pantau-crew-outbox')") == "[]"
    after = world.ctx.store.get(k)
    assert after is not None
    moves = [e.to_state for e in after.timeline if e.kind.value == "workflow"]
    assert moves == ["open", "acknowledged"]
    context.close()
