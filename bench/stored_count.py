"""When did InfluxDB hold everything? The benchmarks' count polling, and its error bound.

A burst of 100,000 readings is stored in about a second, so polling the count every
0.25 s would put up to a quarter of the figure in the poll's step. `poll_stored` polls
every POLL_S while the end is far, then ever faster as the count nears what was sent
(the rate predicts how far off it is), down to FINE_POLL_S: the end costs a few
extra count queries (each one competes with the consumer for influxd), not one every
10 ms for the whole burst.

Its `seconds` are taken when the count query that saw everything returned, so they never
flatter the consumer; the count reached its total after the previous query was sent,
so `resolution_s` (that interval) bounds the error and the reports print it.

A count query over a burst's points takes tens of milliseconds on a busy influxd, and
the first fine poll can come late, so a burst shorter than half a second was seen up to
~0.25 s late. Given `written` (points influxd has accepted into the database since the
start, from its shard statistics: bench.influxd_vars.points_in), `poll_stored` watches
that cheap counter every COUNTER_POLL_S instead, then confirms with one count query; if
the count falls short (other points in the database, e.g. the consumer's own metrics,
made the counter reach the total early), it goes on polling the count as before.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from pantau.influx.query import InfluxQL, quote_ident

POLL_S = 0.25  # the step while the end is far
FINE_POLL_S = 0.01  # the step near the end
STALL_S = 30.0  # no progress for this long while waiting = the rest is lost
COUNTER_POLL_S = 0.02  # the step of the points-written counter (a few ms of influxd's CPU)


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


NEAR = 0.9  # past this share of the total, polled at least every NEAR_POLL_S
NEAR_POLL_S = 0.05


def next_poll_s(stored: int, expected: int, elapsed_s: float, recent_rate: float = 0.0) -> float:
    """Half the time the rest will take at the faster of the rate so far and the rate
    since the previous poll, within [FINE, POLL] (within [FINE, NEAR_POLL_S] past NEAR):
    the drain comes in steps, so a prediction can be late, never by much near the end."""
    if stored <= 0 or elapsed_s <= 0:
        return POLL_S
    rate = max(stored / elapsed_s, recent_rate)
    longest = NEAR_POLL_S if stored >= NEAR * expected else POLL_S
    return min(longest, max(FINE_POLL_S, (expected - stored) / rate / 2))


def _poll(
    read: Callable[[], int],
    expected: int,
    started: float,
    alive: Callable[[], bool],
    step: Callable[[int, float, float], float],
) -> tuple[Stored, bool]:
    """Call `read` until it reaches `expected` (True), or stalls for STALL_S or the
    consumer exits (False); `step(stored, elapsed_s, recent_rate)` is the wait before
    the next read."""
    last, changed_at = -1, time.monotonic()
    asked_before = started  # the first read may come late (after the publishers)
    previous = (started, 0)  # (when, count) of the previous read
    while True:
        asked = time.monotonic()
        stored = read()
        now = time.monotonic()
        seen = Stored(stored, now - started, now - asked_before)
        if stored >= expected:
            return seen, True
        if stored != last:
            last, changed_at = stored, now
        elif now - changed_at > STALL_S or not alive():
            return seen, False
        recent = (stored - previous[1]) / (now - previous[0]) if now > previous[0] else 0.0
        previous, asked_before = (now, stored), asked
        time.sleep(step(stored, now - started, recent))


def poll_written(
    written: Callable[[], int], expected: int, started: float, alive: Callable[[], bool]
) -> Stored | None:
    """Read `written` every COUNTER_POLL_S until it reaches `expected` (that Stored), or
    None if it stalls for STALL_S or the consumer exits first."""
    seen, done = _poll(written, expected, started, alive, lambda *_: COUNTER_POLL_S)
    return seen if done else None


def poll_stored(
    influx: InfluxQL,
    measurement: str,
    expected: int,
    started: float,
    alive: Callable[[], bool],
    written: Callable[[], int] | None = None,
) -> Stored:
    """Poll until the count reaches `expected`, stalls for STALL_S or the consumer
    exits: `written` first if given (see the module's doc), then the count."""
    if written is not None:
        seen = poll_written(written, expected, started, alive)
        if seen is not None:
            count = count_points(influx, measurement)
            if count >= expected:
                return Stored(count, seen.seconds, seen.resolution_s)
    return _poll(
        lambda: count_points(influx, measurement),
        expected,
        started,
        alive,
        lambda stored, elapsed, recent: next_poll_s(stored, expected, elapsed, recent),
    )[0]
