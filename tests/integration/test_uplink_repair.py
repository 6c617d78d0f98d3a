"""rules.gaps repair against a real InfluxDB: the uplinks of a seq gap that ingest
stored are read back by device and seq (rules.history.read_uplinks), in the form ingest
writes them (pantau.influx.lineprotocol), and are no gap."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pantau.city import City, load_city
from pantau.influx.lineprotocol import series_key, to_line
from pantau.influx.query import InfluxQL
from pantau.influx.writers import make_writer
from pantau.readings import Reading
from pantau.settings import Settings
from rules.gaps import UplinkGaps
from rules.history import read_uplinks

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 28, 8, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def city() -> City:
    return load_city()


def at(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


def reading(device: str, seq: int | None, metric: str = "water_level") -> Reading:
    base = seq if seq is not None else 100
    return Reading(
        device_id=device, metric=metric, value=base / 10, unit="cm", time=at(base - 100), seq=seq
    )


def test_a_gap_ingest_stored_is_read_back_by_seq_and_judged_late(
    settings: Settings, city: City
) -> None:
    a, b = sorted(city.devices)[:2]
    stored = [reading(a, s) for s in range(100, 106)]
    stored.append(reading(a, 102, "flow"))  # a second metric of uplink 102
    stored.append(reading(b, 102))  # another device's uplink with the same seq
    lines = [to_line(r, series_key(city.devices[r.device_id])) for r in stored]
    # Not readings: a point of the device's without value or seq, and a catalogue
    # metric of the device's stored without a seq (SenML carries none).
    lines.append(
        f"data_quality,device={a},kind=uplink_gap,cause=device missing=1i "
        f"{int(at(3).timestamp() * 1000)}"
    )
    no_seq = Reading(device_id=a, metric="rainfall", value=1.0, unit="mm", time=at(3.5))
    lines.append(to_line(no_seq, series_key(city.devices[a])))
    writer = make_writer(settings.influx)
    try:
        writer.write(lines)
    finally:
        writer.close()

    with InfluxQL.from_settings(settings.influx) as influx:
        found = read_uplinks(influx, city, a, after_seq=100, next_seq=105, start=at(0), end=at(5))
    assert sorted((r.seq, r.metric) for r in found) == [
        (101, "water_level"),
        (102, "flow"),
        (102, "water_level"),
        (103, "water_level"),
        (104, "water_level"),
    ]
    first = next(r for r in found if r.seq == 101)
    assert first == reading(a, 101)  # device, metric, value, unit, time and seq

    gaps = UplinkGaps(city, settings.influx, timedelta(minutes=5))
    try:
        gaps.observe(a, 100, at(0), 1, at(0))
        gaps.observe(a, 105, at(5), 2, at(10))  # 101..104 never reached this session
        gaps.observe(a, 103, at(3), 2, at(11))  # a late copy (a settle of 0: after the jump)
        assert gaps.changes(at(11)) == []  # no gap, no incident
        assert (gaps.gaps, gaps.uplinks_repaired, gaps.gaps_repaired) == (0, 3, 1)
        repaired = gaps.take_repaired()
        assert sorted({r.seq or 0 for r in repaired}) == [101, 102, 104]
        assert len(repaired) == 4 and all(r.device_id == a for r in repaired)
    finally:
        gaps.close()
