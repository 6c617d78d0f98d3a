"""The camera simulator served like real cameras: an HTTP snapshot URL, an MJPEG stream
over HTTP (which OpenCV's FFMPEG backend opens like an IP camera's) and video files.

    GET /cameras/{id}/snapshot.jpg   the current picture
    GET /cameras/{id}/stream.mjpg    multipart/x-mixed-replace JPEG stream at the feed's fps
    GET /cameras/{id}/truth.json     ground truth of the current picture (tests)

Each feed renders in its own thread at its fps, on scene time = seconds since start.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Protocol

import cv2

from simulators.camera.faults import FaultInjector
from simulators.camera.scene import Image, Truth

log = logging.getLogger(__name__)

BOUNDARY = "pantauframe"
JPEG_QUALITY = 85


class Scene(Protocol):
    def render(self, t: float) -> tuple[Image, Truth]: ...


@dataclass(frozen=True, slots=True)
class Picture:
    seq: int
    jpeg: bytes
    truth: Truth
    faults: tuple[str, ...]


class CameraFeed:
    """A scene rendered at `fps`; the latest picture is kept as a JPEG."""

    def __init__(self, scene: Scene, fps: float, faults: FaultInjector | None = None) -> None:
        self._scene = scene
        self._fps = fps
        self._faults = faults or FaultInjector()
        self._latest: Picture | None = None
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="camera-feed", daemon=True)
        self.started_at = 0.0

    def start(self) -> None:
        self.started_at = time.monotonic()
        self._render(0, 0.0)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def latest(self) -> Picture:
        assert self._latest is not None, "feed not started"
        return self._latest

    def wait_newer(self, seq: int, timeout: float) -> Picture | None:
        with self._changed:
            self._changed.wait_for(
                lambda: (
                    (self._latest is not None and self._latest.seq > seq) or self._stop.is_set()
                ),
                timeout,
            )
        picture = self._latest
        return picture if picture is not None and picture.seq > seq else None

    def _newer(self, seq: int) -> bool:
        return self._latest is not None and self._latest.seq > seq

    def _run(self) -> None:
        seq = 0
        while not self._stop.is_set():
            seq += 1
            due = self.started_at + seq / self._fps
            wait = due - time.monotonic()
            if wait > 0 and self._stop.wait(wait):
                return
            self._render(seq, seq / self._fps)

    def _render(self, seq: int, t: float) -> None:
        image, truth = self._scene.render(t)
        image = self._faults.apply(image, t)
        ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        faults = tuple(f.value for f in self._faults.active(t))
        with self._changed:
            self._latest = Picture(seq, jpeg.tobytes(), truth, faults)
            self._changed.notify_all()


class CameraServer:
    """Serves feeds by camera id on 127.0.0.1:`port` (0: a free port)."""

    def __init__(self, feeds: dict[str, CameraFeed], port: int = 0) -> None:
        self.feeds = feeds
        handler = type("Handler", (_Handler,), {"feeds": feeds})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self._httpd.daemon_threads = True
        self.port = int(self._httpd.server_address[1])
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def url(self, camera_id: str, leaf: str) -> str:
        return f"http://127.0.0.1:{self.port}/cameras/{camera_id}/{leaf}"

    def start(self) -> None:
        for feed in self.feeds.values():
            feed.start()
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        for feed in self.feeds.values():
            feed.stop()


class _Handler(BaseHTTPRequestHandler):
    feeds: dict[str, CameraFeed]
    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: object) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        parts = self.path.split("?")[0].strip("/").split("/")
        if len(parts) != 3 or parts[0] != "cameras" or parts[1] not in self.feeds:
            self.send_error(404)
            return
        feed, leaf = self.feeds[parts[1]], parts[2]
        if leaf == "snapshot.jpg":
            self._send(feed.latest().jpeg, "image/jpeg")
        elif leaf == "truth.json":
            p = feed.latest()
            body = {"seq": p.seq, "faults": list(p.faults), **asdict(p.truth)}
            self._send(json.dumps(body).encode(), "application/json")
        elif leaf == "stream.mjpg":
            self._stream(feed)
        else:
            self.send_error(404)

    def _send(self, body: bytes, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _stream(self, feed: CameraFeed) -> None:
        self.send_response(200)
        self.send_header("Content-Type", f"multipart/x-mixed-replace;boundary={BOUNDARY}")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        seq = -1
        try:
            while True:
                picture = feed.wait_newer(seq, timeout=5.0)
                if picture is None:
                    return
                seq = picture.seq
                head = (
                    f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                    f"Content-Length: {len(picture.jpeg)}\r\n\r\n"
                ).encode()
                self.wfile.write(head + picture.jpeg + b"\r\n")
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            return  # the viewer went away


def write_video(path: Path, scene: Scene, seconds: float, fps: float,
                faults: FaultInjector | None = None) -> list[Truth]:  # fmt: skip
    """Render `seconds` of `scene` into a Motion-JPEG AVI; the truth of every frame."""
    injector = faults or FaultInjector()
    writer: cv2.VideoWriter | None = None
    truths = []
    try:
        for i in range(round(seconds * fps)):
            t = i / fps
            image, truth = scene.render(t)
            image = injector.apply(image, t)
            if writer is None:
                h, w = image.shape[:2]
                fourcc = cv2.VideoWriter.fourcc(*"MJPG")
                writer = cv2.VideoWriter(str(path), fourcc, fps, (w, h))
                if not writer.isOpened():
                    raise RuntimeError(f"cannot write {path}")
            writer.write(image)
            truths.append(truth)
    finally:
        if writer is not None:
            writer.release()
    return truths
