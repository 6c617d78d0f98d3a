"""Two vision workers share the ten cameras of config/cameras.yaml (leases in
PostgreSQL, the camera simulator serving every camera); one is SIGKILLed and left dead:
every camera is analysed again within 15 s, none by the survivor before the dead
worker's lease on it expired, and no camera is analysed by two workers for longer than
one lease (about 60 s)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from sqlalchemy import text

from pantau.cameras import load_cameras
from pantau.city import load_city
from pantau.devices import default_config_dir
from pantau.local import LocalStack
from pantau.local.ports import free_port
from pantau.mqtt import make_client
from pantau.settings import Settings
from pantau.store import make_engine, migrate
from pantau.store.leases import Lease, holders, parse_db_time
from testkit.services import ServiceProcess, wait_until

pytestmark = pytest.mark.integration

TTL_S = 10.0  # the default lease
TAKEOVER_S = 15.0


class Analyses:
    """Every camera analysis on the broker: (arrival, camera, the worker that sent it)."""

    def __init__(self, settings: Settings) -> None:
        self.seen: list[tuple[float, str, str]] = []
        self._lock = threading.Lock()
        self._client = make_client(settings.mqtt, f"watch-{settings.mqtt.root}", manual_ack=False)
        self._client.on_message = self._on_message
        self._client.connect(settings.mqtt.host, settings.mqtt.port)
        self._client.subscribe(f"{settings.mqtt.root}/cameras/+/analysis", qos=1)
        self._client.loop_start()

    def _on_message(self, _c: paho.Client, _u: Any, message: paho.MQTTMessage) -> None:
        props = dict(getattr(message.properties, "UserProperty", []) or [])
        camera = message.topic.split("/")[-2]
        with self._lock:
            self.seen.append((time.monotonic(), camera, props.get("replica", "?")))

    def snapshot(self) -> list[tuple[float, str, str]]:
        with self._lock:
            return list(self.seen)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


@pytest.fixture
def camera_config(tmp_path: Path) -> Iterator[Path]:
    """The city's config with every camera pointed at a camera simulator of our own."""
    port = free_port()
    config = tmp_path / "config"
    shutil.copytree(default_config_dir(), config)
    cameras = config / "cameras.yaml"
    cameras.write_text(cameras.read_text().replace("127.0.0.1:8090/", f"127.0.0.1:{port}/"))
    with (tmp_path / "camera-sim.log").open("wb") as log:
        sim = subprocess.Popen(
            [sys.executable, "-m", "simulators.camera", "serve", "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    def serving() -> bool:
        assert sim.poll() is None, (tmp_path / "camera-sim.log").read_text()
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    try:
        wait_until(serving, 120, "the camera simulator")
        yield config
    finally:
        sim.terminate()
        sim.wait(timeout=30)


def _leases(url: str) -> tuple[list[Lease], datetime]:
    """The vision leases and the database's clock (their expiries are on it)."""
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            now = parse_db_time(conn.execute(text("SELECT now()")).scalar_one())
        return holders(engine, "vision"), now
    finally:
        engine.dispose()


def _owners(url: str) -> dict[str, str]:
    return {lease.key: lease.owner for lease in _leases(url)[0]}


def test_a_dead_vision_workers_cameras_move_within_15_s(
    stack: LocalStack,
    settings: Settings,
    postgres_url: str,
    camera_config: Path,
    tmp_path: Path,
) -> None:
    cameras = sorted(load_cameras(load_city(camera_config)))
    assert len(cameras) == 10
    engine = make_engine(postgres_url)
    migrate(engine)
    engine.dispose()
    env = {
        "PANTAU_VISION__SHARE_CAMERAS": "true",
        "PANTAU_DATABASE_URL": postgres_url,
        "PANTAU_CONFIG_DIR": str(camera_config),
        "PANTAU_EVIDENCE_DIR": str(tmp_path / "evidence"),
    }
    workers = {
        name: ServiceProcess(
            "vision", stack, settings, tmp_path / f"{name}.log", {**env, "PANTAU_REPLICA": name}
        )
        for name in ("vision-a", "vision-b")
    }
    analyses = Analyses(settings)
    for w in workers.values():
        w.launch()
    try:

        def split_and_analysed() -> bool:
            for w in workers.values():
                assert w.alive(), w.log_tail()
            owners = _owners(postgres_url)
            # By the worker that holds the camera now: the one that held it before the
            # split may have analysed it a moment ago, and vision-b's first analyses can
            # come seconds after its leases on a loaded machine.
            recent = {
                c for t, c, r in analyses.snapshot() if t > time.monotonic() - 3 and owners[c] == r
            }
            shares = Counter(owners.values())
            return shares == Counter({"vision-a": 5, "vision-b": 5}) and recent == set(cameras)

        wait_until(split_and_analysed, 240, "five cameras each, all analysed")
        moved = sorted(c for c, owner in _owners(postgres_url).items() if owner == "vision-b")
        workers["vision-b"].kill()  # and never restarted
        killed_at = time.monotonic()
        leases, db_now = _leases(postgres_url)
        # When each of vision-b's leases expires, in seconds after the kill (at least).
        expires_in = {
            lease.key: (lease.expires_at - db_now).total_seconds()
            for lease in leases
            if lease.key in moved
        }
        assert set(expires_in) == set(moved) and all(
            lease.owner == "vision-b" for lease in leases if lease.key in moved
        ), leases

        def all_analysed_by_a() -> bool:
            by_a = {c for t, c, r in analyses.snapshot() if t > killed_at and r == "vision-a"}
            return by_a == set(cameras)

        wait_until(all_analysed_by_a, 60, "vision-a analysing every camera")
        seen = analyses.snapshot()
        first_after = {
            c: min(t for t, cam, r in seen if cam == c and t > killed_at and r == "vision-a")
            - killed_at
            for c in moved
        }
        assert max(first_after.values()) < TAKEOVER_S, first_after
        # Fencing: vision-a analyses none of them while vision-b's lease on it could
        # still be live (it takes a key only once expired, then starts the camera).
        early = {
            c: (first_after[c], expires_in[c]) for c in moved if first_after[c] < expires_in[c]
        }
        assert not early, f"analysed by vision-a before vision-b's lease expired: {early}"
        assert workers["vision-a"].alive(), workers["vision-a"].log_tail()
        # Two workers on one camera: seconds in which both sent an analysis of it, over
        # the whole run (the start-up split and the kill included).
        for camera in cameras:
            workers_by_second: dict[int, set[str]] = {}
            for t, c, r in seen:
                if c == camera:
                    workers_by_second.setdefault(int(t), set()).add(r)
            both = sum(1 for rs in workers_by_second.values() if len(rs) > 1)
            assert both < TTL_S, f"{camera} analysed by two workers in {both} seconds"
        assert {r for _, _, r in seen} == {"vision-a", "vision-b"}
    finally:
        analyses.close()
        for w in workers.values():
            w.stop()
