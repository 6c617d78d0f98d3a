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


def test_a_gap_ingest_stored_is_read_back_by_seq_and_time_and_judged_late(
    settings: Settings, city: City
) -> None:
    a, b = sorted(city.devices)[:2]
    # The device's uplinks 100..105: native (with seq) but 103, SenML (none), at 3.5 s.
    stored = [reading(a, s) for s in (100, 101, 102, 104, 105)]
    stored.append(reading(a, 102, "flow"))  # a second metric of uplink 102
    stored.append(reading(b, 102))  # another device's uplink with the same seq
    senml = Reading(device_id=a, metric="rainfall", value=1.0, unit="mm", time=at(3.5))
    stored.append(senml)
    lines = [to_line(r, series_key(city.devices[r.device_id])) for r in stored]
    # Not a reading: a point of the device's without value or seq.
    lines.append(
        f"data_quality,device={a},kind=uplink_gap,cause=device missing=1i "
        f"{int(at(3).timestamp() * 1000)}"
    )
    writer = make_writer(settings.influx)
    try:
        writer.write(lines)
    finally:
        writer.close()

    with InfluxQL.from_settings(settings.influx) as influx:
        found = read_uplinks(influx, city, a, after_seq=100, next_seq=105, start=at(0), end=at(5))
    assert sorted((r.time, r.metric, r.seq or 0) for r in found) == [
        (at(1), "water_level", 101),
        (at(2), "flow", 102),
        (at(2), "water_level", 102),
        (at(3.5), "rainfall", 0),
        (at(4), "water_level", 104),
    ]
    assert reading(a, 101) in found and senml in found  # device, metric, value, unit, time, seq

    gaps = UplinkGaps(city, settings.influx, timedelta(minutes=5))
    try:
        gaps.observe(a, 100, at(0), 1, at(0))
        gaps.observe(a, 105, at(5), 2, at(10))  # 101..104 never reached this session
        gaps.observe(a, 101, at(1), 2, at(11))  # a late copy (a settle of 0: after the jump)
        assert gaps.changes(at(11)) == []  # no gap, no incident
        assert (gaps.gaps, gaps.uplinks_repaired, gaps.gaps_repaired) == (0, 3, 1)
        repaired = gaps.take_repaired()
        assert sorted((r.time, r.metric) for r in repaired) == [
            (at(2), "flow"),
            (at(2), "water_level"),
            (at(3.5), "rainfall"),
            (at(4), "water_level"),
        ]
    finally:
        gaps.close()
