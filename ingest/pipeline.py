"""The ingest pipeline without I/O: one MQTT message in, line protocol and rejections out."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from ingest.cameras import CameraLines
from ingest.deadletter import Rejection
from ingest.ratelimit import DeviceRateLimiter
from pantau.cameras import Camera
from pantau.city import City
from pantau.device_messages import DeviceMessageReader
from pantau.influx.lineprotocol import series_key, to_line
from pantau.settings import IngestSettings
from pantau.topics import Topics


@dataclass(slots=True)
class Outcome:
    lines: list[str] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)


class Pipeline:
    """Read (decode + validate, pantau.device_messages), hold each device to its
    message budget (ingest.ratelimit) and format one message."""

    def __init__(
        self,
        city: City,
        topics: Topics,
        settings: IngestSettings,
        cameras: Mapping[str, Camera] | None = None,
    ) -> None:
        self._reader = DeviceMessageReader(city, topics, settings)
        # With a camera registry, camera analyses and states are stored too.
        self._cameras = CameraLines(cameras, topics) if cameras is not None else None
        self.topic_filters = [topics.all_sensor_up]
        if cameras is not None:
            self.topic_filters += [topics.all_camera_analysis, topics.all_camera_status]
        self._tags = {device_id: series_key(d) for device_id, d in city.devices.items()}
        kinds = city.catalogue.kinds
        self._limiter = DeviceRateLimiter(
            {i: kinds[d.kind].report_every_s for i, d in city.devices.items()},
            settings.rate_limit_factor,
        )

    def handle(
        self, topic: str, payload: bytes, content_type: str | None, received_at: datetime
    ) -> Outcome:
        if self._cameras is not None and self._cameras.handles(topic):
            camera = self._cameras.handle(topic, payload)
            return Outcome(
                camera.lines,
                [Rejection(r, d, topic, payload, received_at) for r, d in camera.rejections],
            )
        read = self._reader.read(topic, payload, content_type, received_at)
        outcome = Outcome()
        outcome.rejections = [
            Rejection(err.reason, err.detail, topic, payload, received_at)
            for err in read.rejections
        ]
        if read.readings:
            device_id = read.device_id
            assert device_id is not None  # readings exist only for a known device
            newest = max(r.time for r in read.readings).timestamp()
            if not self._limiter.allow(device_id, newest):
                detail = f"over its budget of {self._limiter.limit(device_id)}"
                outcome.rejections.append(
                    Rejection("rate_limited", detail, topic, payload, received_at)
                )
                return outcome
            tags = self._tags[device_id]
            outcome.lines = [to_line(r, tags) for r in read.readings]
        return outcome
