"""The ingest pipeline without I/O: one MQTT message in, line protocol and rejections out."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from ingest.cameras import CameraLines
from ingest.deadletter import Rejection
from ingest.fastpath import FastLines
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
        *,
        fast: bool = True,
    ) -> None:
        """`fast=False` leaves out ingest.fastpath (its tests compare the two)."""
        self._topics = topics
        self._reader = DeviceMessageReader(city, topics, settings)
        self._fast = FastLines(city, self._reader.names, settings) if fast else None
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
        sender = self._topics.device_of_sensor_topic(topic) if self._fast else None
        if self._fast is not None and sender is not None:
            # The common message; anything else (a rejection above all) goes the general way.
            fast = self._fast.lines(sender, payload, content_type, received_at)
            if fast is not None:
                lines, newest_s = fast
                if self._limiter.allow(sender, newest_s):
                    return Outcome(lines)
                return self._rate_limited(sender, topic, payload, received_at)
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
                outcome.rejections += self._rate_limited(
                    device_id, topic, payload, received_at
                ).rejections
                return outcome
            tags = self._tags[device_id]
            outcome.lines = [to_line(r, tags) for r in read.readings]
        return outcome

    def _rate_limited(
        self, device_id: str, topic: str, payload: bytes, received_at: datetime
    ) -> Outcome:
        detail = f"over its budget of {self._limiter.limit(device_id)}"
        return Outcome([], [Rejection("rate_limited", detail, topic, payload, received_at)])
