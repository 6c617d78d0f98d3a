"""Camera faults injected into rendered frames: what vandals, weather and wear do to CCTV.

A `FaultWindow` applies one fault between two scene times. `freeze` repeats the frame
of its first instant exactly (a hung encoder sends the same picture); the others
transform each live frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import cv2
import numpy as np

from simulators.camera.scene import Image


class Fault(StrEnum):
    BLUR = "blur"  # defocus, fogged or smeared lens
    DARK = "dark"  # IR failure at night, lens capped with light leaking
    GLARE = "glare"  # low sun or a floodlight into the lens: the picture burns out
    FREEZE = "freeze"  # hung encoder: the same picture over and over
    OCCLUSION = "occlusion"  # a bag, cloth or poster over most of the lens
    SHIFT = "shift"  # camera knocked or turned: the view moved


# The fault the analyzer is expected to raise for each injected one.
EXPECTED_FAULT = {
    Fault.BLUR: "blur",
    Fault.DARK: "dark",
    Fault.GLARE: "overexposed",
    Fault.FREEZE: "frozen",
    Fault.OCCLUSION: "occluded",
    Fault.SHIFT: "shifted",
}


@dataclass(frozen=True, slots=True)
class FaultWindow:
    fault: Fault
    start_s: float
    end_s: float = float("inf")

    def active(self, t: float) -> bool:
        return self.start_s <= t < self.end_s


@dataclass(slots=True)
class FaultInjector:
    windows: tuple[FaultWindow, ...] = ()
    _held: dict[FaultWindow, Image] = field(default_factory=dict)

    def active(self, t: float) -> tuple[Fault, ...]:
        return tuple(w.fault for w in self.windows if w.active(t))

    def apply(self, img: Image, t: float) -> Image:
        for w in self.windows:
            if not w.active(t):
                continue
            if w.fault is Fault.FREEZE:
                img = self._held.setdefault(w, img)
            else:
                img = transform(img, w.fault)
        return img


def transform(img: Image, fault: Fault) -> Image:
    h, w = img.shape[:2]
    if fault is Fault.BLUR:
        k = (max(3, w // 40) // 2) * 2 + 1
        return cv2.GaussianBlur(img, (k, k), 0)
    if fault is Fault.DARK:
        return cv2.convertScaleAbs(img, alpha=0.06, beta=0)
    if fault is Fault.GLARE:
        return cv2.convertScaleAbs(img, alpha=3.0, beta=160)
    if fault is Fault.OCCLUSION:
        out = img.copy()
        # A cloth over the lens: dark, smooth, with the sensor's noise still on it.
        cover = np.full_like(img, 45)
        mask = np.zeros((h, w), np.uint8)
        cv2.ellipse(mask, (w // 2, h // 2), (int(w * 0.55), int(h * 0.6)), 10, 0, 360, 255, -1)
        noise = np.random.default_rng(0).normal(0, 2, (h, w))
        cover = np.clip(cover.astype(np.float64) + noise[..., None], 0, 255).astype(np.uint8)
        out[mask > 0] = cover[mask > 0]
        return out
    if fault is Fault.SHIFT:
        m = cv2.getRotationMatrix2D((w / 2, h / 2), 4.0, 1.0)
        m[0, 2] += 0.12 * w
        m[1, 2] += 0.06 * h
        return cv2.warpAffine(img, m, (w, h), borderMode=cv2.BORDER_REFLECT)
    return img
