"""When did InfluxDB hold everything? The benchmarks' count polling, and its error bound.

A burst of 100,000 readings is stored in about a second, so polling the count every
0.25 s would put up to a quarter of the figure in the poll's step. `poll_stored` polls
every POLL_S while the end is far, then ever faster as the count nears what was sent
(the rate so far predicts how far off it is), down to FINE_POLL_S: the end costs a few
extra count queries (each one competes with the consumer for influxd), not one every
10 ms for the whole burst.

Its `seconds` are taken when the count query that saw everything returned, so they never
flatter the consumer; the count reached its total after the previous query was sent,
so `resolution_s` (that interval) bounds the error and the reports print it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from pantau.influx.query import InfluxQL, quote_ident

POLL_S = 0.25  # the step while the end is far
FINE_POLL_S = 0.01  # the step near the end
STALL_S = 30.0  # no progress for this long while waiting = the rest is lost


@dataclass(frozen=True, slots=True)
class Stored:
    count: int
    seconds: float  # from `started` until the query that saw `count` returned
    resolution_s: float  # the count got there at most this long before `seconds`


def count_points(influx: InfluxQL, measurement: str | None = None) -> int:
    """Points with a `value` in one measurement, or in all of them."""
    source = quote_ident(measurement) if measurement else "/.*/"
    total = 0
    for row in influx.rows(f"SELECT count(value) FROM {source}"):
        value = row["count"]
        if not isinstance(value, int):
            raise TypeError(f"count is {value!r}")
        total += value
    return total


def next_poll_s(stored: int, expected: int, elapsed_s: float) -> float:
    """Half the time the rate so far says the rest will take, within [FINE, POLL]."""
    if stored <= 0 or elapsed_s <= 0:
        return POLL_S
    remaining_s = (expected - stored) / (stored / elapsed_s)
    return min(POLL_S, max(FINE_POLL_S, remaining_s / 2))


def poll_stored(
    influx: InfluxQL,
    measurement: str,
    expected: int,
    started: float,
    alive: Callable[[], bool],
) -> Stored:
    """Poll the count until it reaches `expected`, stalls for STALL_S or the consumer
    exits."""
    last, changed_at = -1, time.monotonic()
    asked_before = started  # the first poll may come late (after the publishers)
    while True:
        asked = time.monotonic()
        stored = count_points(influx, measurement)
        now = time.monotonic()
        if stored >= expected:
            return Stored(stored, now - started, now - asked_before)
        if stored != last:
            last, changed_at = stored, now
        elif now - changed_at > STALL_S or not alive():
            return Stored(stored, now - started, now - asked_before)
        asked_before = asked
        time.sleep(next_poll_s(stored, expected, now - started))
