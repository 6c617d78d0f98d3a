"""The camera simulator as the vision integration tests serve it: the drain of
cam-flood-babakan with water rising past its flood depth, and the road of
cam-traffic-gatot-subroto with traffic in both lanes until someone covers the lens."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from pantau.cameras import Camera, SourceKind
from simulators.camera.faults import Fault, FaultInjector, FaultWindow
from simulators.camera.scene import DrainScene, RoadScene, Vehicle
from simulators.camera.server import CameraFeed, CameraServer

FLOOD, ROAD = "cam-flood-babakan", "cam-traffic-gatot-subroto"


@contextmanager
def flood_and_covered_road(covered_at_s: float) -> Iterator[CameraServer]:
    # Water from 50 cm rising 2 cm/s: past the camera's 60 cm flood depth after ~5 s.
    drain = CameraFeed(DrainScene(depth_start_cm=50.0, depth_rate_cm_s=2.0), fps=5.0)
    traffic = [Vehicle(lane, 100.0 + 300 * i, 90.0, 80.0, (30, 30, 170)) for lane in (0, 1)
               for i in range(2)]  # fmt: skip
    road = CameraFeed(
        RoadScene(vehicles=traffic),
        fps=5.0,
        faults=FaultInjector((FaultWindow(Fault.OCCLUSION, covered_at_s),)),
    )
    srv = CameraServer({FLOOD: drain, ROAD: road})
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def served_cameras(registry: Mapping[str, Camera], server: CameraServer) -> dict[str, Camera]:
    """The two registry cameras pointed at `server`: the drain as an MJPEG stream, the
    road as snapshots, both sampled at 5 fps."""
    return {
        FLOOD: dataclasses.replace(
            registry[FLOOD], source_kind=SourceKind.MJPEG, url=server.url(FLOOD, "stream.mjpg"),
            sample_fps=5.0,
        ),
        ROAD: dataclasses.replace(
            registry[ROAD], source_kind=SourceKind.SNAPSHOT, url=server.url(ROAD, "snapshot.jpg"),
            sample_fps=5.0,
        ),
    }  # fmt: skip
