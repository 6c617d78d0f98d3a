"""What the fault tests (and bench/faults.py) drive: ingest as its own process, paced
device load over MQTT v5 QoS 1, and the ground truth read back from InfluxDB."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho

from pantau.devices import Device
from pantau.influx.query import InfluxQL, quote_ident
from pantau.local import LocalStack
from pantau.mqtt_failover import FailoverClient
from pantau.settings import Settings
from pantau.topics import Topics
from pantau.wire import Sample, encode_native
from testkit.mqtt import Publisher

MEASUREMENT = "rssi"  # every device kind reports it; the load sends nothing else

Key = tuple[str, int]  # device, device time in ms: a point's identity in one measurement


class ServiceProcess:
    """`python -m pantau.cli <command>` on one topic root and database: a process of its
    own, so it can be SIGKILLed, paused (SIGSTOP) and its memory measured."""

    def __init__(
        self, command: str, stack: LocalStack, settings: Settings, log: Path, env: dict[str, str]
    ) -> None:
        self.command = command
        self.env = {
            **os.environ,
            **stack.environment(),
            "PANTAU_MQTT__ROOT": settings.mqtt.root,
            "PANTAU_INFLUX__DATABASE": settings.influx.database,
            **env,
        }
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.kills = 0

    def launch(self) -> None:
        with self.log.open("ab") as sink:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "pantau.cli", self.command],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        self.starts += 1

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.kills += 1

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGCONT)  # in case it was paused
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:]) or "(no log)"


class IngestProcess(ServiceProcess):
    """`pantau ingest` with its spool in `spool_dir`."""

    def __init__(
        self, stack: LocalStack, settings: Settings, spool_dir: Path, log: Path, **env: str
    ) -> None:
        ingest_env = {
            "PANTAU_INGEST__CLIENT_ID": f"ingest-{settings.mqtt.root}",
            "PANTAU_INGEST__SPOOL_DIR": str(spool_dir),
        }
        super().__init__("ingest", stack, settings, log, {**ingest_env, **env})

    def start(self) -> None:
        self.launch()

    def rss_bytes(self) -> int:
        """Resident memory now (VmRSS), 0 if not running."""
        if self.proc is None or not self.alive():
            return 0
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0


class RulesProcess(ServiceProcess):
    """`pantau rules` on the SQL store at `database_url`; pausing it (SIGSTOP, a
    stalled host) lets the broker queue for its session."""

    def __init__(
        self, stack: LocalStack, settings: Settings, database_url: str, log: Path, **env: str
    ) -> None:
        rules_env = {
            "PANTAU_DATABASE_URL": database_url,
            "PANTAU_RULES__CLIENT_ID": f"rules-{settings.mqtt.root}",
        }
        super().__init__("rules", stack, settings, log, {**rules_env, **env})

    def start(self, timeout: float = 60) -> None:
        """Start and wait until it is consuming (its start-up line is logged)."""
        mark = self.log_text().count("rules: ")
        self.launch()
        wait_until(
            lambda: self.log_text().count("rules: ") > mark or not self.alive(),
            timeout,
            "the rules service to start",
        )
        assert self.alive(), self.log_tail()


class PacedLoad:
    """One `rssi` reading per QoS 1 message from each of `devices` in turn, at `rate`
    messages per second, on a thread; device times one second apart per device, ending
    about now, so every reading is its own point and inside every bound."""

    def __init__(self, settings: Settings, devices: Sequence[Device], rate: float) -> None:
        self._publisher = Publisher(settings.mqtt)
        self._topics = Topics(settings.mqtt.root)
        self._devices = list(devices)
        self._rate = rate
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="paced-load", daemon=True)
        self.sent: Counter[str] = Counter()
        self.keys: set[Key] = set()
        self._start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)

    def start(self) -> PacedLoad:
        self._thread.start()
        return self

    @property
    def total(self) -> int:
        return sum(self.sent.values())

    def _run(self) -> None:
        began = time.monotonic()
        i = 0
        while not self._stop.is_set():
            due = began + i / self._rate
            if (wait := due - time.monotonic()) > 0:
                time.sleep(min(wait, 0.05))
                continue
            device = self._devices[i % len(self._devices)]
            when = self._start + timedelta(seconds=i // len(self._devices))
            payload = encode_native(device.id, i, when, [Sample(MEASUREMENT, -70.0)])
            self._publisher.publish(self._topics.sensor_up(device.id), payload)
            self.sent[device.id] += 1
            self.keys.add((device.id, int(when.timestamp() * 1000)))
            i += 1

    def stop(self) -> None:
        """Stop sending and wait until the broker has acknowledged every message."""
        self._stop.set()
        self._thread.join()
        self._publisher.close()


def stored_count(settings: Settings, measurement: str = MEASUREMENT) -> int:
    with InfluxQL.from_settings(settings.influx) as influx:
        rows = influx.rows(f"SELECT count(value) FROM {quote_ident(measurement)}")
    return sum(int(str(r["count"])) for r in rows)


def stored_keys(settings: Settings, measurement: str = MEASUREMENT) -> Counter[Key]:
    """Each stored point's identity, counted: a count above 1 would be a duplicate."""
    keys: Counter[Key] = Counter()
    with InfluxQL(settings.influx.url, settings.influx.database, timeout_s=60) as influx:
        result = influx.query(
            f"SELECT value FROM {quote_ident(measurement)} GROUP BY device", epoch="ms"
        )
        for series in result:
            for row in series.rows():
                keys[(str(row["device"]), int(str(row["time"])))] += 1
    return keys


def wait_until(condition: object, timeout: float, what: str, poll: float = 0.25) -> float:
    """Seconds until `condition()` held; AssertionError after `timeout`."""
    assert callable(condition)
    began = time.monotonic()
    while not condition():
        if time.monotonic() - began > timeout:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(poll)
    return time.monotonic() - began


def wait_ingesting(settings: Settings, device: Device, timeout: float = 30) -> None:
    """Readings sent before ingest's first subscription have no session to wait in, so
    probe with `battery` readings (never counted) until one is stored."""
    topics = Topics(settings.mqtt.root)
    publisher = Publisher(settings.mqtt)

    def probe_stored() -> bool:
        payload = encode_native(device.id, None, datetime.now(UTC), [Sample("battery", 50.0)])
        publisher.publish(topics.sensor_up(device.id), payload)
        time.sleep(0.3)
        return stored_count(settings, "battery") > 0

    try:
        wait_until(probe_stored, timeout, "ingest to subscribe and store a probe", poll=0.0)
    finally:
        publisher.close()


def directory_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.glob("*") if p.is_file())


class FirstArrivals:
    """Subscribes to a filter and notes when each device's first message arrives after
    `reset()`: how long each simulator gateway took to come back."""

    def __init__(self, settings: Settings, topic_filter: str) -> None:
        self._topics = Topics(settings.mqtt.root)
        self._lock = threading.Lock()
        self._since = time.monotonic()
        self.first: dict[str, float] = {}
        self._client = FailoverClient(settings.mqtt, f"arrivals-{settings.mqtt.root}", clean=True)
        self._client.on_message = self._on_message
        self._client.on_connect = lambda c, *_: c.subscribe(topic_filter, qos=0)
        self._client.connect_any()
        self._client.loop_start()

    def reset(self) -> None:
        with self._lock:
            self._since = time.monotonic()
            self.first.clear()

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        device = self._topics.device_of_sensor_topic(message.topic)
        if device is None:
            return
        with self._lock:
            self.first.setdefault(device, time.monotonic() - self._since)

    def snapshot(self) -> dict[str, float]:
        with self._lock:
            return dict(self.first)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
