"""The ingest pipeline without I/O: one MQTT message in, line protocol and rejections out."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ingest.deadletter import Rejection
from ingest.lineprotocol import series_key, to_line
from pantau.city import City
from pantau.decoding import decode
from pantau.errors import RejectedInput
from pantau.settings import IngestSettings
from pantau.topics import Topics
from pantau.validation import Validator


@dataclass(slots=True)
class Outcome:
    lines: list[str] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)


class Pipeline:
    """Decode, validate and format one message. A bad reading in a SenML pack rejects
    that reading only; a message that cannot be decoded is rejected whole."""

    def __init__(self, city: City, topics: Topics, settings: IngestSettings) -> None:
        self._topics = topics
        self._max_bytes = settings.max_payload_bytes
        self._validator = Validator(
            city.catalogue,
            city.devices,
            max_future_skew=timedelta(seconds=settings.max_future_skew_s),
            max_age=timedelta(seconds=settings.max_age_s),
        )
        self._tags = {device_id: series_key(d) for device_id, d in city.devices.items()}

    def handle(
        self, topic: str, payload: bytes, content_type: str | None, received_at: datetime
    ) -> Outcome:
        outcome = Outcome()
        try:
            device_id = self._topics.device_of_sensor_topic(topic)
            if device_id is None:
                raise RejectedInput("bad_device_id", f"topic {topic!r} names no valid device id")
            if len(payload) > self._max_bytes:
                raise RejectedInput("too_large", f"{len(payload)} bytes, limit {self._max_bytes}")
            self._validator.device(device_id)  # unknown devices are refused before decoding
            raw_readings = decode(device_id, payload, received_at, content_type)
        except RejectedInput as err:
            outcome.rejections.append(
                Rejection(err.reason, err.detail, topic, payload, received_at)
            )
            return outcome
        tags = self._tags[device_id]
        for result in self._validator.readings(raw_readings, received_at):
            if isinstance(result, RejectedInput):
                outcome.rejections.append(
                    Rejection(result.reason, result.detail, topic, payload, received_at)
                )
            else:
                outcome.lines.append(to_line(result, tags))
        return outcome
