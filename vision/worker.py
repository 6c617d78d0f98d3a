"""One worker per camera: a reader thread and an analysis thread joined by a bounded queue.

The reader reads every frame the source delivers (so no stale frames pile up in the
decoder), keeps one per 1/sample_fps of frame time, and hands it over through a
queue of `QUEUE_SIZE`; when the analysis is behind, the oldest waiting frame is
dropped, so analysis never falls behind real time. A source that fails is reopened
with exponential backoff (1 s .. 30 s); the camera's state goes online ->
reconnecting -> offline (after `OFFLINE_AFTER_S` without a frame) and back, and each
change is reported to `on_state`.

`halt()` is the fence of a worker whose camera moves to another vision worker: once it
returns, the worker reports nothing more (no analysis, no state), even while its threads
are still winding down (a source can take seconds to close); `stop()` halts and then
waits for them.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from pantau.cameras import Camera
from pantau.clock import Clock
from pantau.frame_analysis import CameraState, FrameAnalysis
from vision.analyzer import CameraAnalyzer
from vision.sources import Frame, FrameSource, SourceError

log = logging.getLogger(__name__)

QUEUE_SIZE = 2
BACKOFF_MIN_S = 1.0
BACKOFF_MAX_S = 30.0
OFFLINE_AFTER_S = 60.0

AnalysisSink = Callable[[FrameAnalysis], None]
StateSink = Callable[[str, CameraState, datetime, str], None]


@dataclass(slots=True)
class WorkerStats:
    frames_read: int = 0
    frames_sampled: int = 0
    frames_dropped: int = 0  # sampled but replaced by a newer one before analysis
    frames_analysed: int = 0
    reconnects: int = 0
    decode_s: float = 0.0


class CameraWorker:
    def __init__(
        self,
        camera: Camera,
        source: FrameSource,
        analyzer: CameraAnalyzer,
        *,
        on_analysis: AnalysisSink,
        on_state: StateSink,
        clock: Clock,
        stop_at_end: bool = True,
        lossless: bool = False,
        offline_after_s: float = OFFLINE_AFTER_S,
    ) -> None:
        """`lossless`: wait for the analysis instead of dropping frames (replaying a
        file faster than real time, where every frame counts and none goes stale)."""
        self.camera = camera
        self.stats = WorkerStats()
        self.state: CameraState | None = None
        self._source = source
        self._analyzer = analyzer
        self._on_analysis = on_analysis
        self._on_state = on_state
        self._clock = clock
        self._stop_at_end = stop_at_end
        self._lossless = lossless
        self._offline_after_s = offline_after_s
        self._frames: queue.Queue[Frame | None] = queue.Queue(maxsize=QUEUE_SIZE)
        self._stop = threading.Event()
        # Held while reporting and while halting, so nothing is reported after halt().
        self._report_lock = threading.Lock()
        self._last_frame = clock.now()
        self._backoff = BACKOFF_MIN_S
        self.finished = threading.Event()  # the source ended (files) or the worker stopped
        self._reader = threading.Thread(target=self._read, name=f"read-{camera.id}", daemon=True)
        self._analyst = threading.Thread(
            target=self._analyse, name=f"analyse-{camera.id}", daemon=True
        )

    def start(self) -> None:
        self._reader.start()
        self._analyst.start()

    def halt(self) -> None:
        """Stop reporting now (an analysis being reported finishes first); the threads
        end on their own at their next frame."""
        with self._report_lock:
            self._stop.set()

    def stop(self, timeout: float = 10.0) -> None:
        self.halt()
        self._reader.join(timeout)
        self._analyst.join(timeout)
        self._source.close()

    def _set_state(self, state: CameraState, detail: str = "") -> None:
        with self._report_lock:
            if state is self.state or self._stop.is_set():
                return
            self.state = state
            log.info("camera %s: %s %s", self.camera.id, state.value, detail)
            self._on_state(self.camera.id, state, self._clock.now(), detail)

    # --- reader -------------------------------------------------------------------------
    def _read(self) -> None:
        self._backoff = BACKOFF_MIN_S
        self._last_frame = self._clock.now()
        try:
            while not self._stop.is_set():
                try:
                    self._source.open()
                    if self._pump():
                        return  # end of file
                except SourceError as err:
                    self._source.close()
                    self.stats.reconnects += 1
                    down_s = (self._clock.now() - self._last_frame).total_seconds()
                    state = (
                        CameraState.OFFLINE
                        if down_s >= self._offline_after_s
                        else CameraState.RECONNECTING
                    )
                    self._set_state(state, str(err))
                    if self._stop.wait(self._backoff):
                        return
                    self._backoff = min(self._backoff * 2, BACKOFF_MAX_S)
        finally:
            self._hand_over(None)

    def _pump(self) -> bool:
        """Read until the source fails (raises), ends (True) or we stop (False)."""
        interval = 1.0 / self.camera.sample_fps
        next_time: datetime | None = None
        while not self._stop.is_set():
            frame = self._source.read()
            if frame is None:
                if self._stop_at_end:
                    self._set_state(CameraState.OFFLINE, "end of file")
                    return True
                raise SourceError("end of file")
            self.stats.frames_read += 1
            self._last_frame = self._clock.now()
            if self.state is not CameraState.ONLINE:
                # Online once a frame arrives: a snapshot URL "opens" without a request.
                self._set_state(CameraState.ONLINE)
                self._backoff = BACKOFF_MIN_S
            self.stats.decode_s += frame.decode_s
            # Keep one frame per sampling interval of frame time. A frame up to a quarter
            # interval early counts (arrival jitter of a stream at the sampling rate); the
            # schedule advances by whole intervals, so the average rate stays sample_fps.
            if next_time is not None and (next_time - frame.time).total_seconds() > 0.25 * interval:
                continue
            base = frame.time if next_time is None else max(next_time, frame.time)
            next_time = base + _seconds(interval)
            self.stats.frames_sampled += 1
            self._hand_over(frame)
        return False

    def _hand_over(self, frame: Frame | None) -> None:
        while self._lossless and not self._stop.is_set():
            try:
                self._frames.put(frame, timeout=0.2)
                return
            except queue.Full:
                continue
        while True:
            try:
                self._frames.put_nowait(frame)
                return
            except queue.Full:
                try:
                    stale = self._frames.get_nowait()
                except queue.Empty:
                    continue
                if stale is not None:
                    self.stats.frames_dropped += 1

    # --- analysis -----------------------------------------------------------------------
    def _analyse(self) -> None:
        seq = 0
        try:
            while True:
                frame = self._frames.get()
                if frame is None:
                    return
                try:
                    analysis = self._analyzer.analyse(frame.image, frame.time, seq)
                except Exception:  # one bad frame must not kill the camera's worker
                    log.exception("camera %s: analysis failed", self.camera.id)
                    continue
                seq += 1
                self.stats.frames_analysed += 1
                with self._report_lock:
                    if self._stop.is_set():
                        return  # halted: the camera may be another worker's by now
                    self._on_analysis(analysis)
        finally:
            self.finished.set()


def _seconds(s: float) -> timedelta:
    return timedelta(seconds=s)
