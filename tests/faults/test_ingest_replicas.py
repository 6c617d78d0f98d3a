"""Two ingest replicas sharing four partition sessions at 2,000 readings/s; one is
SIGKILLed and left dead: the survivor takes its partitions (their broker sessions and
spools) and every reading sent is stored exactly once (about 60 s).

Plus the broker behaviour this relies on, checked on the real Mosquitto: a share-group
member that is offline with a persistent session keeps getting its round-robin share
queued, and what it had in flight is sent again to whoever resumes its session.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import paho.mqtt.client as paho
import pytest

from pantau.devices import Device
from pantau.local import LocalStack
from pantau.mqtt import connect_properties, make_client
from pantau.settings import Settings
from pantau.store import make_engine, migrate
from pantau.store.leases import holders
from testkit.mqtt import Collector, Publisher
from testkit.services import (
    IngestProcess,
    PacedLoad,
    stored_count,
    stored_keys,
    wait_ingesting,
    wait_until,
)

pytestmark = pytest.mark.integration

RATE = 2000.0
PARTITIONS = 4
TAKEOVER_S = 15.0


def _owners(url: str) -> Counter[str]:
    engine = make_engine(url)
    try:
        return Counter(lease.owner for lease in holders(engine, "ingest") if lease.epoch > 0)
    finally:
        engine.dispose()


def test_a_dead_ingest_replicas_partitions_move_and_nothing_is_lost(
    stack: LocalStack,
    settings: Settings,
    devices: list[Device],
    probe: Device,
    postgres_url: str,
    tmp_path: Path,
) -> None:
    spool = tmp_path / "spool"  # shared by the replicas: a partition's spool moves with it
    env = {
        "PANTAU_INGEST__PARTITIONS": str(PARTITIONS),
        "PANTAU_DATABASE_URL": postgres_url,
        # 2,000/s from 200 devices is 10x real time per device: the per-device budget
        # would shed it (as it should a flood); it is not what this test is about.
        "PANTAU_INGEST__RATE_LIMIT_FACTOR": "0",
    }
    engine = make_engine(postgres_url)
    migrate(engine)  # before the replicas do, so their leases can be watched from the start
    engine.dispose()
    a = IngestProcess(stack, settings, spool, tmp_path / "a.log", PANTAU_REPLICA="ingest-a", **env)
    b = IngestProcess(stack, settings, spool, tmp_path / "b.log", PANTAU_REPLICA="ingest-b", **env)
    a.start()
    b.start()
    try:
        wait_until(
            lambda: _owners(postgres_url) == Counter({"ingest-a": 2, "ingest-b": 2}),
            240,  # two Python processes starting on a loaded machine
            "two partitions each",
        )
        wait_ingesting(settings, probe)
        dead_letters = Collector(settings.mqtt, f"{settings.mqtt.root}/deadletter/#")
        load = PacedLoad(settings, devices, RATE).start()
        wait_until(lambda: stored_count(settings) > 2000, 60, "both replicas storing")
        time.sleep(2)
        b.kill()  # and never restarted
        killed_at = time.monotonic()
        at_kill = load.total
        takeover_s = wait_until(
            lambda: _owners(postgres_url) == Counter({"ingest-a": PARTITIONS}),
            60,
            "ingest-a to hold every partition",
        )
        time.sleep(max(0.0, 5 - (time.monotonic() - killed_at)))
        load.stop()
        try:
            wait_until(lambda: stored_count(settings) >= load.total, 120, "every reading stored")
        finally:
            dead = [(m.topic, m.payload[:200]) for m in dead_letters.snapshot()]
            dead_letters.close()
        assert not dead, dead[:3]
        assert a.alive(), a.log_tail()
        assert takeover_s < TAKEOVER_S, f"partitions moved after {takeover_s:.1f} s"
        assert at_kill < load.total  # the load went on through the kill
        keys = stored_keys(settings)
        assert sum(keys.values()) == load.total, "lost or extra readings"
        assert set(keys) == load.keys, "stored points are not the points sent"
        assert max(keys.values()) == 1, "a (device, time) stored twice"
        # ingest-a resumed ingest-b's partition sessions (their broker backlog) by name.
        log = a.log_text()
        assert "runs ingest partition" in log and b.kills == 1
    finally:
        a.stop()
        b.stop()


def _member(settings: Settings, name: str, got: list[str], *, ack: bool = True) -> paho.Client:
    """A share-group member on a persistent session (one hour), acknowledging or not."""
    client = make_client(settings.mqtt, name, manual_ack=not ack)
    client.on_message = lambda _c, _u, m: got.append(m.payload.decode())
    client.connect(
        settings.mqtt.host,
        settings.mqtt.port,
        clean_start=False,
        properties=connect_properties(3600, 100),
    )
    client.loop_start()
    return client


def test_mosquitto_queues_for_an_offline_share_member_and_resends_its_inflight(
    stack: LocalStack, settings: Settings, topic_root: str
) -> None:
    group, topic = f"$share/{topic_root}/{topic_root}/x", f"{topic_root}/x"
    got0: list[str] = []
    got1: list[str] = []
    p0 = _member(settings, f"{topic_root}-p0", got0)
    p1 = _member(settings, f"{topic_root}-p1", got1, ack=False)  # receives, never acknowledges
    for c in (p0, p1):
        wait_until(c.is_connected, 10, "member connected")
        c.subscribe(group, qos=1)
    time.sleep(0.5)
    publisher = Publisher(settings.mqtt)
    try:
        for i in range(40):
            publisher.publish(topic, f"m{i}".encode())
        wait_until(lambda: len(got0) + len(got1) == 40, 10, "40 delivered")
        # Round robin, and p1 holds its 20 unacknowledged: then its process "dies".
        assert len(got0) == 20 and len(got1) == 20
        p1.loop_stop()
        sock = p1.socket()
        assert sock is not None
        sock.close()  # no DISCONNECT: as a SIGKILLed process leaves it
        time.sleep(1.0)
        for i in range(40, 100):
            publisher.publish(topic, f"m{i}".encode())
        time.sleep(1.0)
        # Mosquitto does not skip the offline member: half of the 60 wait in its session.
        assert len(got0) == 50
        resumed: list[str] = []
        p1b = _member(settings, f"{topic_root}-p1", resumed)
        wait_until(lambda: len(resumed) >= 50, 10, "p1's session resumed by a new process")
        time.sleep(0.5)
        assert len(resumed) == 50  # its 20 in flight again, and the 30 queued
        assert set(got0) | set(resumed) == {f"m{i}" for i in range(100)}
        p1b.disconnect()
    finally:
        publisher.close()
        p0.disconnect()
        p0.loop_stop()
