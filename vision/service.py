"""The vision service: a worker per camera, analyses and camera states out on MQTT.

Analyses go to `{root}/cameras/{id}/analysis` at QoS 1 (a lost analysis is a gap in a
series, not a disaster, but QoS 1 costs nothing at a few messages per second); states
to `{root}/cameras/{id}/status`, retained, so a dashboard or the rules learn each
camera's state on subscribing. Stopping publishes `offline` for every camera.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from pantau.cameras import Camera
from pantau.clock import Clock, SystemClock
from pantau.frame_analysis import (
    ANALYSIS_CONTENT_TYPE,
    CameraState,
    FrameAnalysis,
    encode_analysis,
    encode_status,
)
from pantau.mqtt import make_client
from pantau.settings import MqttSettings
from pantau.topics import Topics
from vision.analyzer import CameraAnalyzer
from vision.sources import FrameSource, open_source
from vision.worker import CameraWorker

log = logging.getLogger(__name__)

SourceFactory = Callable[[Camera, Clock], FrameSource]


def default_source(camera: Camera, clock: Clock) -> FrameSource:
    return open_source(camera.source_kind, camera.url, clock, camera.sample_fps)


class VisionService:
    def __init__(
        self,
        mqtt_settings: MqttSettings,
        cameras: Mapping[str, Camera],
        *,
        evidence_dir: Path | None,
        client_id: str | None = None,
        clock: Clock | None = None,
        source_factory: SourceFactory = default_source,
    ) -> None:
        self._settings = mqtt_settings
        self._topics = Topics(mqtt_settings.root)
        self._clock = clock or SystemClock()
        self._connected = threading.Event()
        self._client = make_client(
            mqtt_settings, client_id or f"pantau-vision-{uuid.uuid4().hex[:8]}", manual_ack=False
        )
        self._client.max_queued_messages_set(1000)  # bounded while the broker is away
        self._client.on_connect = lambda *_args: self._connected.set()
        self._client.on_disconnect = lambda *_args: self._connected.clear()
        self.workers = [
            CameraWorker(
                camera,
                source_factory(camera, self._clock),
                CameraAnalyzer(camera, evidence_dir),
                on_analysis=self._publish_analysis,
                on_state=self._publish_state,
                clock=self._clock,
            )
            for camera in cameras.values()
        ]

    def start(self) -> None:
        self._client.start_async()
        self._client.loop_start()
        for worker in self.workers:
            worker.start()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
        for worker in self.workers:
            self._publish_state(worker.camera.id, CameraState.OFFLINE, self._clock.now(), "stopped")
        self._client.disconnect()  # paho sends what is queued first
        self._client.loop_stop()

    def _publish_analysis(self, analysis: FrameAnalysis) -> None:
        self._client.publish(
            self._topics.camera_analysis(analysis.camera_id),
            encode_analysis(analysis),
            qos=1,
            properties=_content_type(ANALYSIS_CONTENT_TYPE),
        )

    def _publish_state(
        self, camera_id: str, state: CameraState, time: datetime, detail: str
    ) -> None:
        self._client.publish(
            self._topics.camera_status(camera_id),
            encode_status(camera_id, state, time, detail),
            qos=1,
            retain=True,
            properties=_content_type("application/json"),
        )


def _content_type(value: str) -> Properties:
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.ContentType = value
    return props
