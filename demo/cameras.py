"""The demo's cameras: the camera simulator serving every registry camera on a free port
(flood cameras' water following their stations through the storm, traffic cameras a
busy street), and the vision service analysing them in the storm's simulated time.

Time: the fleet plays the storm at `speed`; the cameras and vision run on a clock that
starts at the same wall instant as the fleet's (`FleetStart`), so a frame stamped t
shows the water the station reported at t.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path

from pantau.cameras import Camera, CameraKind, SourceKind
from pantau.city import City
from pantau.settings import MqttSettings
from pantau.store.leases import Leases
from simulators.camera.__main__ import street
from simulators.camera.scene import RoadScene
from simulators.camera.server import CameraFeed, CameraServer, Scene
from simulators.camera.station import StationDrain, station_levels
from simulators.scenario import Scenario
from vision.service import VisionService


class FleetStart:
    """The wall clock, remembering the first time it is read: the fleet's publisher
    anchors its simulated clock on that reading, and so do the cameras."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.began: datetime | None = None

    def now(self) -> datetime:
        t = datetime.now(UTC)
        with self._lock:
            if self.began is None:
                self.began = t
        return t


class StormClock:
    """Simulated storm time: `start` until the fleet begins, then `speed` times faster
    than the wall clock from there."""

    def __init__(self, fleet: FleetStart, start: datetime, speed: float) -> None:
        self._fleet, self._start, self._speed = fleet, start, speed

    def now(self) -> datetime:
        began = self._fleet.began
        if began is None:
            return self._start
        return self._start + (datetime.now(UTC) - began) * self._speed


@contextmanager
def cameras_running(
    city: City,
    registry: Mapping[str, Camera],
    *,
    scenario: Scenario,
    start: datetime,
    clock: StormClock,
    mqtt: MqttSettings,
    evidence_dir: Path,
    workers: Sequence[Leases] = (),
    period_s: float = 2.0,
) -> Iterator[tuple[dict[str, Camera], list[VisionService]]]:
    """Serve the registry's cameras and analyse them until the block ends; yields the
    cameras as served (their URLs on the simulator) and the vision services: one
    analysing every camera, or with `workers` one per lease holder, sharing the cameras
    as `vision.share_cameras` workers do (re-balanced every `period_s`)."""
    stations = {c.station for c in registry.values() if c.station is not None}
    levels = station_levels(city, scenario, start, stations)
    feeds: dict[str, CameraFeed] = {}
    for i, camera in enumerate(sorted(registry.values(), key=lambda c: c.id)):
        scene: Scene
        if camera.kind is CameraKind.FLOOD and camera.station in levels:
            scene = StationDrain(camera, levels[camera.station], clock.now, seed=i)
        else:
            scene = RoadScene(vehicles=street(i), seed=i)
        feeds[camera.id] = CameraFeed(scene, camera.sample_fps)
    server = CameraServer(feeds)
    server.start()
    leaf = {SourceKind.SNAPSHOT: "snapshot.jpg"}
    served = {
        c.id: dataclasses.replace(c, url=server.url(c.id, leaf.get(c.source_kind, "stream.mjpg")))
        for c in registry.values()
    }
    with ExitStack() as running:
        running.callback(server.stop)
        visions = [
            VisionService(
                mqtt,
                served,
                evidence_dir=evidence_dir,
                client_id=f"pantau-demo-vision-{w.owner}",
                clock=clock,
                leases=w,
                period_s=period_s,
            )
            for w in workers
        ] or [
            VisionService(
                mqtt, served, evidence_dir=evidence_dir, client_id="pantau-demo-vision", clock=clock
            )
        ]
        for vision in visions:
            vision.start()
            running.callback(vision.stop)
        yield served, visions
