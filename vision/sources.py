"""Frame sources: video files, RTSP and HTTP MJPEG streams (OpenCV's FFMPEG backend) and
HTTP snapshot URLs (one JPEG per request).

A source yields `Frame`s until it ends (a file) or fails (`SourceError`); the worker
reconnects. Streams are read as fast as they come, so OpenCV's buffer never holds old
frames: sampling and dropping happen in the worker, not by reading slowly.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime, timedelta

import cv2
import numpy as np
from cv2.typing import MatLike

from pantau.cameras import SourceKind
from pantau.clock import Clock

OPEN_TIMEOUT_MS = 5000
READ_TIMEOUT_MS = 5000
SNAPSHOT_TIMEOUT_S = 5.0
MAX_SNAPSHOT_BYTES = 20 * 1024 * 1024


class SourceError(Exception):
    """The camera cannot be opened or stopped delivering."""


@dataclass(frozen=True, slots=True)
class Frame:
    image: MatLike
    time: datetime  # capture time (stream: arrival; file: start + position)
    decode_s: float  # seconds spent reading and decoding it


class FrameSource(ABC):
    @abstractmethod
    def open(self) -> None:
        """Connect or open; raises SourceError when the camera cannot be reached."""

    @abstractmethod
    def read(self) -> Frame | None:
        """The next frame; None at the end of a file."""

    def close(self) -> None:  # noqa: B027 - a source with nothing to release needs none
        """Release the source; it can be opened again."""


class CaptureSource(FrameSource):
    """Files, RTSP and HTTP MJPEG through cv2.VideoCapture (FFMPEG)."""

    def __init__(self, url: str, clock: Clock, *, realtime: bool = True) -> None:
        self._url = url
        self._clock = clock
        self._realtime = realtime  # files only: play at the file's own pace
        self._is_file = "://" not in url
        self._cap: cv2.VideoCapture | None = None
        self._start: datetime | None = None
        self._start_mono = 0.0

    def open(self) -> None:
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, OPEN_TIMEOUT_MS]
        params += [cv2.CAP_PROP_READ_TIMEOUT_MSEC, READ_TIMEOUT_MS]
        cap = cv2.VideoCapture(self._url, cv2.CAP_FFMPEG, params)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"cannot open {self._url}")
        self._cap = cap
        self._start = self._clock.now()
        self._start_mono = time.monotonic()

    def read(self) -> Frame | None:
        if self._cap is None or self._start is None:
            raise SourceError("not open")
        started = time.monotonic()
        ok, image = self._cap.read()
        decode_s = time.monotonic() - started
        if not ok:
            if self._is_file:
                return None
            raise SourceError(f"{self._url}: no frame within {READ_TIMEOUT_MS} ms or stream ended")
        if not self._is_file:
            return Frame(image, self._clock.now(), decode_s)
        position = timedelta(milliseconds=float(self._cap.get(cv2.CAP_PROP_POS_MSEC)))
        if self._realtime:
            ahead = position.total_seconds() - (time.monotonic() - self._start_mono)
            if ahead > 0:
                time.sleep(ahead)
        return Frame(image, self._start + position, decode_s)

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class SnapshotSource(FrameSource):
    """An HTTP URL that returns the current picture as a JPEG, polled at `fps`."""

    def __init__(self, url: str, clock: Clock, fps: float) -> None:
        self._url = url
        self._clock = clock
        self._interval = 1.0 / fps
        self._next = 0.0

    def open(self) -> None:
        self._next = time.monotonic()

    def read(self) -> Frame | None:
        wait = self._next - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        self._next = max(self._next + self._interval, time.monotonic())
        started = time.monotonic()
        try:
            with urllib.request.urlopen(self._url, timeout=SNAPSHOT_TIMEOUT_S) as response:  # noqa: S310 - URL from the camera registry
                body = response.read(MAX_SNAPSHOT_BYTES)
        except (urllib.error.URLError, TimeoutError, OSError) as err:
            raise SourceError(f"{self._url}: {err}") from err
        image = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise SourceError(f"{self._url}: not an image ({len(body)} bytes)")
        return Frame(image, self._clock.now(), time.monotonic() - started)


def open_source(kind: SourceKind, url: str, clock: Clock, fps: float) -> FrameSource:
    if kind is SourceKind.SNAPSHOT:
        return SnapshotSource(url, clock, fps)
    return CaptureSource(url, clock, realtime=kind is SourceKind.FILE)
