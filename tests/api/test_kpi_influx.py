"""KPIs through the API against the run's real InfluxDB: sensor and camera availability from data
presence, evidence series on the incident detail, and the KPI series published back."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from api.app import create_app
from api.context import ApiContext, build_context
from api.kpi_queries import sensor_availability
from api.principal import Role
from pantau.incidents import WorkflowState
from pantau.influx.query import InfluxQL
from pantau.influx.writers import make_writer
from pantau.settings import ApiSettings, Settings
from tests.api.conftest import CITY, PASSWORD, ZONES, flood

pytestmark = pytest.mark.integration

T0 = datetime(2026, 10, 5, 10, 0, tzinfo=UTC)  # a past hour, aligned to 10-minute buckets


@pytest.fixture
def ctx(settings: Settings, tmp_path: Path) -> Iterator[ApiContext]:
    s = settings.model_copy(
        update={
            "database_url": f"sqlite:///{tmp_path}/pantau.db",
            "api": ApiSettings(
                jwt_secret=SecretStr("kpi-test-" + "0123456789abcdefghijklmnopqrstuv"),
                argon2_memory_kib=1024,
                argon2_time_cost=1,
            ),
        }
    )
    c = build_context(s, city=CITY, zones=ZONES)
    yield c
    c.close()


def test_availability_evidence_and_publish(ctx: ApiContext, settings: Settings) -> None:
    # kel-paninggilan has 5 devices; in the hour T0..T0+1h (6 buckets of 10 min):
    # the rain gauge reports in every bucket, the water-level station in 3, the other
    # three devices never -> 9 of 5 x 6 buckets = 30 %.
    lines = [
        f"rainfall_rate,device=rg-paninggilan-034 value=1.0 {_ms(T0 + i * 10 * M)}"
        for i in range(6)
    ] + [
        f"water_level,device=wl-paninggilan-067 value={140 + i}.0 {_ms(T0 + i * 20 * M + M)}"
        for i in range(3)
    ]
    # cam-flood-babakan (kel-babakan, the only camera there) sees clearly in buckets
    # 0-2, sends analyses of a covered lens in bucket 3 and nothing after: 3 of 6 = 50 %.
    lines += [
        f"camera_fault,camera=cam-flood-babakan value={0.0 if i < 3 else 1.0} "
        f"{_ms(T0 + i * 10 * M + 2 * M)}"
        for i in range(4)
    ]
    recent = datetime.now(UTC) - timedelta(hours=1)  # device health looks back 7 days
    lines.append(f"battery,device=rg-paninggilan-034 value=81.5 {_ms(recent)}")
    writer = make_writer(settings.influx)
    writer.write(lines)
    writer.close()
    store = ctx.store
    inc = store.apply(flood("kel-paninggilan", T0 + 30 * M, device="wl-paninggilan-067")).incident
    assert inc is not None
    store.transition(inc.id, WorkflowState.ACKNOWLEDGED, "crew:x", "on it", T0 + 36 * M)
    store.transition(inc.id, WorkflowState.RESOLVED, "crew:x", "fixed: ok", T0 + 50 * M)
    ctx.accounts.create_user("ops", PASSWORD, Role.OPERATOR)
    with TestClient(create_app(ctx)) as client:
        token = client.post("/auth/token", data={"username": "ops", "password": PASSWORD})
        h = {"Authorization": f"Bearer {token.json()['access_token']}"}
        params = {
            "scope": "kelurahan",
            "id": "kel-paninggilan",
            "start": T0.isoformat(),
            "end": (T0 + timedelta(hours=1)).isoformat(),
        }
        k = client.get("/kpi", params=params, headers=h).json()
        assert k["sensor_availability_pct"] == pytest.approx(30.0)
        assert k["incidents"] == 1
        assert k["ack_minutes"] == {"count": 1, "mean": 6.0, "p90": 6.0}
        assert k["resolve_minutes"]["mean"] == 20.0
        assert k["sla_compliance_pct"] == 100.0  # ack by +10, resolve by +240
        assert k["detection_delay_minutes"]["mean"] == 5.0
        assert k["camera_availability_pct"] is None  # no camera in kel-paninggilan
        # By hand: every KPI with a value scores 100 (targets in config/kpi.yaml) but
        # sensors, 100 x 30 / 95 = 31.58 (weight 1); cameras have no value, so their
        # weight is left out: (2+2+3+1+1) x 100 + 31.58 over 10 = 93.16 (not 84.69,
        # the score with cameras counted as 0 over 11).
        assert k["score"] == 93.16
        assert "camera_availability_pct" not in k["subscores"]
        babakan = {**params, "id": "kel-babakan"}
        cams = client.get("/kpi", params=babakan, headers=h).json()
        assert cams["camera_availability_pct"] == pytest.approx(50.0)
        csv_text = client.get("/kpi", params={**params, "format": "csv"}, headers=h).text
        header, row = csv_text.strip().split("\n")
        values = dict(zip(header.split(","), row.split(","), strict=True))
        assert values["sensor_availability_pct"] == "30.00" and values["incidents_flood"] == "1"
        # The incident's evidence series comes from InfluxDB.
        detail = client.get(f"/incidents/{inc.id}", headers=h).json()
        assert detail["evidence"]["series_source"] == "influxdb"
        assert [p["value"] for p in detail["evidence"]["series"]] == [140.0, 141.0, 142.0]
        # Device health: last seen from InfluxDB.
        devices = client.get("/devices", params={"kelurahan": "kel-paninggilan"}, headers=h)
        seen = {d["id"]: d["last_seen"] for d in devices.json()["data"]}
        assert seen["rg-paninggilan-034"] is not None and seen["tc-paninggilan-034"] is None
        battery = {d["id"]: d["battery_pct"] for d in devices.json()["data"]}
        assert battery["rg-paninggilan-034"] == 81.5
        # The month's series go to InfluxDB for Grafana.
        published = client.post("/kpi/publish", params={"month": "2026-10"}, headers=h).json()
        assert published["points"] == 1 + 4 + 13  # kota, 4 agencies, 13 kecamatan
    rows = InfluxQL.from_settings(settings.influx).rows(
        "SELECT incidents, sla_compliance_pct FROM kpi WHERE \"id\" = 'kec-ciledug'"
    )
    assert len(rows) == 1 and rows[0]["incidents"] == 1.0 and rows[0]["sla_compliance_pct"] == 100.0


def test_availability_counts_a_device_from_its_commissioning(
    ctx: ApiContext, settings: Settings
) -> None:
    """February 2026 by hand: 28 days = 2 419 200 s; at most 2000 buckets per device
    gives 1210 s, rounded up to whole 5 minutes (so the 5-minute aggregates fill the
    same buckets once the raw readings age out): 1500 s (25 min), so 1613 buckets, the
    last one cut short. The rain gauge is in service all month and reports in every
    bucket (1613 of 1613). The station is commissioned on 15 February 00:00, 14 days
    in = 1 209 600 s, in bucket 806, so it owes 807 buckets; it reports in buckets
    806-1208 (403, its first week), once before it was commissioned (a test reading,
    not counted) and never after. (1613 + 403) / (1613 + 807) = 83.31 %; counted over
    the whole month it would be (1613 + 404) / 3226 = 62.52 %."""
    start, end = datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC)
    bucket = timedelta(seconds=1500)
    commissioned = datetime(2026, 2, 15, tzinfo=UTC)
    gauge = dataclasses.replace(CITY.devices["rg-paninggilan-034"], in_service_from=None)
    station = dataclasses.replace(CITY.devices["wl-paninggilan-067"], in_service_from=commissioned)
    lines = [
        f"rainfall_rate,device={gauge.id} value=1.0 {_ms(start + i * bucket + M)}"
        for i in range(1613)
    ] + [
        f"water_level,device={station.id} value=120.0 {_ms(start + i * bucket + M)}"
        for i in [100, *range(806, 1209)]
    ]
    writer = make_writer(settings.influx)
    writer.write(lines)
    writer.close()
    assert sensor_availability(ctx, [gauge, station], start, end) == pytest.approx(
        100 * 2016 / 2420
    )
    assert sensor_availability(ctx, [station], start, end) == pytest.approx(100 * 403 / 807)
    always = dataclasses.replace(station, in_service_from=None)
    assert sensor_availability(ctx, [gauge, always], start, end) == pytest.approx(100 * 2017 / 3226)
    # Commissioned after the period: nothing in service is "-", not 0 %.
    later = dataclasses.replace(station, in_service_from=end + timedelta(days=1))
    assert sensor_availability(ctx, [later], start, end) is None


M = timedelta(minutes=1)


def _ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)
