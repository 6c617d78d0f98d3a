"""The flood-hotspot choropleth as a PNG: kelurahan filled by flood hours in five
classes, the top five numbered by rank, a legend. Drawn with OpenCV (already Pantau's
image library: no plotting dependency for one map)."""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np

from .context import ApiContext
from .planning import Hotspot

WIDTH, HEIGHT, MARGIN, PANEL = 1400, 1000, 30, 380
# ColorBrewer Reds (5) after a grey for "no flood", as BGR for OpenCV.
CLASSES = ["#eef2f7", "#fee5d9", "#fcae91", "#fb6a4a", "#de2d26", "#a50f15"]
FONT = cv2.FONT_HERSHEY_SIMPLEX
INK = (40, 24, 17)


def _bgr(hex_colour: str) -> tuple[int, int, int]:
    r, g, b = (int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return b, g, r


def class_bounds(spots: list[Hotspot]) -> list[float]:
    """Upper bounds of the five flood classes: equal steps up to the largest value."""
    top = max((h.flood_hours for h in spots), default=0.0)
    step = top / 5 if top > 0 else 1.0
    return [step * i for i in range(1, 6)]


def flood_class(hours: float, bounds: list[float]) -> int:
    """0 for no flood hours, else 1..5."""
    if hours <= 0:
        return 0
    return next((i + 1 for i, b in enumerate(bounds) if hours <= b + 1e-9), 5)


def _rings(geometry: dict[str, Any]) -> list[list[list[float]]]:
    polys = [geometry["coordinates"]] if geometry["type"] == "Polygon" else geometry["coordinates"]
    return [ring for poly in polys for ring in poly]


def draw(ctx: ApiContext, spots: list[Hotspot], title: str, subtitle: str) -> bytes:
    img = np.full((HEIGHT, WIDTH, 3), 255, dtype=np.uint8)
    outlines = {h.kelurahan_id: ctx.geo.outline(h.kelurahan_id) for h in spots}
    coords = [c for g in outlines.values() if g for ring in _rings(g) for c in ring]
    lons, lats = [c[0] for c in coords], [c[1] for c in coords]
    k = math.cos(math.radians((min(lats) + max(lats)) / 2))
    map_w, map_h = WIDTH - PANEL - 2 * MARGIN, HEIGHT - 2 * MARGIN - 70
    scale = min(map_w / ((max(lons) - min(lons)) * k), map_h / (max(lats) - min(lats)))

    def px(lon: float, lat: float) -> tuple[int, int]:
        return (
            int(MARGIN + (lon - min(lons)) * k * scale),
            int(MARGIN + 70 + (max(lats) - lat) * scale),
        )

    bounds = class_bounds(spots)
    for h in spots:
        g = outlines[h.kelurahan_id]
        if not g:
            continue
        polys = [np.array([px(x, y) for x, y in ring], dtype=np.int32) for ring in _rings(g)]
        cv2.fillPoly(img, polys, _bgr(CLASSES[flood_class(h.flood_hours, bounds)]))
        cv2.polylines(img, polys, True, (120, 110, 100), 1, cv2.LINE_AA)
    for h in spots[:5]:
        if h.flood_hours <= 0:
            break
        centre = ctx.geo.centre(h.kelurahan_id)
        if centre is None:
            continue
        x, y = px(*centre)
        cv2.circle(img, (x, y), 15, (255, 255, 255), -1, cv2.LINE_AA)
        cv2.circle(img, (x, y), 15, INK, 2, cv2.LINE_AA)
        label = str(h.rank)
        (tw, th), _ = cv2.getTextSize(label, FONT, 0.6, 2)
        cv2.putText(img, label, (x - tw // 2, y + th // 2), FONT, 0.6, INK, 2, cv2.LINE_AA)
    cv2.putText(img, title, (MARGIN, 42), FONT, 0.95, INK, 2, cv2.LINE_AA)
    cv2.putText(img, subtitle, (MARGIN, 75), FONT, 0.6, (80, 80, 80), 1, cv2.LINE_AA)
    _legend(img, spots, bounds)
    ok, png = cv2.imencode(".png", img)
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return bytes(png.tobytes())


def _legend(img: np.ndarray, spots: list[Hotspot], bounds: list[float]) -> None:
    x0, y = WIDTH - PANEL + 10, 130
    cv2.putText(img, "Flood hours (jam banjir)", (x0, y), FONT, 0.65, INK, 2, cv2.LINE_AA)
    labels = ["0"] + [f"{(bounds[i - 1] if i else 0):.1f} - {b:.1f}" for i, b in enumerate(bounds)]
    for i, (colour, label) in enumerate(zip(CLASSES, labels, strict=True)):
        yy = y + 25 + i * 32
        cv2.rectangle(img, (x0, yy), (x0 + 40, yy + 22), _bgr(colour), -1)
        cv2.rectangle(img, (x0, yy), (x0 + 40, yy + 22), (120, 110, 100), 1)
        cv2.putText(img, label, (x0 + 52, yy + 17), FONT, 0.55, INK, 1, cv2.LINE_AA)
    y += 25 + 6 * 32 + 30
    cv2.putText(img, "Top kelurahan (rank)", (x0, y), FONT, 0.65, INK, 2, cv2.LINE_AA)
    for h in spots[:10]:
        if h.flood_hours <= 0:
            break
        y += 28
        text = f"{h.rank}. {h.kelurahan[:20]}  {h.flood_hours:.1f} h, {h.incidents} inc."
        cv2.putText(img, text, (x0, y), FONT, 0.5, INK, 1, cv2.LINE_AA)
