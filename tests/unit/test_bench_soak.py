"""bench.soak's camera analyses: the template it fills is byte for byte what the vision
worker's encoder gives for each message, at the camera's sample rate."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bench.soak_feed import analysis_lines
from pantau.cameras import load_cameras
from pantau.city import load_city
from pantau.frame_analysis import FrameAnalysis, decode_analysis, encode_analysis


def testanalysis_lines_are_the_encoders_payloads() -> None:
    cameras = load_cameras(load_city())
    start = datetime(2026, 12, 1, 23, 59, 58, tzinfo=UTC)  # across midnight
    for camera in cameras.values():
        lines = analysis_lines(camera, start, start + timedelta(seconds=4), 100)
        assert len(lines) == round(4 * camera.sample_fps)
        for i, line in enumerate(lines):
            a = decode_analysis(line)
            assert a.camera_id == camera.id and a.seq == 100 + i
            assert a.time == start + timedelta(seconds=i / camera.sample_fps)
            again = FrameAnalysis(
                camera_id=a.camera_id,
                time=a.time,
                seq=a.seq,
                width=a.width,
                height=a.height,
                measures=a.measures,
            )
            assert encode_analysis(again) == line
