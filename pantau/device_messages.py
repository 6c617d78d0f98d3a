"""One MQTT message on `{root}/sensors/{device}/up` -> its readings, or why not.

Every consumer of device topics (ingest, rules) reads messages the same way: the
topic names a valid, registered device, the payload is within the size limit and
decodes, and each reading passes the catalogue. One copy here keeps them agreeing
on what a reading is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pantau.city import City
from pantau.decoding import decode
from pantau.errors import RejectedInput
from pantau.readings import Reading
from pantau.senml import SenmlNames
from pantau.settings import IngestSettings
from pantau.topics import Topics
from pantau.validation import Validator


@dataclass(slots=True)
class ReadOutcome:
    device_id: str | None  # None when the topic names no valid device id
    readings: list[Reading] = field(default_factory=list)
    rejections: list[RejectedInput] = field(default_factory=list)


class DeviceMessageReader:
    """Decode and validate device messages. A bad record of a SenML pack rejects that
    record only; a message that cannot be decoded is rejected whole."""

    def __init__(self, city: City, topics: Topics, settings: IngestSettings) -> None:
        self._topics = topics
        self._max_bytes = settings.max_payload_bytes
        self.names = SenmlNames.of(
            {i: (d.senml_name, dict(d.senml_aliases)) for i, d in city.devices.items()}
        )
        self.validator = Validator(
            city.catalogue,
            city.devices,
            max_future_skew=timedelta(seconds=settings.max_future_skew_s),
            max_age=timedelta(seconds=settings.max_age_s),
        )

    def read(
        self, topic: str, payload: bytes, content_type: str | None, received_at: datetime
    ) -> ReadOutcome:
        device_id = self._topics.device_of_sensor_topic(topic)
        outcome = ReadOutcome(device_id)
        try:
            if device_id is None:
                raise RejectedInput("bad_device_id", f"topic {topic!r} names no valid device id")
            if len(payload) > self._max_bytes:
                raise RejectedInput("too_large", f"{len(payload)} bytes, limit {self._max_bytes}")
            self.validator.device(device_id)  # unknown devices are refused before decoding
            raws = decode(device_id, payload, received_at, content_type, self.names)
        except RejectedInput as err:
            outcome.rejections.append(err)
            return outcome
        for result in self.validator.readings(raws, received_at):
            if isinstance(result, RejectedInput):
                outcome.rejections.append(result)
            else:
                outcome.readings.append(result)
        return outcome
