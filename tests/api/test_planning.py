"""Issue 24, item 4: flood hotspots for planning. Both storm scenarios run through the
default rules into the incident store; /planning/flood-hotspots ranks first a kelurahan
the simulator floods most (testkit.flood_truth, the oracle's noise-free instruments),
and its CSV, GeoJSON, PNG map and season report (rendered in Chromium) agree."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import expect, sync_playwright

from api.app import create_app
from api.context import ApiContext, build_context
from pantau.clock import ManualClock
from pantau.devices import default_config_dir
from pantau.incidents import ConditionChange, Hazard
from rules.engine import RuleEngine
from rules.rulespec import load_rules
from simulators.messages import iter_messages
from simulators.scenario import find_scenario, load_scenario
from testkit.browser import artifacts_dir
from testkit.flood_truth import KelurahanFlood, flood_truth
from tests.api.conftest import CITY, ZONES, api_settings
from tests.api.server import serve

pytestmark = pytest.mark.integration
STATIONS = frozenset(d.id for d in CITY.devices.values() if d.kind == "water_level_station")
TIE_H = 5 / 60  # truth hours closer than this are a tie (readings come minutes apart)
DARKEST_BGR = (21, 15, 165)  # #a50f15, the map's top class


def _flood_changes(name: str) -> tuple[list[ConditionChange], datetime, datetime]:
    """The storm's water-level readings through the default rules (the flood rules read
    only water-level stations; the rest of the fleet would only slow the test)."""
    rules = load_rules(default_config_dir() / "rules.yaml", CITY)
    scenario = load_scenario(find_scenario(name), CITY)
    end = scenario.start + timedelta(hours=2)
    engine = RuleEngine(CITY, rules, ManualClock(datetime(2000, 1, 1, tzinfo=UTC)))
    changes: list[ConditionChange] = []
    for message in iter_messages(CITY, scenario):
        if message.sim_time >= end:
            break
        changes += engine.ingest(r for r in message.readings if r.device_id in STATIONS)
    changes += engine.advance_watermark(end)
    return [c for c in changes if c.key.hazard is Hazard.FLOOD], scenario.start, end


@dataclass
class Storm:
    name: str
    ctx: ApiContext
    client: TestClient
    start: datetime
    end: datetime
    truth: dict[str, KelurahanFlood]
    headers: dict[str, str]

    def query(self, fmt: str = "json") -> dict[str, str]:
        return {"from": self.start.isoformat(), "to": self.end.isoformat(), "format": fmt}


@pytest.fixture(scope="module", params=["storm-karawaci", "storm-ciledug"])
def storm(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Storm]:
    name: str = request.param
    changes, start, end = _flood_changes(name)
    clock = ManualClock(start)
    db = tmp_path_factory.mktemp(name) / "pantau.db"
    ctx = build_context(
        api_settings(f"sqlite:///{db}"), clock=clock, city=CITY, zones=ZONES, use_influx=False
    )
    for change in changes:
        clock.set(max(clock.now(), change.at))
        ctx.store.apply(change)
    clock.set(end)
    # A service key (Bappeda's GIS, say): the clock is the storm's, so a login token
    # issued now would carry a time long past.
    key = ctx.accounts.create_api_key("bappeda-gis")
    scenario = load_scenario(find_scenario(name), CITY)
    truth = flood_truth(CITY, scenario, end)
    with TestClient(create_app(ctx)) as client:
        yield Storm(name, ctx, client, start, end, truth, {"X-API-Key": key})
    ctx.close()


def test_the_most_flooded_kelurahan_ranks_first(storm: Storm) -> None:
    r = storm.client.get("/planning/flood-hotspots", params=storm.query(), headers=storm.headers)
    assert r.status_code == 200, r.text
    ranked = r.json()["data"]
    assert len(ranked) == 104 and [h["rank"] for h in ranked] == list(range(1, 105))
    most = max(f.hours for f in storm.truth.values())
    first = ranked[0]
    # First: a kelurahan the simulator floods most (ties within a few minutes of water).
    assert storm.truth[first["kelurahan_id"]].hours >= most - TIE_H, (first, most)
    # And the simulator's most flooded all rank near the top.
    top_truth = [k for k, f in storm.truth.items() if f.hours >= most - TIE_H]
    ours = [h["kelurahan_id"] for h in ranked[:5]]
    assert set(top_truth) <= set(ours), (top_truth, ours)
    # A kelurahan whose drains never reached Siaga II (a fast rise may still have
    # warned there) ranks below every one the simulator flooded most; one without a
    # flood incident has no flood hours.
    dry = [h for h in ranked if h["kelurahan_id"] not in storm.truth]
    assert dry and min(h["rank"] for h in dry) > max(
        h["rank"] for h in ranked if h["kelurahan_id"] in top_truth
    )
    assert all(h["flood_hours"] == 0 for h in ranked if h["incidents"] == 0)
    # Peak depth: the station's highest level, as the simulator had it (noise aside).
    assert abs(first["peak_depth_cm"] - storm.truth[first["kelurahan_id"]].peak_cm) < 5
    assert first["recurrence_days"] == 1 and first["incidents"] >= 1


def test_exports_csv_geojson_png(storm: Storm) -> None:
    c, h = storm.client, storm.headers
    ranked = c.get("/planning/flood-hotspots", params=storm.query(), headers=h).json()["data"]
    text = c.get("/planning/flood-hotspots", params=storm.query("csv"), headers=h).text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["kelurahan_id"] for r in rows] == [x["kelurahan_id"] for x in ranked]
    assert float(rows[0]["flood_hours"]) == ranked[0]["flood_hours"]
    geo = c.get("/planning/flood-hotspots", params=storm.query("geojson"), headers=h)
    assert geo.headers["content-type"].startswith("application/geo+json")
    features = geo.json()["features"]
    assert len(features) == 104
    assert all(f["geometry"]["type"] in {"Polygon", "MultiPolygon"} for f in features)
    assert features[0]["properties"]["kelurahan_id"] == ranked[0]["kelurahan_id"]
    png = c.get("/planning/flood-hotspots", params=storm.query("png"), headers=h)
    assert png.headers["content-type"] == "image/png"
    img = cv2.imdecode(np.frombuffer(png.content, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None and img.shape[1] >= 1200
    # The most flooded kelurahan is drawn in the darkest class: its colour covers a
    # real share of the map.
    dark = np.all(img == np.array(DARKEST_BGR, dtype=np.uint8), axis=2).sum()
    assert dark > 200, dark
    artifacts = artifacts_dir("planning")
    (artifacts / f"{storm.name}-hotspots.png").write_bytes(png.content)
    # Crews do not get planning data; nobody without a login does.
    assert c.get("/planning/flood-hotspots", params=storm.query()).status_code == 401
    bad = c.get("/planning/flood-hotspots", params={**storm.query(), "to": "2020-01-01"}, headers=h)
    assert bad.status_code == 422


def test_season_report_in_chromium(storm: Storm, tmp_path: Path) -> None:
    ranked = storm.client.get(
        "/planning/flood-hotspots", params=storm.query(), headers=storm.headers
    ).json()["data"]
    flooded = sum(1 for x in ranked if x["flood_hours"] > 0 or x["incidents"] > 0)
    out = artifacts_dir("planning") / f"{storm.name}-season-report.png"
    with serve(create_app(storm.ctx)) as base, sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path="/usr/bin/chromium", headless=True, args=["--no-sandbox"]
        )
        page = browser.new_context(
            viewport={"width": 1100, "height": 900}, extra_http_headers=storm.headers
        ).new_page()
        # A season is whole days (the city's calendar): the storm's day.
        day = storm.start.astimezone(CITY.facts.time_zone).date()
        page.goto(f"{base}/planning/season-report?from={day}&to={day + timedelta(days=1)}")
        expect(page.locator("h1")).to_contain_text("Laporan musim banjir")
        expect(page.locator("#ranking tbody tr").first).to_contain_text(ranked[0]["kelurahan"])
        expect(page.locator("#flooded")).to_have_text(f"{flooded} of 104")
        # The map is really drawn (decoded, not a broken image) and styled (the sheet loaded).
        assert page.evaluate("document.querySelector('#map').naturalWidth") >= 1200
        assert page.evaluate("getComputedStyle(document.body).maxWidth") != "none"
        page.screenshot(path=str(out), full_page=True)
        browser.close()
    assert out.stat().st_size > 20_000
