"""The vision service: a worker per camera, analyses and camera states out on MQTT.

Analyses go to `{root}/cameras/{id}/analysis` at QoS 1 (a lost analysis is a gap in a
series, not a disaster, but QoS 1 costs nothing at a few messages per second); states
to `{root}/cameras/{id}/status`, retained, so a dashboard or the rules learn each
camera's state on subscribing. Stopping publishes `offline` for every camera.

With `leases` (vision.share_cameras), several vision workers share the cameras: each
camera is leased to one live worker (pantau.store.leases, kind `vision`), a fair share
each. A worker runs a camera only while it holds its lease, and an analysis carries no
epoch a reader could check, so the worker fences itself: it halts a camera (nothing more
published for it, `CameraWorker.halt`) before giving its lease back and as soon as a
balance says it lost it, and publishes nothing for a camera once its lease could have
expired without its knowing (no balance renewed it for ttl - period: the store
unreachable or slow, the balance stuck). A stopping worker gives its cameras back so the
others take them at once, and says `offline` only if no other worker is live.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

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

if TYPE_CHECKING:  # the SQL store is loaded only by a worker that shares cameras
    from pantau.store.leases import Leases

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
        leases: Leases | None = None,
        period_s: float = 2.0,
    ) -> None:
        """With `leases`, only the cameras this worker leases run (re-balanced every
        `period_s`), and each analysis names the worker (MQTT user property `replica`)."""
        self._settings = mqtt_settings
        self._topics = Topics(mqtt_settings.root)
        self._clock = clock or SystemClock()
        self._cameras = dict(cameras)
        self._evidence_dir = evidence_dir
        self._source_factory = source_factory
        self._connected = threading.Event()
        self._client = make_client(
            mqtt_settings, client_id or f"pantau-vision-{uuid.uuid4().hex[:8]}", manual_ack=False
        )
        self._client.max_queued_messages_set(1000)  # bounded while the broker is away
        self._client.on_connect = lambda *_args: self._connected.set()
        self._client.on_disconnect = lambda *_args: self._connected.clear()
        self._leases = leases
        self._period_s = period_s
        self._replica = None if leases is None else leases.owner
        self._last_renewed = time.monotonic()
        # Per camera, the monotonic time until which its lease is surely still ours: the
        # start of the balance that last renewed it + ttl - period. Analyses after it
        # are not published (read by the camera threads without a lock: one dict get).
        self._valid_until: dict[str, float] = {}
        self._stoppers: list[threading.Thread] = []  # halted workers winding down
        self.fenced = 0  # analyses and states not published: their lease may have expired
        self._stop = threading.Event()
        self._balancer = threading.Thread(target=self._balance_loop, name="vision-leases")
        self.running: dict[str, CameraWorker] = {}
        self.workers: list[CameraWorker] = []  # every worker this process ran (stats)
        if leases is None:
            for camera in self._cameras.values():
                self._new_worker(camera)

    def _new_worker(self, camera: Camera) -> CameraWorker:
        worker = CameraWorker(
            camera,
            self._source_factory(camera, self._clock),
            CameraAnalyzer(camera, self._evidence_dir),
            on_analysis=self._publish_analysis,
            on_state=self._report_state,
            clock=self._clock,
        )
        self.running[camera.id] = worker
        self.workers.append(worker)
        return worker

    def start(self) -> None:
        self._client.start_async()
        self._client.loop_start()
        if self._leases is None:
            for worker in self.workers:
                worker.start()
        else:
            self._balance()
            self._balancer.start()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def stop(self) -> None:
        self._stop.set()
        if self._balancer.is_alive():
            self._balancer.join(timeout=30)
        stopped = list(self.running)
        workers = [self.running.pop(camera_id) for camera_id in stopped]
        for worker in workers:
            worker.halt()  # all at once: one slow source must not keep the others going
        for worker in workers:
            worker.stop()
        for stopper in self._stoppers:
            stopper.join(timeout=10)
        others = False
        if self._leases is not None:
            try:
                self._leases.release_all()  # the others take them at once
                others = bool(self._leases.live_replicas())
            except Exception as err:
                log.warning("could not give back the camera leases: %s", err)
        if not others:
            for camera_id in stopped:
                self._publish_state(camera_id, CameraState.OFFLINE, self._clock.now(), "stopped")
        self._client.disconnect()  # paho sends what is queued first
        self._client.loop_stop()

    def _balance_loop(self) -> None:
        while not self._stop.wait(self._period_s):
            self._balance()

    def _balance(self) -> None:
        assert self._leases is not None
        ttl_s = self._leases.ttl_s
        started = time.monotonic()  # every renewal and take of this balance is later
        try:
            held, _lost = self._leases.balance(sorted(self._cameras), before_release=self._halt)
        except Exception as err:
            log.warning("cannot renew the camera leases: %s", err)
            # What the balance lost before it failed (its `lost` never came back).
            self._halt(sorted(set(self.running) - set(self._leases.held)))
            # Stop before a lease not renewed since could expire and be taken.
            if time.monotonic() - self._last_renewed >= ttl_s - self._period_s:
                self._halt(sorted(self.running), "its lease may expire")
            return
        self._last_renewed = started
        valid_until = started + ttl_s - self._period_s
        keys = {lease.key for lease in held}
        # Lost (taken by another worker after it expired): stop at once.
        self._halt(sorted(set(self.running) - keys))
        for lease in held:
            self._valid_until[lease.key] = valid_until
            if lease.key not in self.running:
                log.info("camera %s: analysed here (lease epoch %d)", lease.key, lease.epoch)
                self._new_worker(self._cameras[lease.key]).start()

    def _halt(self, camera_ids: list[str], why: str = "moves to another worker") -> None:
        """Stop publishing for these cameras now; their threads wind down in the
        background (a camera slow to close must not delay the next renewal)."""
        self._stoppers = [t for t in self._stoppers if t.is_alive()]
        for camera_id in camera_ids:
            worker = self.running.pop(camera_id, None)
            if worker is not None:
                log.info("camera %s %s", camera_id, why)
                worker.halt()
                stopper = threading.Thread(
                    target=worker.stop, name=f"stop-{camera_id}", daemon=True
                )
                stopper.start()
                self._stoppers.append(stopper)
            self._valid_until.pop(camera_id, None)  # after halt: nothing is fenced in between

    def _leased(self, camera_id: str) -> bool:
        """Whether this worker may still publish for the camera (always, unshared)."""
        if self._leases is None or time.monotonic() < self._valid_until.get(camera_id, 0.0):
            return True
        self.fenced += 1
        if self.fenced == 1 or self.fenced % 100 == 0:
            log.warning(
                "camera %s: not published, its lease may have expired (%d so far)",
                camera_id,
                self.fenced,
            )
        return False

    def _publish_analysis(self, analysis: FrameAnalysis) -> None:
        if not self._leased(analysis.camera_id):
            return
        self._client.publish(
            self._topics.camera_analysis(analysis.camera_id),
            encode_analysis(analysis),
            qos=1,
            properties=_content_type(ANALYSIS_CONTENT_TYPE, self._replica),
        )

    def _report_state(
        self, camera_id: str, state: CameraState, time: datetime, detail: str
    ) -> None:
        if self._leased(camera_id):
            self._publish_state(camera_id, state, time, detail)

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


def _content_type(value: str, replica: str | None = None) -> Properties:
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.ContentType = value
    if replica is not None:
        props.UserProperty = [("replica", replica)]
    return props
