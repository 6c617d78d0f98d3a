from __future__ import annotations

from datetime import UTC, datetime

from pantau.influx.lineprotocol import tag_value, to_line
from pantau.readings import Reading


def test_milliseconds_are_exact() -> None:
    # 0.123 s as a float timestamp is 122.99999 ms: integer arithmetic must keep 123.
    when = datetime(2026, 11, 27, 20, 0, 0, 123000, tzinfo=UTC)
    line = to_line(
        Reading(device_id="d", metric="battery", value=1.0, unit="%", time=when), ",device=d"
    )
    assert line.endswith(f" {int(when.replace(microsecond=0).timestamp()) * 1000 + 123}")
    assert ",seq=" not in line


def test_tag_values_are_escaped() -> None:
    assert tag_value("Karang Tengah,x=y") == r"Karang\ Tengah\,x\=y"
