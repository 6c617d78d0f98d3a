"""The e-Kinerja series reach InfluxDB on a schedule, without anyone calling the API:
the API process publishes the running month (and last month in its first week) for
the kota, every agency, kecamatan and crew, again every turn, and keeps its schedule
when a turn fails."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from api.app import create_app
from api.context import ApiContext, build_context
from api.kpi_publisher import KpiPublisher, months_to_publish, publish_now
from pantau.clock import ManualClock
from pantau.influx.query import InfluxQL
from pantau.settings import ApiSettings, InfluxSettings, Settings
from testkit.mqtt import wait_for
from tests.api.conftest import CITY, ZONES, flood

pytestmark = pytest.mark.integration

NOW = datetime(2026, 10, 3, 3, 0, tzinfo=UTC)  # 3 October, 10:00 WIB


def _settings(settings: Settings, tmp_path: Path, every_s: float = 0) -> Settings:
    return settings.model_copy(
        update={
            "database_url": f"sqlite:///{tmp_path}/pantau.db",
            "api": ApiSettings(
                jwt_secret=SecretStr("kpi-publisher-" + "0123456789abcdefghijklmnopqrstuv"),
                argon2_memory_kib=1024,
                argon2_time_cost=1,
                kpi_publish_every_s=every_s,
            ),
        }
    )


@pytest.fixture
def ctx(settings: Settings, tmp_path: Path) -> Iterator[ApiContext]:
    c = build_context(_settings(settings, tmp_path), clock=ManualClock(NOW), city=CITY, zones=ZONES)
    yield c
    c.close()


def _points(influx: InfluxQL, month_start: datetime) -> dict[tuple[str, str], float]:
    rows = influx.rows(
        'SELECT "incidents" FROM "kpi" WHERE "period" = \'month\' '
        f'AND time = {int(month_start.timestamp() * 1000)}ms GROUP BY "scope", "id"'
    )
    return {(str(r["scope"]), str(r["id"])): float(str(r["incidents"])) for r in rows}


def test_one_turn_publishes_this_and_last_month_for_every_scope(
    ctx: ApiContext, settings: Settings
) -> None:
    assert months_to_publish(NOW, ctx) == ["2026-10", "2026-09"]
    assert months_to_publish(NOW + timedelta(days=10), ctx) == ["2026-10"]
    ctx.store.apply(flood("kel-paninggilan", NOW - timedelta(hours=20)))  # 2 October
    ctx.store.apply(flood("kel-babakan", NOW - timedelta(days=5)))  # 28 September

    written = publish_now(ctx)

    scopes = 1 + len(CITY.agencies) + len(CITY.zones.kecamatan) + len(ctx.roster.crews)
    assert written == 2 * scopes
    influx = InfluxQL.from_settings(settings.influx)
    try:
        october = _points(influx, datetime(2026, 9, 30, 17, 0, tzinfo=UTC))  # 1 Oct 00:00 WIB
        september = _points(influx, datetime(2026, 8, 31, 17, 0, tzinfo=UTC))
    finally:
        influx.close()
    assert len(october) == len(september) == scopes
    kota = ("kota", CITY.zones.kota.id)
    assert october[kota] == 1 and september[kota] == 1
    by_id = CITY.zones.by_id()
    flooded = by_id["kel-paninggilan"].parent_id
    dry = next(
        k.id for k in CITY.zones.kecamatan if k.id not in {flooded, by_id["kel-babakan"].parent_id}
    )
    assert october[("kecamatan", str(flooded))] == 1 and october[("kecamatan", dry)] == 0


def test_the_api_process_publishes_every_turn_and_survives_a_failed_one(
    settings: Settings, tmp_path: Path
) -> None:
    ctx = build_context(_settings(settings, tmp_path, every_s=0.2), city=CITY, zones=ZONES)
    try:
        with TestClient(create_app(ctx)) as client:
            publisher = client.app.state.kpi_publisher  # type: ignore[attr-defined]
            assert isinstance(publisher, KpiPublisher)
            wait_for(lambda: publisher.turns >= 2, 60, "two turns")
        assert not publisher.running  # stopped with the app
    finally:
        ctx.close()

    # InfluxDB away: the turn fails, is counted, and the schedule goes on.
    dead = settings.model_copy(
        update={"influx": InfluxSettings(url="http://127.0.0.1:9", database="nowhere", timeout_s=1)}
    )
    ctx = build_context(_settings(dead, tmp_path, every_s=0.1), city=CITY, zones=ZONES)
    broken = KpiPublisher(ctx, 0.1)
    try:
        broken.start()
        wait_for(lambda: broken.failures >= 2, 60, "two failed turns")
        assert broken.turns == 0
    finally:
        broken.stop()
        ctx.close()
