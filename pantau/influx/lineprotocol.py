"""InfluxDB line protocol for readings.

Schema: one measurement per metric; tags are what a dashboard groups by and what
identifies the series (device plus the registry's zones, agency and kind); fields are
`value` (float, canonical unit) and `seq` (int). Point identity is measurement + tags
+ device time, so a redelivered or replayed reading overwrites itself. Never put
ingest time or a worker id in a tag.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pantau.devices import Device
from pantau.readings import Reading

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MILLISECOND = timedelta(milliseconds=1)
_TAG_ESCAPES = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ "})
_MEASUREMENT_ESCAPES = str.maketrans({",": r"\,", " ": r"\ "})


def tag_value(text: str) -> str:
    return text.translate(_TAG_ESCAPES)


def series_key(device: Device) -> str:
    """The tag part of a device's series, sorted by key as InfluxDB prefers."""
    tags = {
        "agency": device.agency,
        "device": device.id,
        "kecamatan": device.kecamatan_id,
        "kelurahan": device.kelurahan_id,
        "kind": device.kind,
    }
    return "".join(f",{k}={tag_value(v)}" for k, v in sorted(tags.items()))


def to_line(reading: Reading, tags: str) -> str:
    """One line, millisecond precision (the write must say precision=ms)."""
    # Integer arithmetic: float timestamps would turn .123 s into 122 ms now and then.
    millis = (reading.time - EPOCH) // MILLISECOND
    seq = f",seq={reading.seq}i" if reading.seq is not None else ""
    measurement = reading.metric.translate(_MEASUREMENT_ESCAPES)
    return f"{measurement}{tags} value={reading.value!r}{seq} {millis}"
