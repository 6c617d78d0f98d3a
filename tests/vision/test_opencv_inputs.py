"""OpenCV leaves alone the arrays that vision passes it: every OpenCV function that
vision/ calls, called as vision calls it on random sentinel arrays, must leave its
inputs as they were. Vision keeps references and previous frames between frames, so a
function that writes into an input (phaseCorrelate with a window does, in OpenCV 5.0)
would corrupt them quietly; an OpenCV upgrade that starts doing so fails here."""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from vision.health import phase_offset

Array = npt.NDArray[Any]
VISION = Path(__file__).resolve().parents[2] / "vision"
RNG = np.random.default_rng(17)
H, W = 36, 64


def u8(*shape: int) -> Array:
    return RNG.integers(1, 255, shape, dtype=np.uint8)


def f32(*shape: int) -> Array:
    return RNG.uniform(1.0, 255.0, shape).astype(np.float32)


def binary(*shape: int) -> Array:
    return np.where(RNG.random(shape) < 0.5, 255, 0).astype(np.uint8)


def accumulate(src: Array, mask: Array) -> None:
    cv2.accumulateWeighted(src, f32(*src.shape), 0.01, mask=mask)  # dst is the output


def fill(pts: Array) -> None:
    cv2.fillPoly(np.zeros((H, W), np.uint8), [pts], 255)  # the image is the output


def write(frame: Array) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "evidence.jpg"
        assert cv2.imwrite(str(path), frame, [cv2.IMWRITE_JPEG_QUALITY, 90])


def decode(body: Array) -> None:
    assert cv2.imdecode(body, cv2.IMREAD_COLOR) is not None


def jpeg() -> Array:
    ok, body = cv2.imencode(".jpg", u8(H, W, 3))
    assert ok
    return np.frombuffer(body.tobytes(), np.uint8).copy()


# (function, inputs, the call as vision makes it)
CASES: list[tuple[str, list[Array], Callable[..., object]]] = [
    ("GaussianBlur", [u8(H, W, 3)], lambda a: cv2.GaussianBlur(a, (3, 3), 0)),
    ("GaussianBlur", [u8(H, W)], lambda a: cv2.GaussianBlur(a, (5, 5), 0)),
    ("Laplacian", [u8(H, W)], lambda a: cv2.Laplacian(a, cv2.CV_32F)),
    ("absdiff", [u8(H, W, 3), u8(H, W, 3)], cv2.absdiff),
    ("absdiff", [f32(H, W, 3), f32(H, W, 3)], cv2.absdiff),
    ("accumulateWeighted", [f32(H, W, 3), binary(H, W)], accumulate),
    ("bitwise_and", [binary(H, W), binary(H, W)], cv2.bitwise_and),
    ("convertScaleAbs", [u8(H, W, 3)], lambda a: cv2.convertScaleAbs(a, alpha=0.7)),
    ("countNonZero", [binary(H, W)], cv2.countNonZero),
    ("cvtColor", [u8(H, W, 3)], lambda a: cv2.cvtColor(a, cv2.COLOR_BGR2GRAY)),
    ("fillPoly", [np.array([[2, 3], [60, 5], [40, 30]], np.int32)], fill),
    ("erode", [binary(H, W), np.ones((5, 5), np.uint8)], cv2.erode),
    ("imdecode", [jpeg()], decode),
    ("inRange", [u8(H, W, 3)], lambda a: cv2.inRange(a, (0, 0, 0), (250, 250, 250))),
    ("imwrite", [u8(H, W, 3)], write),
    ("max", [u8(H, W), u8(H, W)], cv2.max),
    ("mean", [u8(H, W, 3), binary(H, W)], lambda a, m: cv2.mean(a, mask=m)),
    ("meanStdDev", [f32(H, W), binary(H, W)], lambda a, m: cv2.meanStdDev(a, mask=m)),
    ("morphologyEx", [u8(H, W), np.ones((3, 3), np.uint8)],
     lambda a, k: cv2.morphologyEx(a, cv2.MORPH_OPEN, k)),
    ("morphologyEx", [u8(H, 12, 3), np.ones((1, 3), np.uint8)],
     lambda a, k: cv2.morphologyEx(a, cv2.MORPH_OPEN, k)),
    # Vision calls it through phase_offset, which passes copies.
    ("phaseCorrelate",
     [f32(90, 160), f32(90, 160), cv2.createHanningWindow((160, 90), cv2.CV_32F)],
     phase_offset),
    ("resize", [u8(H, W, 3)], lambda a: cv2.resize(a, (32, 18), interpolation=cv2.INTER_LINEAR)),
    ("resize", [u8(H, W)], lambda a: cv2.resize(a, (16, 9), interpolation=cv2.INTER_AREA)),
    ("split", [u8(H, W, 3)], cv2.split),
    ("threshold", [u8(H, W)], lambda a: cv2.threshold(a, 18, 255, cv2.THRESH_BINARY)),
    ("warpAffine", [u8(H, W, 3), np.array([[0.5, 0.1, 3.0], [-0.1, 0.5, 2.0]])],
     lambda a, m: cv2.warpAffine(a, m, (12, 40), flags=cv2.INTER_LINEAR)),
]  # fmt: skip
# Called by vision with no array of its own: a constructor, a setting, drawing into
# an array that is the call's output.
NO_INPUT_ARRAY = {"VideoCapture", "setNumThreads", "createHanningWindow", "rectangle"}


@pytest.mark.parametrize(
    ("name", "inputs", "call"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)]
)
def test_opencv_leaves_the_inputs_unchanged(
    name: str, inputs: list[Array], call: Callable[..., object]
) -> None:
    before = [a.copy() for a in inputs]
    call(*inputs)
    for i, (now, was) in enumerate(zip(inputs, before, strict=True)):
        assert np.array_equal(now, was), f"{name} changed its input {i}"


def test_every_opencv_function_vision_calls_is_checked() -> None:
    used = {
        name
        for path in VISION.glob("*.py")
        for name in re.findall(r"\bcv2\.(\w+)\(", path.read_text())
    }
    checked = {name for name, _, _ in CASES}
    assert used - checked - NO_INPUT_ARRAY == set(), "a new OpenCV call: add it to CASES"
    assert checked | NO_INPUT_ARRAY <= used  # nothing stale
