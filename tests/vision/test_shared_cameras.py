"""Vision workers sharing cameras through leases (vision.share_cameras), fenced: a worker
publishes nothing for a camera once another worker may hold its lease. A real
VisionService on Mosquitto with the camera simulator's HTTP server as the cameras and
the leases in SQLite; the other worker is the lease kernel itself (`Leases`), so the
test knows to the millisecond when it took a camera."""

from __future__ import annotations

import dataclasses
import sqlite3
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine

from pantau.cameras import Camera, SourceKind
from pantau.clock import Clock
from pantau.frame_analysis import decode_analysis
from pantau.settings import Settings
from pantau.store import make_engine, migrate
from pantau.store.leases import Leases
from simulators.camera.scene import RoadScene, Vehicle
from simulators.camera.server import CameraFeed, CameraServer
from testkit.mqtt import Collector, wait_for
from vision.service import VisionService
from vision.sources import Frame, FrameSource, open_source

pytestmark = pytest.mark.integration

ROAD = [Vehicle(0, 100, 80, 70, (40, 40, 180)), Vehicle(1, 400, 60, 90, (200, 200, 200))]
CLOSE_S = 1.5


class SlowToClose(FrameSource):
    """A real snapshot source whose camera takes CLOSE_S to hang up (an RTSP TEARDOWN to
    a slow camera): stopping cameras one after the other then takes seconds."""

    def __init__(self, inner: FrameSource) -> None:
        self._inner = inner

    def open(self) -> None:
        self._inner.open()

    def read(self) -> Frame | None:
        return self._inner.read()

    def close(self) -> None:
        time.sleep(CLOSE_S)
        self._inner.close()


def analyses(published: Collector) -> list[tuple[str, str, datetime]]:
    """Every analysis on the broker so far: (replica, camera, frame time)."""
    out = []
    for message in published.snapshot():
        props = dict(getattr(message.properties, "UserProperty", []) or [])
        analysis = decode_analysis(bytes(message.payload))
        out.append((props.get("replica", "?"), analysis.camera_id, analysis.time))
    return out


@pytest.fixture
def road_cameras(cameras: dict[str, Camera]) -> Iterator[dict[str, Camera]]:
    """Four of the registry's traffic cameras, served by the camera simulator."""
    ids = sorted(c for c in cameras if c.startswith("cam-traffic-"))[:4]
    server = CameraServer({c: CameraFeed(RoadScene(vehicles=list(ROAD)), fps=5.0) for c in ids})
    server.start()
    try:
        yield {
            c: dataclasses.replace(
                cameras[c],
                source_kind=SourceKind.SNAPSHOT,
                url=server.url(c, "snapshot.jpg"),
                sample_fps=5.0,
            )
            for c in ids
        }
    finally:
        server.stop()


@pytest.fixture
def lease_db(tmp_path: Path) -> Iterator[tuple[Engine, Path]]:
    path = tmp_path / "leases.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate(engine)
    yield engine, path
    engine.dispose()


def slow_source(camera: Camera, clock: Clock) -> FrameSource:
    return SlowToClose(open_source(camera.source_kind, camera.url, clock, camera.sample_fps))


def vision_a(
    settings: Settings, cameras: dict[str, Camera], engine: Engine, tmp_path: Path, ttl_s: float
) -> VisionService:
    return VisionService(
        settings.mqtt,
        cameras,
        evidence_dir=tmp_path / "evidence",
        client_id=f"vision-a-{settings.mqtt.root}",
        source_factory=slow_source,
        leases=Leases(engine, "vision", "vision-a", ttl_s=ttl_s),
        period_s=0.5,
    )


def test_a_camera_given_back_is_no_longer_published_by_the_worker_that_had_it(
    settings: Settings,
    road_cameras: dict[str, Camera],
    lease_db: tuple[Engine, Path],
    tmp_path: Path,
) -> None:
    engine, _ = lease_db
    keys = sorted(road_cameras)
    published = Collector(settings.mqtt, f"{settings.mqtt.root}/cameras/+/analysis")
    service = vision_a(settings, road_cameras, engine, tmp_path, ttl_s=10.0)
    service.start()
    other = Leases(engine, "vision", "vision-b", ttl_s=10.0)
    taken: dict[str, datetime] = {}  # camera -> when vision-b held it (at the latest)
    stop = threading.Event()

    def vision_b() -> None:
        while not stop.wait(0.02):
            held, _ = other.balance(keys)
            now = datetime.now(UTC)
            for lease in held:
                taken.setdefault(lease.key, now)

    b = threading.Thread(target=vision_b)
    try:
        wait_for(
            lambda: {c for r, c, _ in analyses(published) if r == "vision-a"} == set(keys),
            30,
            "vision-a analysing all four cameras alone",
        )
        b.start()  # vision-b is live: at its next balance vision-a gives back two cameras
        wait_for(lambda: len(taken) == 2, 15, "vision-b taking its share")
        # The two given back and their slow hang-ups: long enough for a worker that
        # stops them one after the other to publish frames it read after vision-b's take.
        time.sleep(2 * CLOSE_S + 1.0)
        kept_from = datetime.now(UTC)
        time.sleep(1.0)
    finally:
        stop.set()
        if b.is_alive():
            b.join(timeout=10)
        service.stop()
        published.close()
    seen = analyses(published)
    late = [
        (camera, (at - taken[camera]).total_seconds())
        for r, camera, at in seen
        if r == "vision-a" and camera in taken and at > taken[camera]
    ]
    assert late == [], f"vision-a published frames read after vision-b took the camera: {late}"
    # vision-a still analyses the two it kept.
    kept = {c for r, c, at in seen if r == "vision-a" and at > kept_from}
    assert kept == set(keys) - set(taken)


def test_a_worker_that_cannot_renew_stops_publishing_before_its_leases_may_expire(
    settings: Settings,
    road_cameras: dict[str, Camera],
    lease_db: tuple[Engine, Path],
    tmp_path: Path,
) -> None:
    """The store hangs (a lock held, as a stuck PostgreSQL or a network that drops
    packets without resetting): the balance blocks for the driver's 30 s, longer than
    the lease. Nothing is published past the ttl; after the store answers, the leases
    (expired, but taken by nobody) are renewed and publishing resumes."""
    engine, path = lease_db
    ttl_s = 2.0
    keys = set(road_cameras)
    published = Collector(settings.mqtt, f"{settings.mqtt.root}/cameras/+/analysis")
    service = vision_a(settings, road_cameras, engine, tmp_path, ttl_s=ttl_s)
    service.start()
    locker = sqlite3.connect(path, timeout=30, isolation_level=None)
    try:
        wait_for(
            lambda: {c for r, c, _ in analyses(published) if r == "vision-a"} == keys,
            30,
            "vision-a analysing all four cameras",
        )
        locker.execute("BEGIN EXCLUSIVE")  # every renewal waits from here on
        locked_at = datetime.now(UTC)
        time.sleep(ttl_s + 3.0)
        locker.execute("COMMIT")
        unlocked_at = datetime.now(UTC)
        wait_for(
            lambda: {c for r, c, at in analyses(published) if at > unlocked_at} == keys,
            15,
            "vision-a publishing again once the store answers",
        )
    finally:
        if locker.in_transaction:
            locker.execute("ROLLBACK")
        locker.close()
        service.stop()
        published.close()
    # The last renewal was before the lock: every lease ended by locked_at + ttl.
    after_expiry = [
        (c, (at - locked_at).total_seconds())
        for _, c, at in analyses(published)
        if locked_at + timedelta(seconds=ttl_s) < at < unlocked_at
    ]
    assert after_expiry == [], f"published after the leases may have expired: {after_expiry}"
    assert service.fenced > 0
