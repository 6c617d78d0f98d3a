"""Hypothesis strategies for near-valid native device messages (pantau.wire's JSON):
the real fields, values mostly right, now and then wrong in every way a device gets
them wrong. The fast-path tests of ingest (test_ingest_fastpath) and of rules
(test_rules_fastread) share them; what one test feeds and the other does not is a
parameter here, so each test says its differences where it builds its messages."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import hypothesis.strategies as st

from pantau.city import City, load_city
from pantau.topics import Topics

CITY: City = load_city()
TOPICS = Topics("fast")
DEVICE = min(d.id for d in CITY.devices.values() if "water_level" in d.metrics)
OTHER = max(d.id for d in CITY.devices.values() if d.id != DEVICE)
NOW = datetime(2026, 11, 28, 12, tzinfo=UTC)

METRICS = ("water_level", "rssi", "gate_opening", "battery", "")
units = st.none() | st.sampled_from(["cm", "m", "mm", "dBm", "%", "ft", ""])
oddities: st.SearchStrategy[object] = (
    st.none() | st.booleans() | st.text(max_size=5) | st.just([]) | st.just({})
)
# Either side of the age (7 days) and skew (5 minutes) limits around NOW.
epochs = st.floats(
    min_value=(NOW - timedelta(days=8)).timestamp(),
    max_value=(NOW + timedelta(minutes=10)).timestamp(),
)


def times(*, local_offset: bool) -> st.SearchStrategy[object]:
    """Times as devices write them: epoch seconds, ISO 8601 with and without an
    offset, integers far out of range; `local_offset`: also ISO 8601 in the machine's
    own zone (an offset other than +00:00 wherever the tests run off UTC)."""
    iso = epochs.map(lambda s: datetime.fromtimestamp(s, UTC).isoformat())
    naive = epochs.map(lambda s: datetime.fromtimestamp(s, UTC).isoformat().replace("+00:00", ""))
    local = epochs.map(lambda s: datetime.fromtimestamp(s, UTC).astimezone().isoformat())
    big = st.integers(min_value=-(10**20), max_value=10**20)
    if local_offset:
        return epochs | iso | naive | local | big
    return epochs | iso | naive | big


def numbers(*, more_extremes: Sequence[float] = ()) -> st.SearchStrategy[float]:
    """Values in and out of the catalogue's ranges, and the extremes of JSON numbers."""
    extremes = [1e308, -1e308, 10**400, *more_extremes, 1500, 1500.0001, 0, -0.0]
    return (
        st.floats(min_value=-200, max_value=2000)
        | st.integers(min_value=-200, max_value=2000)
        | st.sampled_from(extremes)
    )


def readings(
    metrics: Sequence[str], values: st.SearchStrategy[object], at: st.SearchStrategy[object]
) -> st.SearchStrategy[dict[str, Any]]:
    """One entry of a message's "readings", any of its fields possibly wrong."""
    return st.fixed_dictionaries(
        {"metric": st.sampled_from(list(metrics)), "value": values},
        optional={"unit": units, "time": at, "extra": oddities},
    )


# Mostly right: the metrics and units of the device, values and times either side of
# the limits (range, age, skew), so both paths accept most and reject at the edges.
plain_messages = st.fixed_dictionaries(
    {
        "device": st.just(DEVICE),
        "time": epochs,
        "readings": st.lists(
            st.fixed_dictionaries(
                {
                    "metric": st.sampled_from(["water_level", "rssi", "gate_opening"]),
                    "value": st.floats(min_value=-150, max_value=1600) | st.booleans(),
                },
                optional={"unit": st.sampled_from(["cm", "m", "dBm", "%"]), "time": epochs},
            ),
            min_size=1,
            max_size=3,
        ),
    },
    optional={"seq": st.integers(min_value=0, max_value=2**63)},
)


def any_messages(
    at: st.SearchStrategy[object],
    entries: st.SearchStrategy[dict[str, Any]],
    *,
    odd_fields: bool,
) -> st.SearchStrategy[dict[str, Any]]:
    """A message of this device or another with times `at` and readings `entries`
    (or oddities among them); `odd_fields`: device, time and the readings list
    themselves may be oddities too (not a string, not a list)."""
    device: st.SearchStrategy[object] = st.just(DEVICE) | st.just(OTHER)
    listed: st.SearchStrategy[object] = st.lists(entries | oddities, min_size=0, max_size=4)
    if odd_fields:
        device, at, listed = device | oddities, at | oddities, listed | oddities
    return st.fixed_dictionaries(
        {"device": device, "time": at, "readings": listed},
        optional={
            "seq": st.none() | st.integers(min_value=-5, max_value=2**64) | st.booleans(),
            "extra": oddities,
        },
    )
