"""The dashboards as Grafana will take them: a layout without overlaps and a wall view
that fits a 1080p screen, only units the pinned Grafana knows, the city's time zone,
links that keep the zone and time range, incidents drawn on every time series, the
grafana-foundation-sdk dashboard model loading every dashboard, and Grafana's own
transformations and display (@grafana/data of the pinned version, from npm) showing a
silent station or pump as "Tidak ada data" in grey, never as healthy.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml
from grafana_foundation_sdk.cog import plugins
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as sdk

from dashboards import city_overview, labels, siaga
from dashboards.build import rendered
from dashboards.catalog import build_all
from pantau.city import City
from pantau.influx import level_table
from pantau.settings import RetentionSettings
from testkit.grafana import ROOT, Frame, GrafanaData, pinned_grafana_version

GREY = labels.NO_DATA_COLOUR


@pytest.fixture(scope="module")
def models(city: City) -> dict[str, dict[str, Any]]:
    return {name: json.loads(text) for name, text in rendered(city).items()}


@pytest.fixture(scope="module")
def grafana() -> GrafanaData:
    data = GrafanaData()
    data.install()  # npm, once per version, into the cache directory
    return data


def _cells(model: dict[str, Any]) -> Iterator[tuple[str, int, int]]:
    for panel in model["panels"]:
        g = panel["gridPos"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                yield panel["title"], x, y


def test_no_panel_overlaps_another_or_leaves_the_grid(models: dict[str, dict[str, Any]]) -> None:
    for name, model in models.items():
        taken: dict[tuple[int, int], str] = {}
        for title, x, y in _cells(model):
            assert 0 <= x < 24, (name, title)
            assert (x, y) not in taken, f"{name}: {title!r} overlaps {taken[(x, y)]!r}"
            taken[(x, y)] = title


def test_the_wall_fits_a_1080p_screen_with_every_panel_placed(
    city: City, models: dict[str, dict[str, Any]]
) -> None:
    wall = build_all(city)["city-overview"]
    assert all(p.x is not None and p.y is not None for p in wall.panels)
    bottom = max(
        p["gridPos"]["y"] + p["gridPos"]["h"] for p in models["city-overview.json"]["panels"]
    )
    assert bottom <= city_overview.WALL_ROWS == 26
    # the screen is full: no column left empty at the top
    assert {x for _, x, y in _cells(models["city-overview.json"]) if y == 0} == set(range(24))


def _units(model: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for panel in model["panels"]:
        unit = panel["fieldConfig"]["defaults"].get("unit")
        if unit:
            yield panel["title"], unit
        for override in panel["fieldConfig"]["overrides"]:
            for prop in override["properties"]:
                if prop["id"] == "unit":
                    yield panel["title"], prop["value"]


def test_every_unit_is_one_the_pinned_grafana_knows(
    models: dict[str, dict[str, Any]], grafana: GrafanaData
) -> None:
    known = grafana.units()
    assert "lengthcm" in known and len(known) > 200
    used = {(name, title, unit) for name, m in models.items() for title, unit in _units(m)}
    assert used
    for name, title, unit in used:
        custom = re.fullmatch(r"(suffix|prefix):\S.*", unit)  # Grafana adds the space
        assert unit in known or custom, f"{name}: {title!r} has unit {unit!r}"


def test_grafana_in_compose_is_the_version_the_tests_run() -> None:
    assert GrafanaData().version == pinned_grafana_version()
    major = int(pinned_grafana_version().split(".")[0])
    assert major >= 12  # 11.3 lacked lengthcm and showed "145 lengthcm"


def test_time_zone_links_and_annotations(city: City, models: dict[str, dict[str, Any]]) -> None:
    for name, model in models.items():
        assert model["timezone"] == city.facts.time_zone.key == "Asia/Jakarta", name
        (link,) = model["links"]
        assert link["includeVars"] and link["keepTime"], name
        if any(p["type"] in {"timeseries", "state-timeline"} for p in model["panels"]):
            (incidents,) = model["annotations"]["list"]
            assert "FROM incidents" in incidents["target"]["rawSql"], name
            assert "$__timeTo()" in incidents["target"]["rawSql"]


def _links(model: dict[str, Any]) -> list[str]:
    urls = []
    for panel in model["panels"]:
        for link in panel["fieldConfig"]["defaults"].get("links", []):
            urls.append(link["url"])
        for override in panel["fieldConfig"]["overrides"]:
            for prop in override["properties"]:
                if prop["id"] == "links":
                    urls += [link["url"] for link in prop["value"]]
    return urls


def test_the_wall_links_to_station_zone_and_incident(models: dict[str, dict[str, Any]]) -> None:
    urls = _links(models["city-overview.json"])
    assert "${api}/app/ops/incidents/${__data.fields.id}" in urls
    station = [u for u in urls if u.startswith("/d/pantau-drainage/")]
    zone = [u for u in urls if u.startswith("/d/pantau-city-overview/")]
    assert station and zone
    for url in station + zone:
        assert "${__url_time_range}" in url
    assert all("${kecamatan:queryparam}" in u for u in station)


def test_the_sdk_model_loads_every_dashboard(models: dict[str, dict[str, Any]]) -> None:
    """grafana-foundation-sdk (Grafana's own typed model) parses each dashboard, each
    panel's options into its plugin's type, and gives back what matters unchanged."""
    plugins.register_default_plugins()
    for name, model in models.items():
        loaded = sdk.Dashboard.from_json(model)
        assert loaded.panels is not None and len(loaded.panels) == len(model["panels"])
        for panel in loaded.panels:
            assert isinstance(panel, sdk.Panel)
            assert not isinstance(panel.options, dict), (name, panel.title, panel.type_val)
        back = json.loads(json.dumps(loaded, cls=JSONEncoder))
        assert back["timezone"] == model["timezone"]
        assert len(back["annotations"]["list"]) == len(model["annotations"]["list"])
        assert [v["name"] for v in back["templating"]["list"]] == [
            v["name"] for v in model["templating"]["list"]
        ]
        for mine, theirs in zip(model["panels"], back["panels"], strict=True):
            assert theirs["gridPos"] == mine["gridPos"], (name, mine["title"])
            assert [t["refId"] for t in theirs["targets"]] == [t["refId"] for t in mine["targets"]]
            assert theirs.get("transformations", []) == mine.get("transformations", [])
            assert theirs.get("interval") == mine.get("interval")
            assert theirs["fieldConfig"]["overrides"] == mine["fieldConfig"]["overrides"]
            assert theirs["fieldConfig"]["defaults"].get("unit") == mine["fieldConfig"][
                "defaults"
            ].get("unit")


def _panel(models: dict[str, dict[str, Any]], prefix: str) -> dict[str, Any]:
    return next(p for p in models["city-overview.json"]["panels"] if p["title"].startswith(prefix))


def _field_config(panel: dict[str, Any], field: str) -> dict[str, Any]:
    override = next(
        o for o in panel["fieldConfig"]["overrides"] if o["matcher"]["options"] == field
    )
    props = {p["id"]: p["value"] for p in override["properties"]}
    return {k: props[k] for k in ("thresholds", "mappings") if k in props}


def test_a_silent_station_is_grey_and_sorts_last_never_green(
    models: dict[str, dict[str, Any]], grafana: GrafanaData
) -> None:
    """Registry frame A (levels 100 / 150 cm and 200 / 250 cm), readings frame B: one
    station at 160 cm (Awas), one at 120 cm on a 200 cm Siaga II (Normal), one silent."""
    panel = _panel(models, "Stasiun vs Siaga")
    registry = Frame(
        "A",
        {
            "device": ["wl-a", "wl-b", "wl-c"],
            "name": ["A", "B", "C"],
            "kecamatan": ["kec-x"] * 3,
            "kecamatan_name": ["X"] * 3,
            "lat": [-6.1] * 3,
            "lon": [106.6] * 3,
            "alert_cm": [100.0, 200.0, 100.0],
            "danger_cm": [150.0, 250.0, 150.0],
            "inv_band": [1 / 50] * 3,
            "offset": [-2.0, -4.0, -2.0],
        },
    )
    readings = Frame(
        "B", {"Time": [1, 1], "device": ["wl-b", "wl-a"], "level_cm": [120.0, 160.0], "n": [10, 9]}
    )
    (table,) = grafana.transform([registry, readings], panel["transformations"])
    assert table.ref_id == siaga.JOINED
    assert table.fields["device"] == ["wl-a", "wl-b", "wl-c"]  # worst first, silent last
    assert table.fields["level_cm"] == [160.0, 120.0, None]
    assert "inv_band" not in table.fields and "gap" not in table.fields
    shown = grafana.display(_field_config(panel, "siaga"), table.fields["siaga"])
    assert [s["text"] for s in shown] == ["Awas (Siaga I)", "Normal", labels.NO_DATA_TEXT]
    assert shown[2]["color"] == GREY and shown[1]["color"] != GREY
    # the same chain colours the map's station markers
    wall_map = _panel(models, "Peta")
    assert wall_map["transformations"] == list(siaga.INDEX)
    marker_colour = _field_config(wall_map, "siaga")
    assert [s["color"] for s in grafana.display(marker_colour, table.fields["siaga"])] == [
        s["color"] for s in shown
    ]


def test_a_silent_pump_shows_no_data_and_a_pump_stopped_on_purpose_is_not_red(
    models: dict[str, dict[str, Any]], grafana: GrafanaData
) -> None:
    panel = _panel(models, "Pompa, pintu air")
    registry = Frame(
        "A",
        {
            "device": ["ps-1", "ps-2", "fg-1", "cam-1"],
            "name": ["P1", "P2", "G1", "C1"],
            "kind": ["Pompa", "Pompa", "Pintu air", "Kamera"],
            "kecamatan": ["kec-x"] * 4,
            "kecamatan_name": ["X"] * 4,
        },
    )
    pumps = Frame("B", {"Time": [1], "device": ["ps-1"], "state": [10]})
    gates = Frame("C", {"Time": [1], "device": ["fg-1"], "state": [21]})
    cameras = Frame("D", {"Time": [1], "device": ["cam-1"], "state": [31]})
    out = [
        f
        for f in grafana.transform([registry, pumps, gates, cameras], panel["transformations"])
        if f.length
    ]
    (table,) = out
    assert table.fields["device"][0] == "ps-2"  # silent: first
    shown = grafana.display(_field_config(panel, "state"), table.fields["state"])
    by_device = dict(zip(table.fields["device"], shown, strict=True))
    assert by_device["ps-2"]["text"] == labels.NO_DATA_TEXT and by_device["ps-2"]["color"] == GREY
    assert (
        by_device["ps-1"]["text"] == "Pompa berhenti"
        and "red" not in by_device["ps-1"]["color"].lower()
    )
    assert by_device["cam-1"]["text"] == "Kamera gangguan"


def test_state_timelines_bucket_so_an_empty_bucket_means_silence(
    models: dict[str, dict[str, Any]], grafana: GrafanaData
) -> None:
    """Pumps and cameras: fill(null) in buckets of at least 5 minutes (a report a
    minute) and of the level's window (an hourly level draws no gaps between its
    points), null shown as grey "Tidak ada data", never the previous value."""
    timelines = [
        (name, p)
        for name, m in models.items()
        for p in m["panels"]
        if p["type"] == "state-timeline"
    ]
    assert len(timelines) >= 3
    for name, panel in timelines:
        assert panel["interval"] == "$rp_bucket"
        for target in panel["targets"]:  # the raw readings and their aggregate twin
            assert "fill(previous)" not in target["query"], (name, panel["title"])
            assert "fill(null)" in target["query"]
        config = {"mappings": panel["fieldConfig"]["defaults"]["mappings"]}
        (shown,) = grafana.display(config, [None])
        assert (shown["text"], shown["color"]) == (labels.NO_DATA_TEXT, GREY), panel["title"]
    buckets = {r.bucket for r in level_table.rows(datetime.now(UTC), RetentionSettings())}
    assert buckets == {"5m", "1h"}


def test_alert_rules_are_provisioned_for_data_stopped_and_failing_crew_alerts() -> None:
    path = ROOT / "deploy/grafana/provisioning/alerting/pantau.yaml"
    datasources = yaml.safe_load(
        (ROOT / "deploy/grafana/provisioning/datasources/pantau.yaml").read_text()
    )
    known = {d["uid"] for d in datasources["datasources"]} | {"__expr__"}
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    rules = {r["uid"]: r for g in doc["groups"] for r in g["rules"]}
    assert set(rules) == {"pantau-data-stopped", "pantau-crew-alerts-failing"}
    for uid, rule in rules.items():
        refs = {d["refId"] for d in rule["data"]}
        assert rule["condition"] in refs, uid
        for d in rule["data"]:
            assert d["datasourceUid"] in known, uid
            assert d["model"].get("expression", "A") in refs, uid
    # silence is the failure "data stopped" looks for: no result must fire it
    assert rules["pantau-data-stopped"]["noDataState"] == "Alerting"
