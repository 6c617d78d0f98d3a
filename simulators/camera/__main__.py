"""`python -m simulators.camera`: serve simulated cameras, or write one to a video file.

    python -m simulators.camera serve --port 8090        # every camera of config/cameras.yaml
    python -m simulators.camera write out.avi --scene drain --seconds 20 --fault blur@10

Flood cameras show a drain whose water rises and falls over `--cycle-s` (a storm
hydrograph, 5..95 cm); traffic cameras a street with traffic. The URLs match
config/cameras.yaml, so `pantau vision` runs on them unchanged.
"""

from __future__ import annotations

import argparse
import errno
import logging
import math
import sys
from collections.abc import Sequence
from pathlib import Path

from pantau.cameras import CameraKind, load_cameras
from pantau.city import load_city
from pantau.lifecycle import run_until_signalled
from simulators.camera.faults import Fault, FaultInjector, FaultWindow
from simulators.camera.scene import DrainScene, Image, Lighting, RoadScene, Truth, Vehicle
from simulators.camera.server import CameraFeed, CameraServer, Scene, write_video

log = logging.getLogger(__name__)


class StormDrain:
    """A drain whose depth follows a slow rise and fall (one sine period per cycle)."""

    def __init__(self, cycle_s: float, **kwargs: object) -> None:
        self._drain = DrainScene(**kwargs)  # type: ignore[arg-type]
        self._cycle_s = cycle_s

    def render(self, t: float) -> tuple[Image, Truth]:
        phase = 2 * math.pi * t / self._cycle_s
        self._drain.depth_start_cm = 50.0 - 45.0 * math.cos(phase)
        self._drain.depth_rate_cm_s = 0.0
        return self._drain.render(t)


def street(seed: int) -> list[Vehicle]:
    colours = ((30, 30, 170), (200, 200, 200), (150, 60, 20), (30, 140, 40), (20, 20, 20))
    return [
        Vehicle(lane, x0=i * 210.0 + lane * 90 + seed * 17 % 100, speed=70 + 9 * ((i + seed) % 5),
                length=60 + 10 * (i % 4), color=colours[(i + seed) % len(colours)])
        for lane in (0, 1) for i in range(4)
    ]  # fmt: skip


def parse_fault(text: str) -> FaultWindow:
    name, _, start = text.partition("@")
    return FaultWindow(Fault(name), float(start or 0))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulators.camera")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve config/cameras.yaml's cameras over HTTP")
    serve.add_argument("--port", type=int, default=8090)
    serve.add_argument("--lighting", type=Lighting, default=Lighting.DAY)
    serve.add_argument("--rain", action="store_true")
    serve.add_argument("--cycle-s", type=float, default=600.0)
    write = sub.add_parser("write", help="render a scene into a Motion-JPEG AVI")
    write.add_argument("path", type=Path)
    write.add_argument("--scene", choices=("road", "drain"), default="road")
    write.add_argument("--seconds", type=float, default=20.0)
    write.add_argument("--fps", type=float, default=10.0)
    write.add_argument("--lighting", type=Lighting, default=Lighting.DAY)
    write.add_argument("--rain", action="store_true")
    write.add_argument("--fault", type=parse_fault, action="append", default=[],
                       help="NAME@START_S, e.g. blur@10 (repeatable)")  # fmt: skip
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    if args.command == "write":
        scene: Scene = (
            RoadScene(lighting=args.lighting, rain=args.rain, vehicles=street(1))
            if args.scene == "road"
            else StormDrain(args.seconds * 2, lighting=args.lighting, rain=args.rain)
        )
        write_video(args.path, scene, args.seconds, args.fps, FaultInjector(tuple(args.fault)))
        print(f"wrote {args.path}")
        return 0

    feeds = {}
    for i, camera in enumerate(load_cameras(load_city()).values()):
        scene = (
            StormDrain(args.cycle_s, lighting=args.lighting, rain=args.rain, seed=i)
            if camera.kind is CameraKind.FLOOD
            else RoadScene(lighting=args.lighting, rain=args.rain, vehicles=street(i), seed=i)
        )
        feeds[camera.id] = CameraFeed(scene, camera.sample_fps)
    try:
        server = CameraServer(feeds, args.port)
    except OSError as err:
        if err.errno != errno.EADDRINUSE:
            raise
        print(
            f"simulators.camera: port {args.port} is already in use (another camera simulator"
            " running?): stop that process, or choose a free port with --port",
            file=sys.stderr,
        )
        return 2

    def started() -> None:
        log.info(
            "serving %d simulated cameras on http://127.0.0.1:%d/cameras/", len(feeds), server.port
        )

    run_until_signalled(server, started=started)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
