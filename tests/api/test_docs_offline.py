"""/docs and /redoc render in real headless Chromium with every request outside
Pantau blocked: their assets come from Pantau (api.docs), not from a CDN."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Route, expect, sync_playwright

from api.app import create_app
from tests.api.conftest import World
from tests.api.server import serve

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield b
        b.close()


def test_docs_and_redoc_work_without_internet(world: World, browser: Browser) -> None:
    page = browser.new_page(viewport={"width": 1366, "height": 900})
    outside: list[str] = []
    refused: list[str] = []
    page.on("console", lambda m: refused.append(m.text) if m.type == "error" else None)
    with serve(create_app(world.ctx)) as base:
        ours = urlsplit(base).netloc

        def only_pantau(route: Route) -> None:
            url = route.request.url
            if urlsplit(url).netloc == ours or url.startswith(("data:", "blob:")):
                route.continue_()
            else:
                outside.append(url)
                route.abort()

        page.route("**/*", only_pantau)
        page.goto(f"{base}/docs")
        expect(page.locator(".swagger-ui .opblock-summary").first).to_be_visible(timeout=20_000)
        expect(page.locator(".swagger-ui")).to_contain_text("/incidents/{incident_id}/escalate")
        page.goto(f"{base}/redoc")
        heading = page.locator("h2", has_text="Add a note to the incident's timeline")
        expect(heading).to_be_visible(timeout=20_000)
        for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js"):
            r = page.request.get(f"{base}/docs/assets/{asset}")
            assert r.ok and len(r.body()) > 10_000, asset
    assert outside == []
    # The one thing the CSP refuses is ReDoc's logo on its CDN (never requested).
    assert all("cdn.redoc.ly" in m for m in refused if "Content Security Policy" in m), refused
