"""Citizens' photos, re-encoded on arrival: the pixels are kept, nothing else.

A phone's JPEG carries the GPS position, the time, the camera model and often a
thumbnail in its EXIF/XMP/IPTC segments. Decoding to pixels and encoding a fresh JPEG
leaves all of them behind (OpenCV writes only the JFIF header). The EXIF orientation is
applied to the pixels before it is dropped, so the picture stays upright. The original
bytes are never stored.
"""

from __future__ import annotations

import struct
import threading

import cv2
import numpy as np

JPEG = "image/jpeg"
MAX_PIXELS = 40_000_000  # a 40 MP phone photo; more is a decompression bomb
MAX_SIDE = 2048  # staff need to see the water, not the pores
QUALITY = 85
# Decoding takes width x height x 3 bytes; one photo at a time keeps that bounded.
_decoding = threading.Lock()


class PhotoError(ValueError):
    pass


def dimensions(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG's IHDR or a JPEG's SOF segment, without decoding."""
    if data.startswith(b"\x89PNG\r\n\x1a\n") and data[12:16] == b"IHDR":
        width, height = struct.unpack(">II", data[16:24])
        return int(width), int(height)
    if not data.startswith(b"\xff\xd8"):
        return None
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # standalone markers
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        # SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC)
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if i + 9 > len(data):
                return None
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            return int(width), int(height)
        i += 2 + length
    return None


def clean(data: bytes) -> bytes:
    """The photo as a new JPEG without any metadata; PhotoError if it is not a JPEG or
    PNG image of sensible size."""
    size = dimensions(data)
    if size is None:
        raise PhotoError("the photo must be a JPEG or PNG image")
    width, height = size
    if width < 1 or height < 1 or width * height > MAX_PIXELS:
        raise PhotoError(f"a {width}x{height} photo is too large")
    with _decoding:
        pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if pixels is None:
            raise PhotoError("the photo could not be decoded")
        longest = max(pixels.shape[:2])
        if longest > MAX_SIDE:
            scale = MAX_SIDE / longest
            pixels = cv2.resize(pixels, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        ok, encoded = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, QUALITY])
    if not ok:
        raise PhotoError("the photo could not be re-encoded")
    return bytes(encoded.tobytes())
