"""Mosquitto restarted under the storm scenario's load (the simulator's 13 gateways,
MQTT v5 QoS 1, into ingest on a persistent session).

SIGTERM: Mosquitto saves its state on the way out, so nothing is lost. SIGKILL: it
comes back with its last autosave (pantau.local.mosquitto.MosquittoOptions: every
~autosave_interval_s + 1 s), so what it had acknowledged to a gateway since then and not
yet handed to ingest may be gone: the loss is bounded by that window. Either way every
client is back within 10 s.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from ingest.service import IngestService
from pantau.city import City
from pantau.influx.query import InfluxQL
from pantau.influx.writers import make_writer
from pantau.local import LocalStack
from pantau.local.mosquitto import MosquittoOptions
from pantau.settings import Settings
from pantau.topics import Topics
from pantau.wire import Sample, encode_native
from simulators.fleet import gateway_id
from simulators.publisher import run_scenario
from simulators.report import SimReport
from simulators.scenario import find_scenario, load_scenario
from testkit.mqtt import Collector, Publisher
from testkit.services import FirstArrivals, RulesProcess, wait_until

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


GAP_DEVICES = 60
GAP_RATE = 600.0  # messages/s while the rules service is paused
GAP_PAUSE_S = 3.0


def test_mosquitto_sigkill_gap_is_raised_as_a_data_quality_incident(
    stack: LocalStack, settings: Settings, city: City, postgres_url: str, tmp_path: Path
) -> None:
    """The rules service stalls (SIGSTOP) while devices keep publishing, so the broker
    queues their messages for its session; Mosquitto is SIGKILLed mid-stream and comes
    back from its last autosave. What it had taken since is gone: the rules service sees
    the seq jump when the devices' next messages arrive on its new connection, writes
    `data_quality` points to InfluxDB and opens one uplink-gap incident per kecamatan,
    with a crew alert. Each gap is exactly seqs published in the autosave window before
    the kill, and nothing else is called a gap."""
    devices = sorted((d for d in city.devices.values() if "rssi" in d.metrics), key=lambda d: d.id)
    devices = devices[:GAP_DEVICES]
    topics = Topics(settings.mqtt.root)
    rules = RulesProcess(
        stack,
        settings,
        postgres_url,
        tmp_path / "rules.log",
        PANTAU_RULES__RECEIVE_MAXIMUM="10",  # the rest waits in the broker's session
        PANTAU_RULES__TICK_INTERVAL_S="0",
        PANTAU_RULES__REBUILD_WINDOW_S="0",
        # Mosquitto redelivers a session's messages at once: no late copies to wait for.
        PANTAU_RULES__UPLINK_GAP_SETTLE_S="3",
    )
    rules.start()
    publisher = Publisher(settings.mqtt)
    published_at: dict[tuple[str, int], float] = {}
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    rounds = 0

    def publish_round() -> None:
        nonlocal rounds
        when = start + timedelta(seconds=rounds)
        for d in devices:
            seq = 1000 + rounds
            payload = encode_native(d.id, seq, when, [Sample("rssi", -70.0)])
            publisher.publish(topics.sensor_up(d.id), payload)
            published_at[(d.id, seq)] = time.monotonic()
        rounds += 1

    alerts: Collector | None = None
    try:
        for _ in range(3):
            publish_round()
        publisher.flush()
        time.sleep(1.5)  # judged and acknowledged: the baseline seqs
        connects = rules.log_text().count("connected to")
        rules.signal(signal.SIGSTOP)
        began = time.monotonic()
        while time.monotonic() - began < GAP_PAUSE_S:
            publish_round()
            time.sleep(max(0.0, began + rounds * GAP_DEVICES / GAP_RATE - time.monotonic()))
        stack.mosquitto.kill()
        killed_at = time.monotonic()
        stack.mosquitto.start()
        alerts = Collector(settings.mqtt, f"{settings.mqtt.root}/alerts/crews/+")
        rules.signal(signal.SIGCONT)
        resumed = time.monotonic()
        back_s = wait_until(
            lambda: rules.log_text().count("connected to") > connects, 30, "rules to reconnect"
        )
        assert back_s < RECONNECT_S, rules.log_tail()
        wait_until(publisher.connected, 30, "the devices to reconnect")
        for _ in range(3):
            publish_round()
        publisher.flush()

        def incidents() -> list[Any]:
            with create_engine(postgres_url).connect() as conn:
                return list(
                    conn.execute(
                        text(
                            "SELECT id, zone_id, hazard, evidence_device_ids, "
                            "evidence_peak_value FROM incidents WHERE rule_id = 'uplink-gap'"
                        )
                    )
                )

        seen: list[Any] = []

        def settled() -> bool:
            nonlocal seen
            now = incidents()
            done = bool(now) and now == seen
            seen = now
            return done

        wait_until(settled, 60, "the uplink-gap incidents", poll=2.0)
        took_s = time.monotonic() - resumed
    finally:
        rules.stop()
        publisher.close()
    assert alerts is not None
    alert_bodies = [json.loads(m.payload) for m in alerts.snapshot()]
    alerts.close()

    with InfluxQL(settings.influx.url, settings.influx.database, timeout_s=60) as influx:
        series = influx.query(
            "SELECT missing, after_seq, next_seq, cause FROM data_quality GROUP BY device",
            epoch="ms",
        )
    gaps = [(s.tags["device"], row) for s in series for row in s.rows()]
    assert gaps, "no data_quality point"
    assert {str(row["cause"]) for _, row in gaps} == {"reconnect"}
    window_s = stack.mosquitto.options.autosave_interval_s + 1
    missing_by_device: Counter[str] = Counter()
    for device, row in gaps:
        after, nxt, missing = (int(str(row[k])) for k in ("after_seq", "next_seq", "missing"))
        assert missing == nxt - after - 1 > 0
        for seq in range(after + 1, nxt):
            sent = published_at[(device, seq)]
            # lost: taken by the broker after its last save, so shortly before the kill
            assert killed_at - window_s - 0.5 <= sent <= killed_at, (device, seq)
        missing_by_device[device] += missing
    lost = sum(missing_by_device.values())
    assert lost <= GAP_RATE * window_s

    found = incidents()
    kec = {d: city.devices[d].kecamatan_id for d in missing_by_device}
    assert sorted(r.zone_id for r in found) == sorted(set(kec.values()))
    for r in found:
        assert str(r.hazard).lower() == "data_quality"
        in_zone = sorted(d for d in kec if kec[d] == r.zone_id)
        assert r.evidence_device_ids.split(",") == in_zone
        assert r.evidence_peak_value == sum(missing_by_device[d] for d in in_zone)
    opened = {b["incident_id"] for b in alert_bodies if b["alert"] == "opened"}
    assert opened == {r.id for r in found}
    print(
        f"\nbroker SIGKILL with rules paused: {lost} uplinks lost of {len(published_at)} "
        f"({len(missing_by_device)} devices, {len(found)} kecamatan incidents); rules back "
        f"{back_s:.1f} s after SIGCONT, incidents settled {took_s:.1f} s"
    )
