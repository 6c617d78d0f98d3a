"""Frame sources and the per-camera worker against the camera simulator's real HTTP
server and a real video file: reconnect with backoff, states, stale frames dropped."""

from __future__ import annotations

import dataclasses
import itertools
import threading
import time
from pathlib import Path

from pantau.cameras import Camera, SourceKind
from pantau.clock import SystemClock
from pantau.frame_analysis import CameraState, FrameAnalysis
from simulators.camera.scene import RoadScene, Vehicle
from simulators.camera.server import CameraFeed, CameraServer, write_video
from vision.analyzer import CameraAnalyzer
from vision.sources import CaptureSource, open_source
from vision.worker import CameraWorker

ROAD = [Vehicle(0, 100, 80, 70, (40, 40, 180)), Vehicle(1, 400, 60, 90, (200, 200, 200))]


class Recorder:
    def __init__(self) -> None:
        self.analyses: list[FrameAnalysis] = []
        self.states: list[tuple[CameraState, str]] = []
        self._lock = threading.Lock()

    def analysis(self, a: FrameAnalysis) -> None:
        with self._lock:
            self.analyses.append(a)

    def state(self, camera_id: str, state: CameraState, time: object, detail: str) -> None:
        with self._lock:
            self.states.append((state, detail))

    def wait(self, condition: object, timeout: float) -> bool:
        assert callable(condition)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if condition():
                    return True
            time.sleep(0.05)
        return False


def test_snapshot_camera_goes_offline_and_reconnects_after_an_outage(
    cameras: dict[str, Camera],
) -> None:
    server = CameraServer({"cam": CameraFeed(RoadScene(vehicles=list(ROAD)), fps=5.0)})
    server.start()
    port = server.port
    camera = dataclasses.replace(
        cameras["cam-traffic-gatot-subroto"],
        source_kind=SourceKind.SNAPSHOT,
        url=server.url("cam", "snapshot.jpg"),
        sample_fps=5.0,
    )
    rec = Recorder()
    clock = SystemClock()
    worker = CameraWorker(
        camera,
        open_source(camera.source_kind, camera.url, clock, camera.sample_fps),
        CameraAnalyzer(camera),
        on_analysis=rec.analysis,
        on_state=rec.state,
        clock=clock,
        offline_after_s=2.5,
    )
    worker.start()
    try:
        assert rec.wait(lambda: len(rec.analyses) >= 5, 10)
        server.stop()  # the camera goes away
        assert rec.wait(lambda: rec.states[-1][0] is CameraState.RECONNECTING, 10)
        # Backoff 1 s, 2 s, 4 s: the attempt after 2.5 s without a frame says offline.
        assert rec.wait(lambda: rec.states[-1][0] is CameraState.OFFLINE, 10)
        seen = len(rec.analyses)
        server = CameraServer({"cam": CameraFeed(RoadScene(vehicles=list(ROAD)), 5.0)}, port)
        server.start()  # and comes back on the same address
        assert rec.wait(lambda: len(rec.analyses) >= seen + 5, 15)
    finally:
        worker.stop()
        server.stop()
    assert [s for s, _ in rec.states] == [
        CameraState.ONLINE,
        CameraState.RECONNECTING,
        CameraState.OFFLINE,
        CameraState.ONLINE,
    ]
    assert worker.stats.reconnects >= 3
    assert [a.seq for a in rec.analyses] == list(range(len(rec.analyses)))


def test_mjpeg_stream_is_sampled_at_the_camera_rate(cameras: dict[str, Camera]) -> None:
    server = CameraServer({"cam": CameraFeed(RoadScene(vehicles=list(ROAD)), fps=10.0)})
    server.start()
    camera = dataclasses.replace(
        cameras["cam-traffic-sudirman"],
        source_kind=SourceKind.MJPEG,
        url=server.url("cam", "stream.mjpg"),
        sample_fps=2.5,
    )
    rec = Recorder()
    clock = SystemClock()
    worker = CameraWorker(
        camera,
        open_source(camera.source_kind, camera.url, clock, camera.sample_fps),
        CameraAnalyzer(camera),
        on_analysis=rec.analysis,
        on_state=rec.state,
        clock=clock,
    )
    worker.start()
    time.sleep(4.0)
    worker.stop()
    server.stop()
    # ~40 frames read at 10 fps, one in four analysed.
    assert worker.stats.frames_read >= 25
    assert 0.15 <= worker.stats.frames_sampled / worker.stats.frames_read <= 0.35
    gaps = [(b.time - a.time).total_seconds() for a, b in itertools.pairwise(rec.analyses)]
    assert gaps and all(0.25 <= g <= 0.65 for g in gaps), gaps
    assert 0.37 <= sum(gaps) / len(gaps) <= 0.43  # 2.5 analysed frames/s on average


def test_a_slow_analysis_drops_stale_frames_not_the_newest(
    cameras: dict[str, Camera], tmp_path: Path
) -> None:
    clip = tmp_path / "road.avi"
    write_video(clip, RoadScene(vehicles=list(ROAD)), seconds=6, fps=25)
    camera = dataclasses.replace(
        cameras["cam-traffic-sudirman"], source_kind=SourceKind.FILE, url=str(clip), sample_fps=25
    )
    rec = Recorder()
    clock = SystemClock()
    # Not paced: the file is read far faster than 25 fps, as if analysis fell behind.
    worker = CameraWorker(
        camera,
        CaptureSource(str(clip), clock, realtime=False),
        CameraAnalyzer(camera),
        on_analysis=rec.analysis,
        on_state=rec.state,
        clock=clock,
    )
    worker.start()
    assert worker.finished.wait(30)
    worker.stop()
    stats = worker.stats
    assert stats.frames_read == 150
    assert stats.frames_dropped > 0
    assert stats.frames_analysed + stats.frames_dropped == stats.frames_sampled
    # The last frame of the file is analysed: what is dropped is what went stale.
    last = rec.analyses[-1].time - rec.analyses[0].time
    assert last.total_seconds() >= 5.5
