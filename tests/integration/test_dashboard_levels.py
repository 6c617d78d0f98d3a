"""The dashboards read the level that fits their time range (pantau/influx/level_table.py).

A day of readings of two registered water-level stations and a rain gauge goes into raw
(their real series tags), the downsampler aggregates it, ingest's level table is
written. Then the committed drainage dashboard's variables are resolved as Grafana
resolves them (their queries, expanded for the range, run on InfluxDB and PostgreSQL;
the hidden level ones pick the level) and its panels are expanded and run: a 1-day
range reads raw readings, 3 days the 5-minute aggregates, a year the hourly ones, and
all three give the day's mean, and the rain panel's peak, that the readings give by
hand.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import create_engine

from dashboards import expand
from dashboards.build import GENERATED
from dashboards.queries import AGG_SUFFIX
from pantau.city import City, load_city
from pantau.influx import level_table
from pantau.influx.downsample import Downsampler
from pantau.influx.lineprotocol import series_key
from pantau.influx.query import InfluxQL
from pantau.influx.retention import AGG_1H, AGG_5M, RAW, ensure_retention, level_for
from pantau.influx.writers import make_writer
from pantau.settings import Settings
from tests.integration.dashboard_variables import resolve

pytestmark = pytest.mark.integration

DAY = timedelta(days=1)


def _ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


def _write_day(
    settings: Settings, city: City, day: datetime
) -> tuple[dict[str, list[tuple[int, float]]], list[float]]:
    """Readings for a day: two stations' water level about once a minute (a fifth
    lost, so windows hold unequal counts), one gauge's rain every minute. Returns the
    stations' (ms, value) readings and the gauge's clock-hour means."""
    rng = random.Random(23)
    stations = sorted(
        (d for d in city.devices.values() if d.kind == "water_level_station"), key=lambda d: d.id
    )[:2]
    gauge = min((d for d in city.devices.values() if d.kind == "rain_gauge"), key=lambda d: d.id)
    lines: list[str] = []
    readings: dict[str, list[tuple[int, float]]] = {}
    for station in stations:
        tags = series_key(station)
        readings[station.id] = [
            (_ms(day + timedelta(minutes=i)), round(rng.uniform(40, 260), 2))
            for i in range(1440)
            if rng.random() > 0.2
        ]
        lines += [f"water_level{tags} value={v!r} {t}" for t, v in readings[station.id]]
    hours: dict[int, list[float]] = defaultdict(list)
    tags = series_key(gauge)
    for i in range(1440):
        rain = round(rng.choice((0.0, 0.0, 12.0, 24.0)) * (1 + (i // 60) % 5), 2)
        lines.append(f"rainfall_rate{tags} value={rain!r} {_ms(day + timedelta(minutes=i))}")
        hours[i // 60].append(rain)
    writer = make_writer(settings.influx)
    try:
        for i in range(0, len(lines), 5000):
            writer.write(lines[i : i + 5000])
    finally:
        writer.close()
    return readings, [sum(v) / len(v) for v in hours.values()]


def _truth(readings: list[tuple[int, float]], start_ms: int, width_ms: int) -> float:
    """The mean of the readings in [start, start + width): what any level must show."""
    inside = [v for t, v in readings if start_ms <= t < start_ms + width_ms]
    return sum(inside) / len(inside)


def _run(
    influx: InfluxQL, panel: dict[str, Any], when: expand.TimeRange, values: dict[str, list[str]]
) -> dict[str, list[tuple[str, int, float]]]:
    """Each target's (series, bucket start ms, value); the expanded queries read `$rp`."""
    out: dict[str, list[tuple[str, int, float]]] = {}
    for target in panel["targets"]:
        if "query" not in target:
            continue  # SQL (the Siaga lines)
        query = expand.influxql(target["query"], when, values, min_interval=panel["interval"])
        assert f'"{values["rp"][0]}".' in query
        out[target["refId"]] = [
            (str(s.tags.get("device") or s.tags.get("kecamatan")), int(str(v[0])), float(str(v[1])))
            for s in influx.query(query, epoch="ms")
            for v in s.values
            if v[1] is not None
        ]
    return out


def test_a_day_reads_raw_a_year_hourly_and_both_give_the_same_day(
    settings: Settings, postgres_url: str
) -> None:
    city = load_city()
    ensure_retention(settings.influx, settings.retention)
    now = datetime.now(UTC)
    day = now.replace(hour=0, minute=0, second=0, microsecond=0) - DAY  # yesterday, UTC
    readings, hourly_rain = _write_day(settings, city, day)
    downsampler = Downsampler.from_settings(settings)
    try:
        downsampler.run(day, day + DAY)
    finally:
        downsampler.close()
    level_table.write(settings.influx, settings.retention, now)

    model = json.loads((GENERATED / "drainage.json").read_text(encoding="utf-8"))
    panels = {p["title"]: p for p in model["panels"]}
    levels_panel = panels["Tinggi air stasiun"]
    rain_panel = next(p for t, p in panels.items() if t.startswith("Hujan rata-rata 60 menit"))
    end = day + DAY
    # level -> range and the bucket Grafana draws it in (range / 1000 points, rounded;
    # never finer than the level's window)
    ranges = {
        RAW.rp: (expand.TimeRange(day, end), 120),
        AGG_5M.rp: (expand.TimeRange(end - 3 * DAY, end), 300),
        AGG_1H.rp: (expand.TimeRange(end - 365 * DAY, end), 86400),
    }
    sql = create_engine(postgres_url)  # the kelurahan variable's query (Grafana's SQL source)
    try:
        with InfluxQL.from_settings(settings.influx) as influx:
            for rp, (when, bucket_s) in ranges.items():
                values = resolve(model, when, influx, sql)  # every zone and agency: All
                assert values["rp"] == [rp], (rp, values)
                assert level_for(when.start, when.end, now, settings.retention).rp == rp
                # Only the target of the level's schema has data: raw `value`, or the twin.
                got = _run(influx, levels_panel, when, values)
                reading, other = ("A", "A" + AGG_SUFFIX)[:: 1 if rp == RAW.rp else -1]
                assert got[reading] and not got[other], (rp, got)
                # Each bucket is the mean of the readings in it, whichever level it comes
                # from: windows of unequal counts weigh by count (a mean of the windows'
                # means would not); a year shows the day's mean.
                assert {device for device, _, _ in got[reading]} == readings.keys()
                width = bucket_s * 1000
                for device, times in readings.items():
                    shown = {t for d, t, _ in got[reading] if d == device}
                    assert shown == {t - t % width for t, _ in times}, (rp, device)
                for device, t, v in got[reading]:
                    want = _truth(readings[device], t, width)
                    assert v == pytest.approx(want, rel=1e-9), (rp, device, t)
                # Rain: the worst 60-minute mean of the day. A rolling mean (raw) peaks at or
                # above the worst clock hour; the aggregates give the clock hours themselves.
                rain = _run(influx, rain_panel, when, values)
                peak = max(v for target in rain.values() for _, _, v in target)
                if rp == RAW.rp:
                    assert peak >= max(hourly_rain) - 1e-9
                else:
                    assert peak == pytest.approx(max(hourly_rain), rel=1e-9)
            # Past the raw retention a short range reads the 5-minute level, past theirs hourly.
            for start, rp in (
                (now - 100 * DAY, AGG_5M.rp),
                (now - 1000 * DAY, AGG_1H.rp),
                (now - 2 * timedelta(hours=1), RAW.rp),
            ):
                when = expand.TimeRange(start, start + timedelta(hours=2))
                assert resolve(model, when, influx, sql)["rp"] == [rp]
                assert level_for(when.start, when.end, now, settings.retention).rp == rp
    finally:
        sql.dispose()


def test_the_level_table_agrees_with_level_for(settings: Settings) -> None:
    """Over a grid of ranges and ages, the table answers what retention.level_for says."""
    ensure_retention(settings.influx, settings.retention)
    now = datetime.now(UTC)
    level_table.write(settings.influx, settings.retention, now)
    query = level_table.variable_query("rp")
    spans = (timedelta(minutes=5), timedelta(hours=30), timedelta(hours=34), 6 * DAY, 8 * DAY)
    ages = (timedelta(0), 80 * DAY, 95 * DAY, 700 * DAY, 740 * DAY, 4000 * DAY)
    with InfluxQL.from_settings(settings.influx) as influx:
        for span in spans:
            for age in ages:
                end = now - age
                when = expand.TimeRange(end - span, end)
                rows = influx.rows(expand.influxql(query, when, {}))
                want = level_for(when.start, when.end, now, settings.retention).rp
                assert [r["value"] for r in rows] == [want], (span, age)
