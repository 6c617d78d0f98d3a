"""Dashboards as code: the committed JSON is what the code builds, and the dashboards
hold together (unique uids and panel ids, the zone variables, known datasources)."""

from __future__ import annotations

import json
from pathlib import Path

from dashboards.build import check, rendered, write
from dashboards.catalog import build_all
from dashboards.model import INFLUX, MIXED, POSTGRES
from dashboards.queries import AGG_SUFFIX, series
from pantau.city import City

ZONED = ("city-overview", "drainage", "traffic", "cameras")


def test_committed_json_is_what_the_code_builds(city: City) -> None:
    stale = check(city)
    assert stale.fresh, f"dashboards/generated is stale ({stale}): run `pantau dashboards build`"


def test_the_check_sees_a_changed_a_missing_and_an_extra_file(city: City, tmp_path: Path) -> None:
    write(city, tmp_path)
    assert check(city, tmp_path).fresh
    drainage = tmp_path / "drainage.json"
    drainage.write_text(drainage.read_text().replace("Siaga", "Siaga?"))
    (tmp_path / "traffic.json").unlink()
    (tmp_path / "old.json").write_text("{}")
    stale = check(city, tmp_path)
    assert (stale.changed, stale.missing, stale.extra) == (
        ("drainage.json",),
        ("traffic.json",),
        ("old.json",),
    )
    assert not stale.fresh
    write(city, tmp_path)  # build repairs all three
    assert check(city, tmp_path).fresh


def test_dashboards_hold_together(city: City) -> None:
    models = {name: json.loads(text) for name, text in rendered(city).items()}
    assert len(models) == 6
    uids = [m["uid"] for m in models.values()]
    assert len(set(uids)) == len(uids)
    known = {INFLUX.uid, POSTGRES.uid, MIXED.uid}
    for name, model in models.items():
        ids = [p["id"] for p in model["panels"]]
        assert len(set(ids)) == len(ids), name
        variables = [v["name"] for v in model["templating"]["list"]]
        if name.removesuffix(".json") in ZONED:
            assert variables[:3] == ["kecamatan", "kelurahan", "agency"], name
        for panel in model["panels"]:
            assert panel["targets"], (name, panel["title"])
            assert panel["datasource"]["uid"] in known
            assert {t["datasource"]["uid"] for t in panel["targets"]} <= {INFLUX.uid, POSTGRES.uid}
            grid = panel["gridPos"]
            assert grid["x"] + grid["w"] <= 24


def test_station_levels_come_from_the_registry(city: City) -> None:
    drainage = build_all(city)["drainage"]
    sql = next(t for p in drainage.panels for t in p.targets if t.ref_id == "B")
    station = city.devices["wl-babakan-002"]
    assert station.levels is not None
    assert (
        f"('wl-babakan-002', {station.levels.alert_cm:.1f}, {station.levels.danger_cm:.1f})"
        in sql.to_json()["rawSql"]
    )


def test_every_panel_over_readings_reads_the_level_its_range_picks(city: City) -> None:
    """A time series of readings reads `"$rp".<measurement>` (raw, 5-minute or hourly:
    what the level table gives the range), as a pair of targets with one alias (raw
    `value`; min/max/sum/count of aggregates), never finer than the level's window;
    each dashboard declares the hidden level variables its panels use."""
    leveled = 0
    for name, text in rendered(city).items():
        model = json.loads(text)
        declared = {v["name"]: v for v in model["templating"]["list"]}
        for panel in model["panels"]:
            influx = [t for t in panel["targets"] if t["datasource"]["uid"] == INFLUX.uid]
            reads_level = [t for t in influx if '"$rp".' in t["query"]]
            if not reads_level:
                continue
            leveled += 1
            where = (name, panel["title"])
            assert panel["interval"] in {"$rp_window", "$rp_bucket"}, where
            used = {"rp", panel["interval"].removeprefix("$")}
            assert used <= declared.keys(), where
            assert all(declared[u]["hide"] == 2 and not declared[u]["multi"] for u in used)
            by_ref = {t["refId"]: t for t in reads_level}
            raw = [t for ref, t in by_ref.items() if not ref.endswith(AGG_SUFFIX)]
            assert raw, where
            for target in raw:
                twin = by_ref[target["refId"] + AGG_SUFFIX]
                assert twin["alias"] == target["alias"], where
                assert '"value"' in target["query"], where
                assert '"value"' not in twin["query"], where
                assert (
                    'sum("count")' in twin["query"]
                    or "max(" in twin["query"]
                    or ("last(" in twin["query"])
                ), where
    assert leveled >= 15


def test_means_from_aggregates_are_weighted_by_count() -> None:
    mean, _ = series("water_level")
    _, from_aggregates = series("water_level")
    assert 'mean("value")' in mean.query
    assert 'sum("sum") / sum("count")' in from_aggregates.query
    assert 'max("max")' in series("x", agg="max")[1].query
    assert 'sum("count")' in series("x", agg="count")[1].query
