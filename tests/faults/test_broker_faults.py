"""Mosquitto restarted under the storm scenario's load (the simulator's 13 gateways,
MQTT v5 QoS 1, into ingest on a persistent session).

SIGTERM: Mosquitto saves its state on the way out, so nothing is lost. SIGKILL: it
comes back with its last autosave (pantau.local.mosquitto.MosquittoOptions: every
~autosave_interval_s + 1 s), so what it had acknowledged to a gateway since then and not
yet handed to ingest may be gone: the loss is bounded by that window. Either way every
client is back within 10 s.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

import pytest

from ingest.service import IngestService
from ingest.writers import make_writer
from pantau.city import City
from pantau.influxql import InfluxQL
from pantau.local import LocalStack
from pantau.local.mosquitto import MosquittoOptions
from pantau.settings import Settings
from pantau.topics import Topics
from simulators.fleet import gateway_id
from simulators.publisher import run_scenario
from simulators.report import SimReport
from simulators.scenario import find_scenario, load_scenario
from tests.faults.harness import FirstArrivals, wait_until

pytestmark = pytest.mark.integration

SLICE_S = 1800.0  # the storm's first half hour (325 devices, ~10,000 messages) ...
SPEED = 200.0  # ... in ~9 s of wall time
FAULT_AT_S = 3.0
RECONNECT_S = 10.0

Identity = tuple[str, str, int]  # device, metric, device time in ms


def ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


def stored_identities(settings: Settings) -> Counter[Identity]:
    found: Counter[Identity] = Counter()
    with InfluxQL(settings.influx.url, settings.influx.database, timeout_s=60) as influx:
        for series in influx.query("SELECT value FROM /.*/ GROUP BY device", epoch="ms"):
            for row in series.rows():
                found[(str(row["device"]), series.name, int(str(row["time"])))] += 1
    return found


class Outcome:
    def __init__(
        self,
        report: SimReport,
        stored: Counter[Identity],
        ingest_back_s: float,
        gateways_back_s: dict[str, float],
        sent_rate: float,
    ) -> None:
        self.report = report
        self.stored = stored
        self.ingest_back_s = ingest_back_s
        self.gateways_back_s = gateways_back_s
        self.sent_rate = sent_rate  # readings/s the simulator published

    @property
    def sent(self) -> set[Identity]:
        return {(k.device_id, k.metric, ms(k.time)) for k in self.report.reading_keys}


def storm_through_restart(
    stack: LocalStack, settings: Settings, city: City, restart: Callable[[], None]
) -> Outcome:
    scenario = replace(load_scenario(find_scenario("storm-karawaci"), city), duration_s=SLICE_S)
    ingest = IngestService(settings, city, make_writer(settings.influx))
    ingest.start()
    arrivals = FirstArrivals(settings, Topics(settings.mqtt.root).all_sensor_up)
    reports: list[SimReport] = []
    try:
        assert ingest.wait_subscribed(10)
        sim = threading.Thread(
            target=lambda: reports.append(run_scenario(city, scenario, settings.mqtt, speed=SPEED))
        )
        sim.start()
        time.sleep(FAULT_AT_S)
        connects = ingest.connects
        restart()
        arrivals.reset()
        ingest_back_s = wait_until(
            lambda: ingest.connects > connects and ingest.wait_subscribed(0),
            30,
            "ingest to reconnect",
            poll=0.05,
        )
        gateways = {gateway_id(d.kecamatan_id) for d in city.devices.values()}

        def gateways_back() -> dict[str, float]:
            back: dict[str, float] = {}
            for device, seconds in arrivals.snapshot().items():
                if device not in city.devices:
                    continue  # the storm's deliberate unknown devices
                g = gateway_id(city.devices[device].kecamatan_id)
                back[g] = min(seconds, back.get(g, seconds))
            return back

        wait_until(lambda: set(gateways_back()) == gateways, 30, "every gateway to publish")
        sim.join(timeout=180)
        assert not sim.is_alive(), "the simulator did not finish"
        (report,) = reports
        assert report.completed
        expected = len(report.reading_keys)
        # Settled: the count stops changing (after SIGKILL some never come).
        last = -1

        def settled() -> bool:
            nonlocal last
            now = sum(stored_identities(settings).values())
            done = now == last or now >= expected
            last = now
            return done

        time.sleep(2)
        wait_until(settled, 120, "InfluxDB to settle", poll=3)
        return Outcome(
            report,
            stored_identities(settings),
            ingest_back_s,
            gateways_back(),
            expected / report.wall_s,
        )
    finally:
        arrivals.close()
        ingest.stop()


def test_mosquitto_sigterm_restart_loses_nothing_and_everyone_reconnects(
    stack: LocalStack, settings: Settings, city: City
) -> None:
    outcome = storm_through_restart(stack, settings, city, stack.mosquitto.restart)
    assert outcome.ingest_back_s < RECONNECT_S
    assert max(outcome.gateways_back_s.values()) < RECONNECT_S, outcome.gateways_back_s
    assert set(outcome.stored) == outcome.sent
    assert max(outcome.stored.values()) == 1


def test_mosquitto_sigkill_loses_at_most_the_autosave_window(
    stack: LocalStack, settings: Settings, city: City
) -> None:
    def crash() -> None:
        stack.mosquitto.kill()
        stack.mosquitto.start()

    outcome = storm_through_restart(stack, settings, city, crash)
    assert outcome.ingest_back_s < RECONNECT_S
    assert max(outcome.gateways_back_s.values()) < RECONNECT_S, outcome.gateways_back_s
    stored = set(outcome.stored)
    assert stored <= outcome.sent, "something stored that was never sent"
    assert max(outcome.stored.values()) == 1
    window_s = stack.mosquitto.options.autosave_interval_s + 1
    assert window_s == MosquittoOptions().autosave_interval_s + 1  # the documented default
    lost = len(outcome.sent - stored)
    assert lost <= outcome.sent_rate * window_s, (lost, outcome.sent_rate)
