"""`pantau rules backtest` over the storm as stored: simulator -> real Mosquitto ->
ingest -> real InfluxDB, then the default rules and a stricter copy replayed from it."""

from __future__ import annotations

import io
from datetime import timedelta
from pathlib import Path

import pytest

from ingest.service import IngestService
from pantau.city import load_city
from pantau.incidents import Hazard
from pantau.influx.query import InfluxQL
from pantau.influx.writers import make_writer
from pantau.local import LocalStack
from pantau.settings import Settings
from pantau.zoneindex import ZoneIndex
from rules import backtest as bt
from rules.rulespec import load_rules
from simulators.publisher import run_scenario
from simulators.scenario import find_scenario, load_scenario
from testkit.mqtt import wait_for

pytestmark = pytest.mark.integration

DEFAULT = Path(__file__).resolve().parents[2] / "config" / "rules.yaml"
FAR_AWAY = {"kec-ciledug", "kec-larangan"}  # the far south-east; the storm is west


def test_backtest_of_the_stored_storm_floods_karawaci_and_a_stricter_file_raises_fewer(
    settings: Settings,
    stack: LocalStack,
    influx_db: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    city = load_city()
    scenario = load_scenario(find_scenario("storm-karawaci"), city)
    ingest = IngestService(settings, city, make_writer(settings.influx))
    ingest.start()
    influx = InfluxQL.from_settings(settings.influx)
    try:
        assert ingest.wait_subscribed(10)
        report = run_scenario(city, scenario, settings.mqtt, speed=None)
        assert report.completed and report.failed == 0

        def stored() -> int:
            rows = influx.rows("SELECT count(value) FROM /.*/")
            return sum(int(str(row["count"])) for row in rows)

        wait_for(lambda: stored() == report.valid_readings, 90, "every reading in InfluxDB")
    finally:
        ingest.stop()

    start, end = report.start, report.end + timedelta(seconds=1)
    zones = ZoneIndex.for_city(city)
    rules = load_rules(DEFAULT, city)
    result = bt.run(influx, city, rules, start, end)
    assert result.stats.readings == report.valid_readings
    assert result.stats.late == 0 and result.stats.unknown_device == 0
    floods = result.of_hazard(Hazard.FLOOD)
    flood_kec = {bt.kecamatan_of(zones, e.key.zone_id) for e in floods}
    assert "kec-karawaci" in flood_kec
    assert not flood_kec & FAR_AWAY, flood_kec
    assert any(e.key.rule_id == "flood-water-level" for e in floods)
    # Paging by time is invisible: small pages give the same episodes as one big one.
    paged = bt.run(influx, city, rules, start, end, chunk=timedelta(minutes=7))
    assert paged.episodes == result.episodes
    influx.close()

    # Siaga I to raise, bankfull for awas: fewer floods, and --compare lists the removed.
    strict = tmp_path / "strict.yaml"
    text = DEFAULT.read_text()
    strict.write_text(
        text.replace("levels.danger_cm", "levels.bankfull_cm").replace(
            "levels.alert_cm", "levels.danger_cm"
        )
    )
    for name, value in stack.environment().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PANTAU_INFLUX__DATABASE", influx_db)
    window = ["--from", start.isoformat(), "--to", end.isoformat()]
    strict_result = bt.run(
        InfluxQL.from_settings(settings.influx), city, load_rules(strict, city), start, end
    )
    assert len(strict_result.of_hazard(Hazard.FLOOD)) < len(floods)

    out = io.StringIO()
    assert bt.main([*window, "--rules", str(DEFAULT), "--compare", str(strict)], out) == 0
    printed = out.getvalue()
    with capsys.disabled():
        print("\n" + printed)  # the operator's view, for the report
    diff = bt.compare(result, strict_result)
    assert diff.removed and not any(e.key.hazard is Hazard.FLOOD for e in diff.added)
    assert f"compared with {strict}: +{len(diff.added)} added, -{len(diff.removed)} removed" in (
        printed
    )
    assert f"{len(result.episodes)} incidents" in printed
    assert "per kecamatan: " in printed and "kec-karawaci" in printed
