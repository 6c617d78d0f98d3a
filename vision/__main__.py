"""`pantau vision`: analyse the registry's cameras until SIGTERM / Ctrl-C.

    pantau vision                                  # every camera in config/cameras.yaml
    pantau vision --camera cam-flood-babakan       # only some
    pantau vision --evidence-dir run/evidence

MQTT settings come from PANTAU_* environment variables (see README).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import cv2

from pantau.cameras import load_cameras
from pantau.city import load_city
from pantau.evidence import EvidenceSweeper
from pantau.lifecycle import run_until_signalled
from pantau.settings import Settings
from pantau.store.migrate import make_engine
from vision.service import VisionService

log = logging.getLogger("vision")


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="pantau vision", description=__doc__.split("\n")[0])
    parser.add_argument("--camera", action="append", default=[], help="camera id (repeatable)")
    parser.add_argument(
        "--evidence-dir",
        type=Path,
        default=None,
        help="where the JPEG of a frame that raised a fault or a flood is saved"
        " (default: PANTAU_EVIDENCE_DIR, run/evidence)",
    )
    parser.add_argument("--client-id", default="pantau-vision")
    args = parser.parse_args(argv)
    settings = Settings()
    if args.evidence_dir is None:
        args.evidence_dir = settings.evidence_dir
    cameras = load_cameras(load_city(settings.config_dir))
    unknown = set(args.camera) - set(cameras)
    if unknown:
        parser.error(f"unknown camera(s): {', '.join(sorted(unknown))}")
    if args.camera:
        cameras = {cid: c for cid, c in cameras.items() if cid in args.camera}
    # One thread per camera does the work; OpenCV's own thread pool would only contend.
    cv2.setNumThreads(1)
    leases = None
    client_id = args.client_id
    # The store: camera leases when workers share cameras, and the evidence sweep (which
    # frames incidents still link).
    engine = make_engine(settings.database_url)
    if settings.vision.share_cameras:
        # One of several workers: cameras leased through the store; its own MQTT session.
        # Imported here: a lone vision process does not load the SQL store.
        from pantau.store import migrate  # noqa: PLC0415
        from pantau.store.leases import Leases  # noqa: PLC0415

        migrate(engine)
        leases = Leases(engine, "vision", settings.replica, settings.leases.ttl_s)
        client_id = f"{args.client_id}-{settings.replica}"
    service = VisionService(
        settings.mqtt,
        cameras,
        evidence_dir=args.evidence_dir,
        client_id=client_id,
        leases=leases,
        period_s=settings.leases.period_s,
    )

    def started() -> None:
        log.info(
            "vision %s: %d cameras%s -> MQTT %s root %r, evidence in %s",
            settings.replica,
            len(cameras),
            " shared with the other live workers" if leases else "",
            settings.mqtt.describe(),
            settings.mqtt.root,
            args.evidence_dir,
        )

    sweeper = EvidenceSweeper(
        args.evidence_dir,
        engine,
        keep=timedelta(days=settings.retention.evidence_days),
        max_bytes=settings.retention.evidence_max_bytes,
        interval_s=settings.retention.evidence_sweep_s,
    )
    sweeper.start()
    try:
        run_until_signalled(service, started=started)
    finally:
        sweeper.stop()
        engine.dispose()
    for w in service.workers:
        s = w.stats
        log.info(
            "camera %s: %d frames read, %d analysed, %d dropped, %d reconnects",
            w.camera.id, s.frames_read, s.frames_analysed, s.frames_dropped, s.reconnects,
        )  # fmt: skip
    return 0
