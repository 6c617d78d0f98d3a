"""Dead-letter reasons the simulator expects ingest to give for a bad message.

These are the slugs of `{root}/deadletter/{reason}`. The simulator only produces
defects whose reason is unambiguous under ingest's checks (see faults.py).
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    MALFORMED_JSON = "malformed_json"  # not UTF-8 or not JSON (incl. NaN / Infinity tokens)
    INVALID_PAYLOAD = "invalid_payload"  # JSON, but the wrong shape or types
    UNKNOWN_DEVICE = "unknown_device"  # topic names a device not in the registry
    DEVICE_MISMATCH = "device_mismatch"  # payload device differs from the topic's
    UNKNOWN_METRIC = "unknown_metric"  # not in the catalogue, or not for this kind
    BAD_UNIT = "bad_unit"  # a unit the metric does not accept
    OUT_OF_RANGE = "out_of_range"  # outside the catalogue's valid range, or not finite
    BAD_TIMESTAMP = "bad_timestamp"  # > 300 s ahead, > 7 days old, or not RFC 3339


# Defects ingest finds per reading (one dead letter per bad reading); the others are
# found while decoding and reject the whole message (one dead letter).
PER_READING_REASONS = frozenset(
    {Reason.UNKNOWN_METRIC, Reason.BAD_UNIT, Reason.OUT_OF_RANGE, Reason.BAD_TIMESTAMP}
)
