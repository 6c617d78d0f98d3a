"""bench.soak's feed: every camera's analyses in rounds of simulated time, published by
`mosquitto_pub -l` (C), and a gate that holds the readings (the simulator's gateways)
to the same rounds, each round going out only once the broker's queues have room.

Why rounds and a small backlog (seen 2026-12-06 on main, `--days 2 --day-hours 2`):
with 15-minute rounds over a 60,000-message backlog and the readings unbounded, the
broker held ~85,000 messages, mosquitto spent 88 % of its CPU in
db__message_delete_outgoing (perf: the walk of a client's in-flight list for the
packet id a PUBACK names), ingest and rules starved (ingest was dropped on a keep-alive
timeout), and at the day's end ~6,200 messages stayed in the broker unacknowledged, so
the day never settled. Mosquitto 2.0.11 (Debian's) moves up to Receive-Maximum queued
messages into flight after each PUBACK, past the client's limit; with more than 65,535
in flight packet ids repeat, and a repeated id is taken for a redelivered copy and not
acknowledged again (pantau.mqtt_session): the likely cause of both. Rounds of 10
simulated minutes over a backlog under 20,000 keep every queue far below 65,535.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from bench.mosquitto_clients import PublishJob, run_publishers
from pantau.cameras import Camera
from pantau.frame_analysis import (
    ANALYSIS_CONTENT_TYPE,
    FrameAnalysis,
    Measure,
    encode_analysis,
)
from pantau.local import LocalStack
from pantau.settings import Settings
from pantau.topics import Topics
from pantau.wire import rfc3339

# Simulated time per round: ~22,800 analyses and ~1,800 readings messages.
ROUND = timedelta(minutes=10)
ROUND_BACKLOG = 20_000  # the next round goes out once the broker holds fewer messages
SETTLED_BACKLOG = 2_000  # at the day's end: the retained statuses and little else


def analysis_lines(camera: Camera, start: datetime, end: datetime, seq0: int) -> list[bytes]:
    """The camera's analyses over [start, end) at its sample_fps, one payload per line:
    the vision worker's encoding (encode_analysis) done once, then only its time and
    seq change, so generating a day costs the bench seconds, not minutes."""
    measures = [
        Measure("camera_brightness", 0.5, "/", 0.9),
        Measure("camera_sharpness", 1.0, "/", 0.9),
        Measure("camera_fault", 0.0, "/", 0.9),
    ]
    measures += [Measure("region_occupancy", 0.2, "/", 0.8, r.id) for r in camera.regions]
    if camera.gauge is not None:
        measures.append(Measure("water_depth", 3.0, "cm", 0.8))
    w, h = camera.frame_size
    marker = datetime(2000, 1, 1, tzinfo=UTC)
    template = encode_analysis(
        FrameAnalysis(
            camera_id=camera.id, time=marker, seq=0, width=w, height=h, measures=tuple(measures)
        )
    )
    head, tail = template.split(f'"{rfc3339(marker)}","seq":0'.encode(), 1)
    step = 1 / camera.sample_fps
    first = start.timestamp()
    count = round((end - start).total_seconds() * camera.sample_fps)
    return [
        b'%s"%s","seq":%d%s'
        % (head, rfc3339(datetime.fromtimestamp(first + i * step, UTC)).encode(), seq0 + i, tail)
        for i in range(count)
    ]


class BrokerBacklog:
    """The broker's stored message count (`$SYS/broker/store/messages/count`, every
    `sys_interval`): what its subscribers' queues hold, retained messages included."""

    TOPIC = "$SYS/broker/store/messages/count"

    def __init__(self, stack: LocalStack) -> None:
        self._cond = threading.Condition()
        self._count: int | None = None
        self._client = paho.Client(CallbackAPIVersion.VERSION2, "soak-backlog")
        self._client.on_connect = lambda c, *_: c.subscribe(self.TOPIC)
        self._client.on_message = self._on_message
        self._client.connect(stack.mqtt_host, stack.mqtt_port)
        self._client.loop_start()

    def _on_message(self, _c: object, _u: object, msg: paho.MQTTMessage) -> None:
        with self._cond:
            self._count = int(msg.payload)
            self._cond.notify_all()

    def wait_below(self, limit: int, timeout: float = 3600) -> int:
        """Until the count is under `limit`; that count. The broker publishes it only
        when it changes, so the last value holds once a sys_interval has passed."""
        fresh = time.monotonic() + 1.5
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._count is None or self._count >= limit or time.monotonic() < fresh:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the broker still holds {self._count} messages")
                self._cond.wait(0.5)
            return self._count

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()


class Gate:
    """How far in simulated time the readings may go (simulators.publisher's `pace`):
    opened a round at a time with the analyses, so the readings too reach the broker no
    faster than ingest and rules take them. A plain attribute read per message."""

    def __init__(self, start: datetime) -> None:
        self.until = start

    def __call__(self, sim_time: datetime) -> bool:
        return sim_time < self.until


def publish_analyses(
    stack: LocalStack,
    settings: Settings,
    backlog: BrokerBacklog,
    gate: Gate,
    cameras: dict[str, Camera],
    start: datetime,
    end: datetime,
    work: Path,
) -> int:
    """Every camera's analyses over [start, end) at its sample_fps, QoS 1, one
    `mosquitto_pub -l` per camera and round (the C client: the bench's own publishing
    costs little CPU beside the services it measures), opening `gate` to each round's
    end as it goes out; wide open at the end. The number published."""
    topics = Topics(settings.mqtt.root)
    sent = 0
    t = start
    try:
        while t < end:
            stop = min(t + ROUND, end)
            backlog.wait_below(ROUND_BACKLOG)
            gate.until = stop
            jobs = []
            for camera in cameras.values():
                seq0 = round((t - start).total_seconds() * camera.sample_fps)
                lines = analysis_lines(camera, t, stop, seq0)
                path = work / f"{camera.id}.lines"
                path.write_bytes(b"\n".join(lines) + b"\n")
                jobs.append(
                    PublishJob(topics.camera_analysis(camera.id), path, len(lines), len(lines))
                )
            run_publishers(stack, jobs, ("-D", "publish", "content-type", ANALYSIS_CONTENT_TYPE))
            sent += sum(j.count for j in jobs)
            t = stop
    finally:
        gate.until = datetime.max.replace(tzinfo=UTC)  # the readings never wait on a failure
    return sent
