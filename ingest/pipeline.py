"""The ingest pipeline without I/O: one MQTT message in, line protocol and rejections out."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from ingest.deadletter import Rejection
from ingest.lineprotocol import series_key, to_line
from pantau.city import City
from pantau.device_messages import DeviceMessageReader
from pantau.settings import IngestSettings
from pantau.topics import Topics


@dataclass(slots=True)
class Outcome:
    lines: list[str] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)


class Pipeline:
    """Read (decode + validate, pantau.device_messages) and format one message."""

    def __init__(self, city: City, topics: Topics, settings: IngestSettings) -> None:
        self._reader = DeviceMessageReader(city, topics, settings)
        self._tags = {device_id: series_key(d) for device_id, d in city.devices.items()}

    def handle(
        self, topic: str, payload: bytes, content_type: str | None, received_at: datetime
    ) -> Outcome:
        read = self._reader.read(topic, payload, content_type, received_at)
        outcome = Outcome()
        if read.readings:
            assert read.device_id is not None  # readings exist only for a known device
            tags = self._tags[read.device_id]
            outcome.lines = [to_line(r, tags) for r in read.readings]
        outcome.rejections = [
            Rejection(err.reason, err.detail, topic, payload, received_at)
            for err in read.rejections
        ]
        return outcome
