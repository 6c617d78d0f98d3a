"""Per-device random streams, so a device's signal never depends on publish order.

Every random draw a device makes comes from a generator seeded by (scenario seed,
device id, purpose). Adding a fault, a device or a thread does not shift anyone
else's numbers, and the same seed gives byte-identical payloads.
"""

from __future__ import annotations

import hashlib
from enum import StrEnum

import numpy as np


class Stream(StrEnum):
    """What a stream is used for; separate streams keep faults from perturbing noise."""

    PROFILE = "profile"  # static traits: channel size, lanes, start battery, phase
    NOISE = "noise"  # measurement noise and small random walks
    MIX = "mix"  # native vs SenML per message
    FAULTS = "faults"  # spike draws
    MALFORMED = "malformed"  # which message is malformed, and how


def device_rng(seed: int, device_id: str, stream: Stream) -> np.random.Generator:
    digest = hashlib.blake2b(
        f"{seed}\x00{device_id}\x00{stream.value}".encode(), digest_size=16
    ).digest()
    return np.random.default_rng(int.from_bytes(digest, "big"))
