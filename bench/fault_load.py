"""What `bench.faults` drives and watches: the paced fleet load, the malformed flood
(sent and counted in processes of their own), the latency probe and ingest's memory."""

from __future__ import annotations

import contextlib
import multiprocessing.queues
import threading
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from pantau.city import City
from pantau.influx.query import InfluxQL, InfluxQLError
from pantau.settings import MqttSettings, Settings
from pantau.topics import Topics
from pantau.wire import Sample, encode_native
from testkit.mqtt import Collector, Publisher
from testkit.payloads import malformed
from testkit.services import IngestProcess, wait_until

MAX_PENDING = 20_000  # QoS 1 messages published and not yet acknowledged by the broker
Series = tuple[str, str]  # device, metric


class LoadPublisher:
    """QoS 1 publisher that rides through broker restarts: paho keeps and resends what
    was not acknowledged, and acknowledgements are counted in on_publish (an info of a
    message published while disconnected raises for good, even once it is delivered)."""

    def __init__(self, mqtt: MqttSettings) -> None:
        self._client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"bench-load-{uuid.uuid4().hex[:8]}",
            protocol=paho.MQTTv5,
        )
        self._client.max_inflight_messages_set(1000)
        self._client.max_queued_messages_set(0)
        self._client.reconnect_delay_set(min_delay=1, max_delay=2)
        self.published = 0
        self.acknowledged = 0
        self._client.on_publish = self._on_publish
        self._client.connect(mqtt.host, mqtt.port)
        self._client.loop_start()

    def _on_publish(self, client: paho.Client, userdata: Any, mid: int, *_: Any) -> None:
        self.acknowledged += 1

    def publish(self, topic: str, payload: bytes) -> None:
        # paho's message ids are 16 bits: a queue of more than 65,535 unsent messages
        # reuses ids and silently drops queued ones. Wait instead (the offered rate drops
        # when this machine cannot keep up, and the header reports the rate achieved).
        while self.published - self.acknowledged >= MAX_PENDING:
            time.sleep(0.005)
        self._client.publish(topic, payload, qos=1)
        self.published += 1

    def close(self, timeout: float = 600) -> None:
        deadline = time.monotonic() + timeout
        while self.acknowledged < self.published and time.monotonic() < deadline:
            time.sleep(0.1)
        if self.acknowledged < self.published:
            print(f"    {self.published - self.acknowledged} publishes never acknowledged")
        self._client.disconnect()
        self._client.loop_stop()


class FleetLoad:
    """Every device in turn sends one message with each metric of its kind, at `rate`
    readings/s; device times one minute apart per device (its report interval), ending
    before now, so every reading is inside every bound and within budget."""

    def __init__(self, settings: Settings, city: City, rate: float, quiet: str) -> None:
        """`quiet`: a device left out (the noisy case's own)."""
        self._publisher = LoadPublisher(settings.mqtt)
        self._topics = Topics(settings.mqtt.root)
        self._devices = sorted(
            (d for d in city.devices.values() if d.id != quiet), key=lambda d: d.id
        )
        self._samples = {
            d.id: [
                Sample(m, (spec.valid_min + spec.valid_max) / 2, spec.unit)
                for m in d.metrics
                if (spec := city.catalogue.metric(m)) is not None
            ]
            for d in self._devices
        }
        per_message = sum(len(s) for s in self._samples.values()) / len(self._devices)
        self._message_rate = rate / per_message
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fleet-load", daemon=True)
        self.sent: Counter[Series] = Counter()
        self.messages = 0
        self._start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(days=2)

    @property
    def total(self) -> int:
        return sum(self.sent.values())

    def start(self) -> FleetLoad:
        self._thread.start()
        return self

    def _run(self) -> None:
        began = time.monotonic()
        i = 0
        while not self._stop.is_set():
            due = began + i / self._message_rate
            if (wait := due - time.monotonic()) > 0:
                time.sleep(min(wait, 0.05))
                continue
            device = self._devices[i % len(self._devices)]
            when = self._start + timedelta(minutes=i // len(self._devices))
            samples = self._samples[device.id]
            payload = encode_native(device.id, i, when, samples)
            self._publisher.publish(self._topics.sensor_up(device.id), payload)
            for s in samples:
                self.sent[(device.id, s.metric)] += 1
            self.messages += 1
            i += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self._publisher.close()


def stored_series(settings: Settings) -> Counter[Series]:
    counts: Counter[Series] = Counter()
    with InfluxQL(settings.influx.url, settings.influx.database, timeout_s=120) as influx:
        for series in influx.query("SELECT count(value) FROM /.*/ GROUP BY device"):
            device = series.tags.get("device", "")
            for row in series.rows():
                counts[(device, series.name)] += int(str(row["count"]))
    return counts


def stored_total(settings: Settings, exclude: str = "") -> int:
    """Readings stored, not counting device `exclude` (the noisy case's device, also the
    latency probe's: the fleet's readings alone say when the fleet's are all in)."""
    with InfluxQL(settings.influx.url, settings.influx.database, timeout_s=120) as influx:
        rows = influx.rows(
            "SELECT count(value) FROM /.*/ WHERE device != $d", params={"d": exclude}
        )
    return sum(int(str(r["count"])) for r in rows)


def send_malformed(
    mqtt: MqttSettings,
    devices: Sequence[str],
    count: int,
    rate: float,
    answers: multiprocessing.queues.Queue[dict[str, int]],
) -> None:
    """The malformed flood (a process of its own): `count` payloads of every kind in
    turn, at `rate` per second (0: as fast as the broker takes them); answers how many
    of each expected reason were sent once the broker acknowledged them all."""
    topics = Topics(mqtt.root)
    pub = Publisher(mqtt)
    now = datetime.now(UTC).replace(microsecond=0)
    reasons: Counter[str] = Counter()
    began = time.monotonic()
    for n in range(count):
        device = devices[n % len(devices)]
        reason, payload = malformed(device, now, n)
        pub.publish(topics.sensor_up(device), payload)
        reasons[reason] += 1
        if n % 500 == 499:
            pub.flush()
        if rate:
            time.sleep(max(0.0, began + (n + 1) / rate - time.monotonic()))
    pub.close()
    answers.put(dict(reasons))


def count_dead_letters(
    mqtt: MqttSettings,
    ready: multiprocessing.queues.Queue[bool],
    expected: multiprocessing.queues.Queue[int],
    answers: multiprocessing.queues.Queue[dict[str, int]],
) -> None:
    """The dead-letter count (a process of its own: receiving 500 letters/s in the
    bench process would take the GIL from the latency probe's poller during the flood
    only, and the probe would measure that). Subscribes, says ready, waits for the
    number to expect, then for that many letters (at most 300 s), and answers the
    letters per reason."""
    dead = Collector(mqtt, Topics(mqtt.root).all_deadletter)
    ready.put(True)
    total = expected.get(timeout=3600)
    with contextlib.suppress(AssertionError):  # a shortfall is reported by the caller
        wait_until(lambda: len(dead.snapshot()) >= total, 300, "dead letters", poll=1.0)
    time.sleep(2)  # anything beyond the expected count shows as a mismatch
    letters = Counter(m.topic.rsplit("/", 1)[-1] for m in dead.snapshot())
    dead.close()
    answers.put(dict(letters))


class LatencyProbe:
    """Valid traffic's latency, publish -> stored: one `rssi` reading of `device` every
    `every_s` (QoS 1), each with its own device time (a minute apart, so never over the
    rate budget), and a poller that notes when each shows up in InfluxDB (every 50 ms,
    so a sample is late by up to that plus the query)."""

    def __init__(self, settings: Settings, device: str, every_s: float = 0.1) -> None:
        self._settings = settings
        self._device = device
        self._every_s = every_s
        self._publisher = Publisher(settings.mqtt)
        self._topics = Topics(settings.mqtt.root)
        self._start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(days=6)
        self._sent: dict[int, float] = {}  # device time in ms -> when published
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.latencies: list[tuple[float, float]] = []  # (published at, seconds)
        self._threads = [
            threading.Thread(target=self._send, daemon=True),
            threading.Thread(target=self._poll, daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _send(self) -> None:
        i = 0
        while not self._stop.wait(self._every_s):
            when = self._start + timedelta(minutes=i)
            payload = encode_native(self._device, i, when, [Sample("rssi", -60.0)])
            with self._lock:
                self._sent[int(when.timestamp() * 1000)] = time.monotonic()
            self._publisher.publish(self._topics.sensor_up(self._device), payload)
            i += 1

    def _poll(self) -> None:
        with InfluxQL(self._settings.influx.url, self._settings.influx.database) as influx:
            while not self._stop.wait(0.05):
                with self._lock:
                    if not self._sent:
                        continue
                    since = datetime.fromtimestamp(min(self._sent) / 1000, UTC).isoformat()
                try:
                    series = influx.query(
                        "SELECT value FROM rssi WHERE device = $d AND time >= $t",
                        params={"d": self._device, "t": since},
                        epoch="ms",
                    )
                except InfluxQLError:  # InfluxDB busy: look again
                    continue
                now = time.monotonic()
                with self._lock:
                    for s in series:
                        for ms, *_ in s.values:
                            published = self._sent.pop(int(str(ms)), None)
                            if published is not None:
                                self.latencies.append((published, now - published))

    def p99_ms(self, start: float, end: float) -> tuple[float, int]:
        """p99 of the samples published in [start, end), and their number."""
        with self._lock:
            xs = sorted(lat for at, lat in self.latencies if start <= at < end)
        if not xs:
            return float("nan"), 0
        return 1000 * xs[min(len(xs) - 1, int(0.99 * len(xs)))], len(xs)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join()
        self._publisher.close()


class MemoryWatch:
    """ingest's resident memory once a second (restarts included)."""

    def __init__(self, ingest: IngestProcess) -> None:
        self._ingest = ingest
        self.base = ingest.rss_bytes()
        self.peak = self.base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            self.peak = max(self.peak, self._ingest.rss_bytes())

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak - self.base
