"""`python -m bench.faults [--quick]`: the reliability cases at full length, one table.

Load: a city of 1,300 devices (config/ with each device placed four times, ids suffixed
`-x1`..`-x3`), each QoS 1 MQTT v5 message carrying every metric of its device kind
(3-4 readings), paced at `--rate` readings/s (default 2,400). `pantau ingest` runs as
its own process with its spool in the work directory. Cases, in order:

| case              | fault                                                         |
|-------------------|---------------------------------------------------------------|
| influx_down_60s   | influxd stopped 60 s under load                               |
| influx_down_600s  | influxd stopped 10 minutes under load                         |
| ingest_sigkill    | ingest SIGKILLed every 30 s for 5 minutes under load          |
| mosquitto_sigterm | Mosquitto restarted (SIGTERM) under load                      |
| mosquitto_sigkill | Mosquitto SIGKILLed and started under load                    |
| malformed_10k     | 10,000 malformed payloads of every kind amid the load         |
| noisy_device      | one device at 500 msg/s above its budget amid the load        |

Columns: sent and stored count readings per (device, metric) series; lost and
duplicated are the shortfall and the excess over all series (InfluxDB cannot hold two
points of one identity, so a duplicate delivery could only show as an excess);
recovery is from the end of the fault until InfluxDB holds everything sent up to then;
memory growth is ingest's peak resident memory over its resident memory before the
fault. The table goes to stdout and to bench/results/faults-<UTC date>[-quick].md.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import multiprocessing.queues
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from pantau.city import City, load_city
from pantau.devices import default_config_dir
from pantau.influx.query import InfluxQL, InfluxQLError
from pantau.local import LocalStack
from pantau.settings import InfluxSettings, MqttSettings, Settings
from pantau.topics import Topics
from pantau.wire import Sample, encode_native
from testkit.mqtt import Collector, Publisher
from testkit.payloads import malformed
from testkit.services import IngestProcess, directory_bytes, wait_until

RESULTS_DIR = Path(__file__).resolve().parent / "results"
COPIES = 4  # each device of config/ placed this many times: 325 -> 1,300
Series = tuple[str, str]  # device, metric
MAX_PENDING = 20_000  # QoS 1 messages published and not yet acknowledged by the broker


def bench_config(work: Path) -> Path:
    """config/ with every device cloned COPIES - 1 times at the same place."""
    target = work / "config"
    shutil.copytree(default_config_dir(), target)
    doc = yaml.safe_load((target / "devices.yaml").read_text())
    clones = [{**d, "id": f"{d['id']}-x{n}"} for n in range(1, COPIES) for d in doc["devices"]]
    doc["devices"] = doc["devices"] + clones
    (target / "devices.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return target


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


@dataclass
class Row:
    case: str
    sent: int = 0
    stored: int = 0
    lost: int = 0
    duplicated: int = 0
    recovery_s: float = 0.0
    memory_mb: float = 0.0
    rate: float = 0.0  # readings/s the load achieved
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Lengths:
    warmup_s: float
    short_outage_s: float
    long_outage_s: float
    kill_every_s: float
    kill_for_s: float
    malformed: int
    noisy_s: float
    probe_s: float  # valid-traffic latency measured this long before the flood


FULL = Lengths(20, 60, 600, 30, 300, 10_000, 20, 30)
QUICK = Lengths(5, 10, 20, 8, 24, 600, 5, 10)


class Bench:
    def __init__(
        self, stack: LocalStack, work: Path, rate: float, lengths: Lengths, malformed_rate: float
    ) -> None:
        self.malformed_rate = malformed_rate  # 0: as fast as the broker takes them
        self.stack = stack
        self.work = work
        self.rate = rate
        self.lengths = lengths
        self.config = bench_config(work)
        self.city = load_city(self.config)
        self.noisy_device = min(
            d.id for d in self.city.devices.values() if d.id.endswith("-x1") and "rssi" in d.metrics
        )

    def settings(self) -> Settings:
        root = f"f{uuid.uuid4().hex[:8]}"
        self.stack.create_database(root)
        return Settings(
            config_dir=self.config,
            mqtt=MqttSettings(host=self.stack.mqtt_host, port=self.stack.mqtt_port, root=root),
            influx=InfluxSettings(url=self.stack.influx_url, database=root),
        )

    def run_case(self, name: str, fault: Callable[[IngestProcess, Row], float]) -> Row:
        """Start ingest and the load, warm up, apply `fault` (returns when the fault
        ended), stop the load, wait until everything is stored."""
        print(f"[{time.strftime('%H:%M:%S')}] {name} ...", flush=True)
        settings = self.settings()
        root = settings.mqtt.root
        ingest = IngestProcess(
            self.stack,
            settings,
            self.work / f"spool-{root}",
            self.work / f"ingest-{root}.log",
            PANTAU_CONFIG_DIR=str(self.config),
        )
        row = Row(name)
        ingest.start()
        try:
            self._wait_ingesting(settings)
            fleet = FleetLoad(settings, self.city, self.rate, self.noisy_device).start()
            load_began = time.monotonic()
            time.sleep(self.lengths.warmup_s)
            memory = MemoryWatch(ingest)
            fault(ingest, row)
            sent_by_then = fleet.total
            row.recovery_s = wait_until(
                lambda: stored_total(settings, self.noisy_device) >= sent_by_then,
                1800,
                "recovery",
                poll=1.0,
            )
            time.sleep(self.lengths.warmup_s)
            fleet.stop()
            row.rate = fleet.total / (time.monotonic() - load_began)
            self._settle(settings, fleet.total)
            row.memory_mb = memory.stop() / 2**20
            stored = stored_series(settings)
            row.sent = fleet.total
            row.stored = sum(stored[s] for s in fleet.sent)
            row.lost = sum(max(0, n - stored[s]) for s, n in fleet.sent.items())
            row.duplicated = sum(max(0, stored[s] - fleet.sent[s]) for s in fleet.sent)
            extra = set(stored) - set(fleet.sent) - {(self.noisy_device, "rssi")}
            if extra:
                row.notes.append(f"{len(extra)} series stored that were never sent: {extra}")
            if not ingest.alive():
                row.notes.append("ingest died: " + ingest.log_tail())
        finally:
            ingest.stop()
            self.stack.drop_database(root)
        print(f"    {row}", flush=True)
        return row

    def _wait_ingesting(self, settings: Settings) -> None:
        probe = next(d for d in sorted(self.city.devices) if "-x" not in d)
        pub = Publisher(settings.mqtt)
        topics = Topics(settings.mqtt.root)
        metric = self.city.devices[probe].metrics[0]
        spec = self.city.catalogue.metric(metric)
        assert spec is not None

        def stored() -> bool:
            when = datetime.now(UTC)
            sample = Sample(metric, spec.valid_min, spec.unit)
            pub.publish(topics.sensor_up(probe), encode_native(probe, None, when, [sample]))
            time.sleep(0.5)
            return stored_total(settings) > 0

        wait_until(stored, 60, "ingest to subscribe", poll=0.0)
        pub.close()
        with InfluxQL(settings.influx.url, settings.influx.database) as influx:
            influx.query(f"DROP SERIES FROM \"{metric}\" WHERE device = '{probe}'")

    def _settle(self, settings: Settings, expected: int) -> None:
        last = -1
        while (now := stored_total(settings, self.noisy_device)) != last and now < expected:
            last = now
            time.sleep(5)

    # --- faults ---------------------------------------------------------------------
    def influx_down(self, seconds: float) -> Callable[[IngestProcess, Row], float]:
        def fault(ingest: IngestProcess, row: Row) -> float:
            self.stack.influxd.stop()
            time.sleep(seconds)
            spool = self.work / ("spool-" + ingest.env["PANTAU_MQTT__ROOT"])
            row.notes.append(
                f"spool {directory_bytes(spool) / 2**20:.1f} MB at the end of the outage"
            )
            self.stack.influxd.start()
            return time.monotonic()

        return fault

    def ingest_kills(self, ingest: IngestProcess, row: Row) -> float:
        began = time.monotonic()
        while time.monotonic() - began < self.lengths.kill_for_s:
            time.sleep(self.lengths.kill_every_s)
            ingest.kill()
            ingest.start()
        row.notes.append(f"{ingest.kills} SIGKILLs")
        return time.monotonic()

    def mosquitto_restart(self, kill: bool) -> Callable[[IngestProcess, Row], float]:
        def fault(ingest: IngestProcess, row: Row) -> float:
            if kill:
                self.stack.mosquitto.kill()
                self.stack.mosquitto.start()
                row.notes.append(
                    f"autosave_interval {self.stack.mosquitto.options.autosave_interval_s} s"
                )
            else:
                self.stack.mosquitto.restart()
            return time.monotonic()

        return fault

    def malformed_flood(self, ingest: IngestProcess, row: Row) -> float:
        settings_root = ingest.env["PANTAU_MQTT__ROOT"]
        mqtt = MqttSettings(
            host=self.stack.mqtt_host, port=self.stack.mqtt_port, root=settings_root
        )
        devices = sorted(self.city.devices)
        # The flood and the dead-letter count run in processes of their own: in this one
        # they would compete for the GIL with the probe and the fleet load, during the
        # flood only, and the probe would measure that.
        context = multiprocessing.get_context("spawn")
        ready: multiprocessing.queues.Queue[bool] = context.Queue()
        expected: multiprocessing.queues.Queue[int] = context.Queue()
        letters_by_reason: multiprocessing.queues.Queue[dict[str, int]] = context.Queue()
        counter = context.Process(
            target=count_dead_letters, args=(mqtt, ready, expected, letters_by_reason)
        )
        counter.start()
        ready.get(timeout=120)
        probe_settings = Settings(
            config_dir=self.config,
            mqtt=mqtt,
            influx=InfluxSettings(url=self.stack.influx_url, database=settings_root),
        )
        probe = LatencyProbe(probe_settings, self.noisy_device)
        quiet_from = time.monotonic()
        time.sleep(self.lengths.probe_s)  # valid traffic's latency without the flood
        answers: multiprocessing.queues.Queue[dict[str, int]] = context.Queue()
        sender = context.Process(
            target=send_malformed,
            args=(mqtt, devices, self.lengths.malformed, self.malformed_rate, answers),
        )
        flood_from = time.monotonic()
        sender.start()
        reasons = Counter(answers.get(timeout=1800))
        ended = time.monotonic()
        sender.join()
        total = sum(reasons.values())
        time.sleep(2)
        probe.stop()
        quiet_p99, quiet_n = probe.p99_ms(quiet_from, flood_from)
        flood_p99, flood_n = probe.p99_ms(flood_from, ended)
        pace = f"{self.malformed_rate:g}/s" if self.malformed_rate else "unpaced"
        row.notes.append(
            f"flood {total / (ended - flood_from):,.0f} malformed/s ({pace}); "
            f"valid traffic p99 publish->stored: {quiet_p99:.0f} ms without the flood "
            f"({quiet_n} samples), {flood_p99:.0f} ms during it ({flood_n} samples, "
            f"{100 * (flood_p99 / quiet_p99 - 1):+.0f} %, target < +20 %), both with the "
            f"fleet load running"
        )
        expected.put(total)
        letters = Counter(letters_by_reason.get(timeout=600))
        counter.join()
        verdict = "all" if letters == reasons else f"MISMATCH {dict(letters)}"
        row.notes.append(f"{total} malformed sent {dict(reasons)}; dead-lettered: {verdict}")
        return ended
        return time.monotonic()

    def noisy(self, ingest: IngestProcess, row: Row) -> float:
        root = ingest.env["PANTAU_MQTT__ROOT"]
        mqtt = MqttSettings(host=self.stack.mqtt_host, port=self.stack.mqtt_port, root=root)
        topics = Topics(root)
        device = self.city.devices[self.noisy_device]
        pub = Publisher(mqtt)
        began = time.monotonic()
        now = datetime.now(UTC)
        sent = 0
        while time.monotonic() - began < self.lengths.noisy_s:
            when = now + timedelta(milliseconds=2 * sent)
            pub.publish(
                topics.sensor_up(device.id),
                encode_native(device.id, sent, when, [Sample("rssi", -50.0)]),
            )
            sent += 1
            time.sleep(max(0.0, began + sent / 500 - time.monotonic()))
        pub.close()
        with InfluxQL(self.stack.influx_url, root) as influx:
            time.sleep(3)
            rows = influx.rows(
                "SELECT count(value) FROM rssi WHERE device = $d", params={"d": device.id}
            )
        kept = sum(int(str(r["count"])) for r in rows)
        row.notes.append(
            f"noisy {device.id}: {sent} sent at 500/s, {kept} kept, {sent - kept} shed "
            "(rate_limited); the counts above are the other devices'"
        )
        return time.monotonic()


def table(rows: Sequence[Row], header: str) -> str:
    lines = [
        header,
        "",
        "| case | sent | stored | lost | duplicated | recovery s | memory growth MB "
        "| load readings/s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.case} | {r.sent:,} | {r.stored:,} | {r.lost:,} | {r.duplicated:,} "
            f"| {r.recovery_s:.1f} | {r.memory_mb:.1f} | {r.rate:,.0f} |"
        )
    lines.append("")
    lines.extend(f"- {r.case}: {'; '.join(r.notes)}" for r in rows if r.notes)
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.faults", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short faults (smoke check)")
    parser.add_argument("--rate", type=float, default=2400.0, help="readings/s")
    parser.add_argument("--only", nargs="*", help="run only these cases")
    parser.add_argument(
        "--malformed-rate",
        type=float,
        default=500.0,
        help="malformed payloads/s in the flood case (0: as fast as possible)",
    )
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args(argv)
    lengths = QUICK if args.quick else FULL
    with tempfile.TemporaryDirectory(prefix="pantau-faults-") as tmp, LocalStack() as stack:
        bench = Bench(stack, Path(tmp), args.rate, lengths, args.malformed_rate)
        cases: list[tuple[str, Callable[[IngestProcess, Row], float]]] = [
            (f"influx_down_{lengths.short_outage_s:g}s", bench.influx_down(lengths.short_outage_s)),
            (f"influx_down_{lengths.long_outage_s:g}s", bench.influx_down(lengths.long_outage_s)),
            ("ingest_sigkill", bench.ingest_kills),
            ("mosquitto_sigterm", bench.mosquitto_restart(kill=False)),
            ("mosquitto_sigkill", bench.mosquitto_restart(kill=True)),
            (f"malformed_{lengths.malformed}", bench.malformed_flood),
            ("noisy_device", bench.noisy),
        ]
        rows = [
            bench.run_case(name, fault)
            for name, fault in cases
            if not args.only or name.split("_")[0] in args.only or name in args.only
        ]
    header = (
        f"bench.faults{' --quick' if args.quick else ''}: {len(bench.city.devices):,} "
        f"devices, {args.rate:,.0f} readings/s offered, MQTT v5 QoS 1, "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    )
    out = table(rows, header)
    print(out)
    if not args.no_save:
        RESULTS_DIR.mkdir(exist_ok=True)
        name = f"faults-{datetime.now(UTC):%Y-%m-%d}{'-quick' if args.quick else ''}.md"
        (RESULTS_DIR / name).write_text(out)
    return 1 if any(r.lost or r.duplicated for r in rows if "sigkill" not in r.case) else 0


if __name__ == "__main__":
    sys.exit(main())
