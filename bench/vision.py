"""`python -m bench.vision [--quick] [--no-save]`: what one camera costs.

For the simulated road (traffic camera: health + two lanes) and drain (flood camera:
health + channel + staff gauge) scenes at 640x360 and 1280x720, frames are rendered
before timing, then analysed in this one thread with OpenCV on one thread (as
`pantau vision` runs: a thread per camera). Reported per frame:

- each analyzer stage's CPU time (`time.thread_time`, so other load on a shared box
  does not count): prepare (reduce to 320 px, grey, raw subsample), health, motion,
  gauge; and the whole `CameraAnalyzer.analyse` in CPU and wall time;
- decode separately: a JPEG (what an MJPEG stream or a snapshot delivers) with
  `cv2.imdecode`, and a frame of an MPEG-4 Part 2 file through `cv2.VideoCapture`
  (the H.264 of most IP cameras costs about as much; opencv-python-headless cannot
  write H.264 to measure it);
- cores per camera at 5 analysed frames/s = analysis CPU s/frame x 5, excluding
  decode (target <= 0.10 at 720p), and the decode cores at 5 fps beside it (a 25 fps
  stream must decode every frame: x 5 again).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2

from pantau.cameras import Camera, load_cameras
from pantau.city import load_city
from simulators.camera.scene import DrainScene, Image, RoadScene, Vehicle
from vision.analyzer import CameraAnalyzer

RESULTS_DIR = Path(__file__).resolve().parent / "results"
SIZES = ((640, 360), (1280, 720))
ANALYSED_FPS = 5.0
TARGET_CORES_720P = 0.10
STAGES = ("prepare", "health", "motion", "gauge")
T0 = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Row:
    scene: str
    size: str
    frames: int
    stage_ms: dict[str, float]  # CPU ms per frame
    analyse_cpu_ms: float
    analyse_wall_ms: float
    jpeg_decode_ms: float
    video_decode_ms: float
    cores_at_5fps: float  # analysis only
    decode_cores_at_5fps: float  # JPEG decode of the analysed frames


def frames_of(scene: str, size: tuple[int, int], n: int) -> list[Image]:
    w, h = size
    if scene == "road":
        vehicles = [Vehicle(lane, 150.0 * i, 80.0 + 5 * i, 80.0, (40, 40, 170)) for lane in (0, 1)
                    for i in range(4)]  # fmt: skip
        road = RoadScene(width=w, height=h, vehicles=vehicles)
        return [road.render(i / ANALYSED_FPS)[0] for i in range(n)]
    drain = DrainScene(width=w, height=h, depth_start_cm=20, depth_rate_cm_s=0.5)
    return [drain.render(i / ANALYSED_FPS)[0] for i in range(n)]


def measure(camera: Camera, scene: str, size: tuple[int, int], n: int, warmup: int) -> Row:
    frames = frames_of(scene, size, n + warmup)
    analyzer = CameraAnalyzer(camera)
    for i, f in enumerate(frames[:warmup]):  # reference and background learned first
        analyzer.analyse(f, T0 + timedelta(seconds=i / ANALYSED_FPS), i)
    analyzer.stage_cpu_s.clear()
    cpu0, wall0 = time.thread_time(), time.perf_counter()
    for i, f in enumerate(frames[warmup:], start=warmup):
        analyzer.analyse(f, T0 + timedelta(seconds=i / ANALYSED_FPS), i)
    cpu = (time.thread_time() - cpu0) / n
    wall = (time.perf_counter() - wall0) / n
    stage_ms = {s: 1000 * analyzer.stage_cpu_s.get(s, 0.0) / n for s in STAGES}

    jpegs = [cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, 85])[1] for f in frames[:n]]
    cpu0 = time.thread_time()
    for j in jpegs:
        cv2.imdecode(j, cv2.IMREAD_COLOR)
    jpeg_ms = 1000 * (time.thread_time() - cpu0) / n
    return Row(
        scene=scene,
        size=f"{size[0]}x{size[1]}",
        frames=n,
        stage_ms={k: round(v, 2) for k, v in stage_ms.items()},
        analyse_cpu_ms=round(1000 * cpu, 2),
        analyse_wall_ms=round(1000 * wall, 2),
        jpeg_decode_ms=round(jpeg_ms, 2),
        video_decode_ms=round(video_decode_ms(frames[:n]), 2),
        cores_at_5fps=round(cpu * ANALYSED_FPS, 3),
        decode_cores_at_5fps=round(jpeg_ms / 1000 * ANALYSED_FPS, 3),
    )


def video_decode_ms(frames: list[Image]) -> float:
    """CPU ms per frame (all threads) to read an MPEG-4 (mp4v) file through OpenCV's
    FFMPEG backend."""
    h, w = frames[0].shape[:2]
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "clip.mp4")
        writer = cv2.VideoWriter(path, cv2.VideoWriter.fourcc(*"mp4v"), 25.0, (w, h))
        for f in frames:
            writer.write(f)
        writer.release()
        cap = cv2.VideoCapture(path, cv2.CAP_FFMPEG)
        count = 0
        # Process time: FFmpeg decodes on threads of its own.
        cpu0 = time.process_time()
        while cap.read()[0]:
            count += 1
        cpu = time.process_time() - cpu0
        cap.release()
    return 1000 * cpu / max(count, 1)


def table(rows: Sequence[Row]) -> str:
    head = (
        "| scene | size | prepare | health | motion | gauge | analyse (CPU) | analyse (wall)"
        " | JPEG decode | MPEG-4 decode | cores/camera @5 fps | + JPEG decode @5 fps |"
    )
    out = [head, "|" + "---|" * 12]
    for r in rows:
        s = r.stage_ms
        out.append(
            f"| {r.scene} | {r.size} | {s['prepare']:.2f} | {s['health']:.2f} | "
            f"{s['motion']:.2f} | {s['gauge']:.2f} | {r.analyse_cpu_ms:.2f} | "
            f"{r.analyse_wall_ms:.2f} | {r.jpeg_decode_ms:.2f} | {r.video_decode_ms:.2f} | "
            f"{r.cores_at_5fps:.3f} | {r.decode_cores_at_5fps:.3f} |"
        )
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.vision", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="40 frames per case, a smoke check")
    parser.add_argument("--no-save", action="store_true", help="do not write bench/results/")
    opts = parser.parse_args(argv)
    cv2.setNumThreads(1)
    n, warmup = (40, 15) if opts.quick else (200, 20)
    cameras = load_cameras(load_city())
    rows = [
        measure(cameras[cid], scene, size, n, warmup)
        for scene, cid in (("road", "cam-traffic-sudirman"), ("drain", "cam-flood-babakan"))
        for size in SIZES
    ]
    print("ms per frame (CPU of the analysing thread unless marked wall); OpenCV on 1 thread\n")
    print(table(rows))
    worst_720 = max(r.cores_at_5fps for r in rows if r.size == "1280x720")
    verdict = "met" if worst_720 <= TARGET_CORES_720P else "NOT met"
    print(
        f"\ntarget <= {TARGET_CORES_720P} core per 720p camera at 5 analysed frames/s, "
        f"excluding decode: {worst_720:.3f} ({verdict})"
    )
    if not opts.no_save:
        RESULTS_DIR.mkdir(exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y-%m-%d")
        path = RESULTS_DIR / f"vision-{stamp}{'-quick' if opts.quick else ''}.json"
        doc = {
            "benchmark": "bench.vision",
            "command": "uv run python -m bench.vision" + (" --quick" if opts.quick else ""),
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {"cpu": platform.processor() or platform.machine(),
                        "python": platform.python_version(), "opencv": cv2.__version__},
            "analysed_fps": ANALYSED_FPS,
            "rows": [asdict(r) for r in rows],
            "median_cores_720p": statistics.median(
                r.cores_at_5fps for r in rows if r.size == "1280x720"
            ),
            "target_met": worst_720 <= TARGET_CORES_720P,
        }  # fmt: skip
        path.write_text(json.dumps(doc, indent=2) + "\n")
        print(f"\nsaved {path.relative_to(RESULTS_DIR.parent.parent)}")
    return 0 if worst_720 <= TARGET_CORES_720P else 1


if __name__ == "__main__":
    raise SystemExit(main())
