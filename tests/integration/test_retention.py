"""Retention and downsampling on the run's real InfluxDB 1.6: the retention policies
Pantau sets up, the aggregates its downsampler writes (checked against the raw readings
by hand), late readings, and KPIs that agree before and after the raw data ages out."""

from __future__ import annotations

import dataclasses
import os
import random
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr

from api.context import ApiContext, build_context
from api.kpi_queries import camera_availability, sensor_availability
from pantau.influx import level_table
from pantau.influx.downsample import Downsampler
from pantau.influx.query import InfluxQL, quote_ident
from pantau.influx.retention import (
    AGG_1H,
    AGG_5M,
    RAW,
    ensure_retention,
    level_for,
    level_holding,
    source,
)
from pantau.influx.writers import make_writer
from pantau.local import LocalStack
from pantau.settings import ApiSettings, RetentionSettings, Settings
from testkit.services import IngestProcess, wait_until
from tests.api.conftest import CITY, ZONES

pytestmark = pytest.mark.integration

M = timedelta(minutes=1)


def _ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


def _rps(settings: Settings) -> dict[str, dict[str, object]]:
    with InfluxQL.from_settings(settings.influx) as client:
        q = f"SHOW RETENTION POLICIES ON {quote_ident(settings.influx.database)}"
        return {str(r["name"]): r for r in client.rows(q)}


def test_retention_policies_are_set_up_once(settings: Settings) -> None:
    ran = ensure_retention(settings.influx, settings.retention)
    assert len(ran) == 4  # raw altered, two aggregate RPs and the meta RP created
    rps = _rps(settings)
    assert rps["autogen"]["duration"] == "2160h0m0s" and rps["autogen"]["default"] is True
    assert rps["agg_5m"]["duration"] == f"{730 * 24}h0m0s"
    assert rps["agg_1h"]["duration"] == f"{3650 * 24}h0m0s"
    assert rps["agg_1h"]["shardGroupDuration"] == "168h0m0s"
    assert rps["pantau_meta"]["duration"] == "0s"  # the level table: kept forever
    # Idempotent: a second start changes nothing; a new setting alters only what changed.
    assert ensure_retention(settings.influx, settings.retention) == []
    shorter = RetentionSettings(raw_days=30)
    ran = ensure_retention(settings.influx, shorter)
    assert len(ran) == 1 and ran[0].startswith('ALTER RETENTION POLICY "autogen"')
    assert _rps(settings)["autogen"]["duration"] == "720h0m0s"


def _readings(
    t0: datetime, hours: int, seed: int
) -> tuple[list[str], dict[tuple[str, str, int], list[float]]]:
    """water_level of three stations every 10 s with gaps; and the same values by
    (measurement, device, 5-minute window) for the hand computation."""
    rng = random.Random(seed)
    lines, by_window = [], defaultdict(list)
    for device in ("wl-a", "wl-b", "wl-c"):
        for i in range(hours * 360):
            if rng.random() < 0.2:  # a lost reading now and then
                continue
            t = t0 + timedelta(seconds=10 * i)
            v = round(rng.uniform(50, 250), 2)
            lines.append(f"water_level,device={device},kind=water v={v} {_ms(t)}")
            by_window[("water_level", device, _ms(t) // 300_000 * 300_000)].append(v)
    lines = [ln.replace(" v=", " value=") for ln in lines]
    return lines, by_window


def _aggregates(
    settings: Settings, level: str, measurement: str
) -> dict[tuple[str, int], dict[str, object]]:
    with InfluxQL.from_settings(settings.influx) as client:
        src = source(measurement, AGG_5M if level == "5m" else AGG_1H, settings.influx.database)
        rows = client.rows(f"SELECT * FROM {src}", epoch="ms")
    return {(str(r["device"]), int(r["time"])): r for r in rows}  # type: ignore[call-overload]


def test_downsampler_matches_raw_readings_and_takes_late_ones(settings: Settings) -> None:
    ensure_retention(settings.influx, settings.retention)
    t0 = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=5)
    lines, by_window = _readings(t0, 3, seed=7)
    writer = make_writer(settings.influx)
    writer.write(lines)
    # Not readings: a string state, Pantau's own gauge: never aggregated.
    writer.write(
        [
            f'pump_state,device=p-1 value="on" {_ms(t0)}',
            f"pantau_gauge,service=ingest,metric=x value=3 {_ms(t0)}",
        ]
    )
    ds = Downsampler.from_settings(settings)
    try:
        assert ds.measurements() == ["water_level"]
        stats = ds.run(t0, t0 + timedelta(hours=3))
        assert stats.points_5m == len(by_window)
        agg5 = _aggregates(settings, "5m", "water_level")
        assert len(agg5) == len(by_window)
        for (_, device, window), values in by_window.items():
            a = agg5[(device, window)]
            assert a["count"] == len(values)
            assert a["min"] == min(values) and a["max"] == max(values)
            assert a["mean"] == pytest.approx(sum(values) / len(values))
            assert a["kind"] == "water"  # the series' tags are kept
        hourly = _aggregates(settings, "1h", "water_level")
        assert len(hourly) == 3 * 3
        for (device, hour), a in hourly.items():
            values = [
                v
                for (_, d, w), vs in by_window.items()
                if d == device and hour <= w < hour + 3_600_000
                for v in vs
            ]
            assert a["count"] == len(values)
            assert a["mean"] == pytest.approx(sum(values) / len(values))
            assert a["min"] == min(values) and a["max"] == max(values)
        # Idempotent: the same pass again writes the same points, no new ones.
        ds.run(t0, t0 + timedelta(hours=3))
        assert _aggregates(settings, "5m", "water_level") == agg5

        # A late reading in the second hour (a spool drained after an outage): the
        # reconcile finds that hour, and only it, and recomputes it.
        assert ds.stale_hours(t0, t0 + timedelta(hours=3)) == []
        late_t = t0 + timedelta(hours=1, minutes=7, seconds=3)
        writer.write([f"water_level,device=wl-a,kind=water value=999.5 {_ms(late_t)}"])
        window = _ms(late_t) // 300_000 * 300_000
        by_window[("water_level", "wl-a", window)].append(999.5)
        fixed = ds.reconcile(t0, t0 + timedelta(hours=3))
        assert fixed.recomputed_hours == [t0 + timedelta(hours=1)]
        a = _aggregates(settings, "5m", "water_level")[("wl-a", window)]
        assert a["max"] == 999.5 and a["count"] == len(by_window[("water_level", "wl-a", window)])
        assert (
            _aggregates(settings, "1h", "water_level")[("wl-a", _ms(t0) + 3_600_000)]["max"]
            == 999.5
        )
    finally:
        ds.close()
        writer.close()


def test_query_helper_picks_the_level_for_a_range() -> None:
    r = RetentionSettings()
    now = datetime(2027, 1, 1, tzinfo=UTC)
    assert level_for(now - timedelta(hours=6), now, now, r) is RAW
    assert level_for(now - timedelta(days=3), now, now, r) is AGG_5M
    assert level_for(now - timedelta(days=365), now, now, r) is AGG_1H  # a year: hourly
    # Six days 100 days ago: raw is gone, 5-minute aggregates hold it.
    assert level_for(now - timedelta(days=106), now - timedelta(days=100), now, r) is AGG_5M
    # A day three years ago: only the hourly aggregates are left.
    assert level_for(now - timedelta(days=1096), now - timedelta(days=1095), now, r) is AGG_1H


@pytest.fixture
def ctx(settings: Settings, tmp_path: Path) -> Iterator[ApiContext]:
    s = settings.model_copy(
        update={
            "database_url": f"sqlite:///{tmp_path}/pantau.db",
            "api": ApiSettings(
                jwt_secret=SecretStr("retention-test-" + "0123456789abcdefghijklmnopqrstuv"),
                argon2_memory_kib=1024,
                argon2_time_cost=1,
            ),
        }
    )
    c = build_context(s, city=CITY, zones=ZONES)
    yield c
    c.close()


def test_kpis_agree_after_the_raw_readings_age_out(ctx: ApiContext, settings: Settings) -> None:
    """Sensor and camera availability over a day and over a fortnight (25-minute
    buckets) three days ago, from raw readings; then the raw RP is cut to one hour,
    InfluxDB drops the raw shards, and the same KPIs come from the 5-minute aggregates."""
    ensure_retention(settings.influx, settings.retention)
    now = datetime.now(UTC)
    day = now.replace(hour=17, minute=0, second=0, microsecond=0) - timedelta(days=3)
    fortnight = (day - timedelta(days=14), day)
    rng = random.Random(3)
    devices = [
        dataclasses.replace(CITY.devices[d], in_service_from=None)
        for d in ("rg-paninggilan-034", "wl-paninggilan-067")
    ]
    camera = dataclasses.replace(next(iter(ctx.cameras.values())), in_service_from=None)
    lines = []
    t = fortnight[0]
    while t < day + timedelta(days=1):
        for d in devices:
            if rng.random() < 0.6:  # reports in some minutes only: availability < 100 %
                lines.append(f"{d.metrics[0]},device={d.id} value={rng.uniform(0, 5):.2f} {_ms(t)}")
        if rng.random() < 0.5:
            fault = 0.0 if rng.random() < 0.7 else 1.0
            lines.append(f"camera_fault,camera={camera.id} value={fault} {_ms(t)}")
        t += timedelta(minutes=rng.choice([3, 7, 11, 13]))
    writer = make_writer(settings.influx)
    for i in range(0, len(lines), 5000):
        writer.write(lines[i : i + 5000])
    writer.close()
    periods = [(day, day + timedelta(days=1)), fortnight]

    def kpis() -> list[float | None]:
        return [
            kpi
            for s, e in periods
            for kpi in (
                sensor_availability(ctx, devices, s, e),
                camera_availability(ctx, [camera], s, e),
            )
        ]

    from_raw = kpis()
    assert all(k is not None and 0 < k < 100 for k in from_raw), from_raw

    ds = Downsampler.from_settings(settings)
    try:
        ds.run(fortnight[0], day + timedelta(days=1))
    finally:
        ds.close()
    # Age the raw data out the way production does: a shorter raw RP, and InfluxDB's
    # retention service (every 10 s on the local server) drops the expired shards.
    with InfluxQL.from_settings(settings.influx) as client:
        db = quote_ident(settings.influx.database)
        client.query(f'ALTER RETENTION POLICY "autogen" ON {db} DURATION 1h SHARD DURATION 1h')
        deadline = time.monotonic() + 120
        while (
            client.rows('SELECT count(value) FROM "camera_fault"') and time.monotonic() < deadline
        ):
            time.sleep(1)
        assert client.rows('SELECT count(value) FROM "camera_fault"') == [], "raw not dropped"
        level = level_holding(client, settings.influx.database, day, now, settings.retention)
        assert level is AGG_5M
    assert kpis() == pytest.approx(from_raw, abs=1e-9)


def test_pantau_ingest_sets_retention_up_and_downsamples_as_it_runs(
    stack: LocalStack, settings: Settings, tmp_path: Path
) -> None:
    ingest = IngestProcess(
        stack,
        settings,
        tmp_path / "spool",
        tmp_path / "ingest.log",
        PANTAU_RETENTION__DOWNSAMPLE_INTERVAL_S="1",
    )
    ingest.start()
    try:
        wait_until(lambda: "agg_5m" in _rps(settings), 60, "ingest to create the RPs")
        at = datetime.now(UTC) - timedelta(minutes=2)
        writer = make_writer(settings.influx)
        writer.write([f"water_level,device=wl-a value=120.5 {_ms(at)}"])
        writer.close()
        wait_until(
            lambda: bool(_aggregates(settings, "5m", "water_level")), 60, "a 5-minute aggregate"
        )
        (a,) = _aggregates(settings, "5m", "water_level").values()
        assert (a["count"], a["mean"]) == (1, 120.5)
        assert _rps(settings)["autogen"]["duration"] == "2160h0m0s"
        # The level table the dashboards read: written at start, rewritten every pass.
        with InfluxQL.from_settings(settings.influx) as client:
            q = f'SELECT "rp", "holds_from_ms" FROM {level_table.FROM}'
            first = client.rows(q, epoch="ms")
            assert [r["rp"] for r in first] == ["autogen", "agg_5m", "agg_1h"]
            wait_until(
                lambda: client.rows(q, epoch="ms")[0]["holds_from_ms"] != first[0]["holds_from_ms"],
                30,
                "a pass to move the raw level's oldest time",
            )
    finally:
        ingest.stop()
    assert "Traceback" not in ingest.log_text()


def test_pantau_retention_sets_up_and_downsamples_a_span_by_hand(
    stack: LocalStack, settings: Settings
) -> None:
    """For a deployment that turns ingest's loop off and runs passes from cron, or
    re-aggregates a span after a restore: the command, as an operator runs it."""
    env = {
        **os.environ,
        **stack.environment(),
        "PANTAU_INFLUX__DATABASE": settings.influx.database,
    }

    def pantau(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "pantau.cli", "retention", *args]
        run = subprocess.run
        return run(cmd, check=False, env=env, capture_output=True, text=True, timeout=120)

    setup = pantau("setup")
    assert setup.returncode == 0, setup.stderr
    assert "agg_5m" in _rps(settings) and _rps(settings)["autogen"]["default"] is True
    t0 = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=30)
    lines, by_window = _readings(t0, 2, seed=11)
    writer = make_writer(settings.influx)
    writer.write(lines)
    writer.close()
    # The default span (the last 2 hours) does not reach back 30 hours: nothing written.
    recent = pantau("downsample")
    assert recent.returncode == 0, recent.stderr
    assert _aggregates(settings, "5m", "water_level") == {}
    span = pantau(
        "downsample", "--from", t0.isoformat(), "--to", (t0 + timedelta(hours=2)).isoformat()
    )
    assert span.returncode == 0, span.stderr
    assert f"{len(by_window)} 5-minute and 6 hourly points written" in span.stdout, span.stdout
    agg5 = _aggregates(settings, "5m", "water_level")
    assert {(d, w): a["count"] for (d, w), a in agg5.items()} == {
        (d, w): len(v) for (_, d, w), v in by_window.items()
    }
    again = pantau(
        "downsample",
        "--reconcile",
        "--from",
        t0.isoformat(),
        "--to",
        (t0 + timedelta(hours=2)).isoformat(),
    )
    assert again.returncode == 0 and "0 hours recomputed" in again.stdout, again.stdout
    backwards = pantau("downsample", "--from", "2026-12-02T00:00", "--to", "2026-12-01T00:00")
    assert backwards.returncode == 2
    assert "is not before --to" in backwards.stderr, backwards.stderr
    bad = pantau("downsample", "--from", "yesterday")
    assert bad.returncode == 2 and "not an ISO 8601 time" in bad.stderr, bad.stderr
