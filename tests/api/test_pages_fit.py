"""Both pages at a phone's size (390x844) and a desk's (1366x900) in real headless
Chromium: nothing falls off the screen, an automated accessibility check (axe-core,
from npm) finds no serious or critical violation, and no English state, hazard or
resolution code shows. Screenshots of each page at each size are kept in the
directory the test prints (pytest's tmp dir, the last three runs kept)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from api.app import create_app
from pantau.incidents import Hazard, WorkflowState
from testkit.browser import axe_script
from tests.api.conftest import PASSWORD, World
from tests.api.server import serve

CHROMIUM = "/usr/bin/chromium"
SIZES = {"phone": (390, 844), "desk": (1366, 900)}
MIN_MAP_WIDTH = {"phone": 350, "desk": 560}
RESOLUTION_CODES = ("fixed", "receded", "false_alarm", "duplicate", "referred")
CODES = re.compile(
    r"\b("
    + "|".join(sorted({*WorkflowState, *Hazard, *RESOLUTION_CODES}, key=len, reverse=True))
    + r")\b"
)


@pytest.fixture(scope="session")
def axe_js() -> str:
    """axe-core from npm, installed once into the test cache (testkit.browser)."""
    return axe_script().read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def artefacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("page-screenshots")
    print(f"\npage screenshots: {folder}")
    return folder


def _check(page: Page, axe: str, name: str, artefacts: Path) -> None:
    viewport = page.viewport_size
    assert viewport is not None
    width = viewport["width"]
    page.screenshot(path=str(artefacts / f"{name}.png"), full_page=True)
    # Nothing wider than the screen (a phone scrolls down, never sideways).
    scroll = page.evaluate("document.documentElement.scrollWidth")
    assert scroll <= width, f"{name}: page is {scroll}px wide on a {width}px screen"
    shown = page.evaluate("document.body.innerText")
    found = sorted(set(CODES.findall(shown)))
    assert found == [], f"{name}: English codes in the page: {found}"
    page.add_script_tag(content=axe)
    result = page.evaluate(
        "axe.run(document, {resultTypes: ['violations']}).then(r => r.violations.map("
        "v => ({id: v.id, impact: v.impact, nodes: v.nodes.map(n => n.target.join(' '))})))"
    )
    serious = [v for v in result if v["impact"] in ("serious", "critical")]
    assert serious == [], f"{name}: {serious}"


@pytest.mark.parametrize("size", SIZES)
def test_pages_fit_and_pass_axe(
    world: World, browser: Browser, axe_js: str, artefacts: Path, size: str
) -> None:
    width, height = SIZES[size]
    # bypass_csp: only to inject axe; the pages' own scripts are tested under the CSP
    # in test_pages.py.
    context = browser.new_context(viewport={"width": width, "height": height}, bypass_csp=True)
    page = context.new_page()
    with serve(create_app(world.ctx)) as base:
        page.goto(f"{base}/app/ops")
        button = page.locator("#login button").bounding_box()
        assert button is not None and button["x"] + button["width"] <= width
        _check(page, axe_js, f"ops-login-{size}", artefacts)
        page.fill("#username", "ops")
        page.fill("#password", PASSWORD)
        page.press("#password", "Enter")
        expect(page.locator("body")).to_have_attribute("data-ready", "1", timeout=15_000)
        expect(page.locator("#incidents tr")).to_have_count(3)
        box = page.locator("#map").bounding_box()
        # Not a thumbnail: the map fills a phone's width, and a good part of a desk's.
        assert box is not None and box["width"] >= MIN_MAP_WIDTH[size], box
        _check(page, axe_js, f"ops-{size}", artefacts)
        page.locator(f'#incidents tr[data-incident="{world.karawaci.id}"] a').click()
        expect(page.locator("#detail")).to_have_attribute("data-incident", str(world.karawaci.id))
        _check(page, axe_js, f"ops-incident-{size}", artefacts)

        crew = context.new_page()
        crew.goto(f"{base}/app/crew")
        crew.fill("#username", "barat")
        crew.fill("#password", PASSWORD)
        crew.press("#password", "Enter")
        expect(crew.locator("article.card")).to_have_count(1, timeout=15_000)
        expect(crew.locator('[data-field="place"]')).to_have_count(1)
        _check(crew, axe_js, f"crew-{size}", artefacts)
    context.close()
    assert len(list(artefacts.glob(f"*-{size}.png"))) == 4
