"""run_scenario's `pace`: a benchmark holds the stream back (bench.soak's rounds) and
the stream that goes out is the same, only later."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from pantau.city import load_city
from pantau.settings import Settings
from simulators.publisher import run_scenario
from simulators.scenario import find_scenario, load_scenario

pytestmark = pytest.mark.integration


def test_pace_holds_messages_past_the_gate_and_changes_nothing_else(settings: Settings) -> None:
    city = load_city()
    scenario = replace(load_scenario(find_scenario("calm-day"), city), duration_s=120)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    free = run_scenario(city, scenario, settings.mqtt, speed=None, start=start)

    gate = start + timedelta(seconds=60)
    asked: list[tuple[datetime, float]] = []
    opened = threading.Event()

    def pace(sim_time: datetime) -> bool:
        asked.append((sim_time, time.monotonic()))
        return opened.is_set() or sim_time < gate

    opener = threading.Timer(0.5, opened.set)
    t0 = time.monotonic()
    opener.start()
    held = run_scenario(city, scenario, settings.mqtt, speed=None, start=start, pace=pace)
    opener.join()

    assert held.completed and held.failed == 0
    assert (held.messages, held.reading_keys, held.digest) == (
        free.messages,
        free.reading_keys,
        free.digest,
    )
    # A message past the gate was held: asked about before the gate opened and after.
    past = [at - t0 for sim_time, at in asked if sim_time >= gate]
    assert past and min(past) < 0.5 <= max(past)
