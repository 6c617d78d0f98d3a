"""Reading -> crew alert latency of the rules service under a steady offered load.

One run per offered rate, each with a fresh topic root, SQLite store and empty InfluxDB
database (the service reads InfluxDB only for its start-up rebuild):

- `python -m pantau.cli rules` as a subprocess (its own GIL, as deployed), default
  settings (batch_max_delay_s 0.2, tick every 5 s) and the default config/rules.yaml;
- background load: one `mosquitto_pub -l -q 1 -V 5` per background device, fed through
  its stdin by pacing threads in this process that stamp each reading with the wall
  clock at the moment they write it (device clocks = real time, so the fleet's
  event-time front advances in real time);
- injections: water-level stations that send nothing else, one per kelurahan, publish
  `danger_cm + 20` every 10 s of device time for `raise_for` (2 min) of
  `flood-water-level`; the last of them (device time = first + 2 min) is the reading
  that makes the condition ACTIVE. Its publish time and its crew alert's arrival on
  `{root}/alerts/crews/#` give the latency.

flood-water-level is a threshold rule, which the engine judges as each reading arrives
in its series (rules.engine), so publish -> alert is the whole path: broker, decode,
engine, store commit, outbox publish, broker.

    uv run python -m bench.rules_latency --rates 1000,10000 [--injections 40] [--no-save]
    uv run python -m bench.rules_latency --rates 1000,2000,5000 --until-fail
    uv run --with py-spy python -m bench.rules_latency --rates 2000 --profile bench/results

`--until-fail` doubles the rate after the last one given until a run is not sustained
(an alert missing, p99 publish -> alert >= 250 ms, or the load generator short of the
offered rate); the table then names the highest sustained rate. Each run reports the
rules process's readings per CPU second (readings it took / its CPU seconds in the run)
and the machine's load average. `--profile DIR` attaches py-spy to the service while the load
runs (`uv run --with py-spy`; it costs the machine a little CPU) and writes
`rules-flame-<date>-<rate>per-s.svg` there.
`--service-tree DIR` runs the service from another source tree (`git archive` of the
commit to compare with), so before and after can alternate in the same minutes.

is `python -m bench.rules --only alert_latency` (same options; results in
bench/results/rules-alert_latency-<date>.json).
"""

from __future__ import annotations

import heapq
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bench.cpu import CpuWatch
from bench.mosquitto_clients import mqtt_args
from pantau.city import City
from pantau.devices import Device
from pantau.local import LocalStack
from pantau.topics import Topics
from pantau.wire import Sample, encode_native

HOLD_STEP_S = 10.0  # device-time spacing of an injected station's breaching readings
PACE_S = 0.005  # pacing threads wake this often
PACERS = 4  # pacing threads (each owns a quarter of the background devices)
TAIL_S = 20.0  # after the last expected alert time, wait this long for stragglers
TARGET_P99_MS = 250.0  # publish -> alert: a rate is sustained below this, every alert in
MAX_RATE = 64_000  # the --until-fail sweep stops here whatever happens
IDLE_S = 5.0  # the service's CPU with no input is measured this long before the load


@dataclass(frozen=True, slots=True)
class LatencyArgs:
    rates: tuple[int, ...]  # offered background readings/s, one run each
    injections: int  # stations (one per kelurahan) made to breach, per run
    spacing_s: float  # between injected stations' first readings
    warmup_s: float  # background load before the first injection
    until_fail: bool = False  # after `rates`, double the rate until a run fails
    profile: Path | None = None  # py-spy flame graphs of the service go here
    service_tree: Path | None = None  # run the service from this source tree (a before/after)
    step_s: float = 0.0  # > 0: one service run, the rates as steps this long (bench.rules_stairs)


@dataclass(slots=True)
class Injection:
    device: Device
    start: float  # wall (= device) time of the first breaching reading
    last_publish: float | None = None  # wall time the ACTIVE-making reading was handed over
    alert_at: float | None = None  # arrival of its "opened" crew alert

    @property
    def last_time(self) -> float:
        """Device time of the reading that completes the hold."""
        return self.start + 12 * HOLD_STEP_S


@dataclass(slots=True)
class RunResult:
    rate: int
    lateness_s: float
    background_devices: int
    load_s: float
    written: int
    service_messages: int | None
    injections: list[Injection]
    cpu: dict[str, float] = field(default_factory=dict)  # cores used over the run
    cpu_s: dict[str, float] = field(default_factory=dict)  # CPU seconds over the run
    loadavg: tuple[float, float, float] = (0.0, 0.0, 0.0)  # the machine's, at the run's end
    idle_cores: float = float("nan")  # the service with no input, before the load
    service_log: str = ""

    @property
    def readings_per_cpu_s(self) -> float:
        """Readings the service took (background + injected) per CPU second of its process
        (all threads: decode, engine, incident store, publish, MQTT); NaN when it fell
        behind (what it had not read yet would count as free)."""
        used = self.cpu_s.get("rules", 0.0)
        if used <= 0 or len(self.publish_to_alert_ms()) < len(self.injections):
            return float("nan")  # an alert missing: the service fell behind, the rest is unread
        return (self.written + 13 * len(self.injections)) / used

    @property
    def sustained(self) -> bool:
        """Every alert came, p99 publish -> alert under the target, and the load generator
        delivered what was offered (within 5 %: otherwise the bench, not the service, failed)."""
        e2e = self.publish_to_alert_ms()
        return (
            len(e2e) == len(self.injections)
            and percentile(e2e, 99) < TARGET_P99_MS
            and self.achieved >= 0.95 * self.rate
        )

    @property
    def achieved(self) -> float:
        return self.written / self.load_s

    def publish_to_alert_ms(self) -> list[float]:
        return [
            (i.alert_at - i.last_publish) * 1000
            for i in self.injections
            if i.alert_at is not None and i.last_publish is not None
        ]

    def after_device_time_ms(self) -> list[float]:
        return [
            (i.alert_at - i.last_time) * 1000 for i in self.injections if i.alert_at is not None
        ]


def pick_stations(city: City, n: int) -> list[Device]:
    """One water-level station with Siaga levels per kelurahan, spread over the city."""
    seen: set[str] = set()
    out: list[Device] = []
    for d in sorted(city.devices.values(), key=lambda d: d.id):
        wl = d.kind == "water_level_station" and d.levels is not None
        if wl and d.kelurahan_id not in seen:
            seen.add(d.kelurahan_id)
            out.append(d)
    stride = max(1, len(out) // n)
    return out[::stride][:n]


def background_devices(city: City, injected: Sequence[Device]) -> list[tuple[Device, Sample]]:
    """Every other device with a quiet reading: stations a level well under Siaga II,
    the rest a full battery. Neither breaches nor changes fast enough for any rule."""
    skip = {d.id for d in injected}
    out = []
    for d in sorted(city.devices.values(), key=lambda d: d.id):
        if d.id in skip:
            continue
        if d.kind == "water_level_station" and d.levels is not None:
            out.append((d, Sample("water_level", max(d.levels.alert_cm - 60, 5.0), "cm")))
        elif "battery" in d.metrics:
            out.append((d, Sample("battery", 90.0, "%")))
    return out


class AlertListener:
    """Subscribes to `{root}/alerts/crews/#`; keeps (arrival wall time, body)."""

    def __init__(self, stack: LocalStack, root: str) -> None:
        self.received: list[tuple[float, dict[str, Any]]] = []
        self._subscribed = threading.Event()
        self._filter = f"{root}/alerts/crews/#"
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"bench-alerts-{root}",
            protocol=mqtt.MQTTv5,
        )
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._client.connect(stack.mqtt_host, stack.mqtt_port)
        self._client.loop_start()

    def _on_connect(self, client: mqtt.Client, *args: Any) -> None:
        client.subscribe(self._filter, qos=1)

    def _on_subscribe(self, *args: Any) -> None:
        self._subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self.received.append((time.time(), json.loads(msg.payload)))

    def wait_subscribed(self, timeout: float) -> bool:
        return self._subscribed.wait(timeout)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


class Background:
    """Paced background load: PACERS threads, each writing its devices' readings
    round-robin into their `mosquitto_pub -l` stdin at rate / PACERS."""

    def __init__(self, stack: LocalStack, topics: Topics, devices: list[tuple[Device, Sample]]):
        self._devices = devices
        self._procs = [
            subprocess.Popen(
                ["mosquitto_pub", *mqtt_args(stack, topics.sensor_up(d.id)), "-l"],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for d, _ in devices
        ]
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.written = [0] * PACERS
        self.started = 0.0
        self.stopped = 0.0

    def start(self, rate: int) -> None:
        self.start_curve(lambda elapsed: rate * elapsed)

    def start_curve(self, offered: Callable[[float], float]) -> None:
        """`offered(s)`: the readings due in the load's first s seconds, all pacers together
        (a steady rate, or bench.rules_stairs' steps)."""
        self.started = time.time()
        for p in range(PACERS):
            t = threading.Thread(target=self._pace, args=(p, offered), daemon=True)
            self._threads.append(t)
            t.start()

    def _pace(self, p: int, offered: Callable[[float], float]) -> None:
        mine = list(range(p, len(self._devices), PACERS))
        seqs = dict.fromkeys(mine, 0)
        sent = 0
        t0 = time.time()
        while not self._stop.wait(PACE_S):
            due = int(offered(time.time() - t0) / PACERS) - sent
            for _ in range(due):
                k = mine[sent % len(mine)]
                device, sample = self._devices[k]
                now = time.time()
                jitter = Sample(sample.metric, float(sample.value) + (sent % 7) * 0.3, sample.unit)
                payload = encode_native(
                    device.id, seqs[k], datetime.fromtimestamp(now, UTC), [jitter]
                )
                seqs[k] += 1
                stdin = self._procs[k].stdin
                assert stdin is not None
                stdin.write(payload + b"\n")
                stdin.flush()
                sent += 1
            self.written[p] = sent

    def stop(self) -> int:
        self._stop.set()
        for t in self._threads:
            t.join()
        self.stopped = time.time()
        for proc in self._procs:
            assert proc.stdin is not None
            proc.stdin.close()
        give_up = time.monotonic() + 30  # for all of them: a backed-up broker is no reason
        for proc in self._procs:  # to wait 30 s per publisher
            try:
                proc.wait(timeout=max(0.1, give_up - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return sum(self.written)


def inject(
    stack: LocalStack,
    topics: Topics,
    injections: list[Injection],
    stop: threading.Event,
    backdate_s: float | None = None,
) -> None:
    """Publish each station's breaching readings at their device times (QoS 1, one paho
    client), recording when the ACTIVE-making one is handed to the client. `backdate_s`:
    the first 12 go together that long before the 13th instead (device times unchanged:
    the hold is in the past), so a run need not wait out raise_for."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"bench-inject-{uuid.uuid4().hex[:8]}",
        protocol=mqtt.MQTTv5,
    )
    client.connect(stack.mqtt_host, stack.mqtt_port)
    client.loop_start()
    queue: list[tuple[float, int, int]] = []  # (wall time to send, injection, step)
    for n, inj in enumerate(injections):
        for k in range(13):
            send = inj.start + k * HOLD_STEP_S
            if backdate_s is not None and k < 12:
                send = inj.last_time - backdate_s
            heapq.heappush(queue, (send, n, k))
    try:
        while queue and not stop.is_set():
            send, n, k = queue[0]
            if time.time() < send:
                time.sleep(max(0.0, min(0.001, send - time.time())))
                continue
            heapq.heappop(queue)
            inj = injections[n]
            at = inj.start + k * HOLD_STEP_S  # device time
            assert inj.device.levels is not None
            level = inj.device.levels.danger_cm + 20
            payload = encode_native(
                inj.device.id,
                k,
                datetime.fromtimestamp(at, UTC),
                [Sample("water_level", level, "cm")],
            )
            if k == 12:
                inj.last_publish = time.time()
            client.publish(topics.sensor_up(inj.device.id), payload, qos=1)
    finally:
        time.sleep(0.5)
        client.disconnect()
        client.loop_stop()


@dataclass
class Rig:
    """One run's rules service on its own topic root and database, the crew-alert
    listener and the background devices' publisher; `pids` are what CpuWatch reads."""

    topics: Topics
    database: str
    devices: list[tuple[Device, Sample]]
    service: subprocess.Popen[bytes]
    log: Path
    listener: AlertListener
    background: Background
    pids: dict[str, int]

    @classmethod
    def start(
        cls,
        stack: LocalStack,
        city: City,
        stations: Sequence[Device],
        work: Path,
        tree: Path | None,
        prefix: str,
    ) -> Rig:
        root = f"{prefix}{uuid.uuid4().hex[:8]}"
        topics = Topics(root)
        database = f"bench_rules_{root}"
        stack.create_database(database)
        devices = background_devices(city, stations)
        service, log = start_service(stack, root, database, work, tree)
        listener = AlertListener(stack, root)
        if not listener.wait_subscribed(10):
            raise RuntimeError("alert listener not subscribed")
        pids = {"rules": service.pid, "bench": os.getpid()}
        if stack.mosquitto.pid is not None:
            pids["mosquitto"] = stack.mosquitto.pid
        background = Background(stack, topics, devices)
        return cls(topics, database, devices, service, log, listener, background, pids)


def start_service(
    stack: LocalStack, root: str, database: str, work: Path, tree: Path | None = None
) -> tuple[subprocess.Popen[bytes], Path]:
    """The service as a subprocess. `tree`: another checkout's source (e.g. `git
    archive main`), run with this environment."""
    log = work / f"rules-{root}.log"
    env = {
        **os.environ,
        **stack.environment(),
        "PANTAU_MQTT__ROOT": root,
        "PANTAU_INFLUX__DATABASE": database,
        "PANTAU_DATABASE_URL": f"sqlite:///{work / f'incidents-{root}.db'}",
        "PANTAU_RULES__CLIENT_ID": f"bench-{root}",
    }
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    with log.open("ab") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pantau.cli", "rules"],
            env=env,
            cwd=tree,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        if "rules: " in text and "connected" in text:
            time.sleep(1.0)  # SUBACK follows CONNACK; the warm-up covers the rest
            return proc, log
        if proc.poll() is not None:
            raise RuntimeError(f"rules service exited:\n{text[-2000:]}")
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"rules service not up in 60 s:\n{log.read_text()[-2000:]}")


class Profiler:
    """py-spy attached to a running process from now until `stop` (a steady state: no
    start-up in the graph); sampling does not pause it (--nonblocking)."""

    def __init__(self, pid: int, svg: Path) -> None:
        spy = shutil.which("py-spy")
        if spy is None:
            raise RuntimeError("--profile needs py-spy: uv run --with py-spy python -m ...")
        self.svg = svg
        self._proc = subprocess.Popen(
            [spy, "record", "--nonblocking", "-r", "100", "-p", str(pid), "-o", str(svg)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        self._proc.send_signal(signal.SIGINT)  # py-spy writes the graph, then exits
        try:
            self._proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


def stop_service(proc: subprocess.Popen[bytes], log: Path) -> int | None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    m = re.search(r"stopped: (\d+) messages", log.read_text(errors="replace"))
    return int(m.group(1)) if m else None


def run_rate(
    stack: LocalStack,
    city: City,
    args: LatencyArgs,
    rate: int,
    lateness_s: float,
    work: Path,
    progress: Any,
) -> RunResult:
    stations = pick_stations(city, args.injections)
    rig = Rig.start(stack, city, stations, work, args.service_tree, "bl")
    topics, devices, service, log = rig.topics, rig.devices, rig.service, rig.log
    listener, background, pids = rig.listener, rig.background, rig.pids
    stop = threading.Event()
    try:
        with CpuWatch({"rules": service.pid}) as quiet:
            time.sleep(IDLE_S)
        idle = quiet.result()["rules"].cores
        with CpuWatch(pids) as watch:
            background.start(rate)
            profiler = None
            if args.profile is not None:
                stamp = datetime.now(UTC).strftime("%Y-%m-%d")
                svg = args.profile / f"rules-flame-{stamp}-{rate}per-s.svg"
                profiler = Profiler(service.pid, svg)
            first = time.time() + args.warmup_s
            injections = [
                Injection(d, round(first + i * args.spacing_s, 3)) for i, d in enumerate(stations)
            ]
            injector = threading.Thread(
                target=inject, args=(stack, topics, injections, stop), daemon=True
            )
            injector.start()
            expect_by = injections[-1].last_time + 1.0
            progress(
                f"  {rate:,}/s: {len(devices)} background devices, {len(stations)} stations; "
                f"alerts expected ~{expect_by - time.time():.0f} s from now"
            )
            deadline = expect_by + TAIL_S
            while time.time() < deadline:
                time.sleep(0.5)
                match_alerts(injections, listener.received)
                if all(i.alert_at is not None for i in injections):
                    break
            if profiler is not None:
                profiler.stop()
            stop.set()
            written = background.stop()
            injector.join()
        load_s = background.stopped - background.started
    finally:
        stop.set()
        messages = stop_service(service, log)
        listener.close()
    match_alerts(injections, listener.received)
    stack.drop_database(rig.database)
    used = watch.result()
    cpu = {name: use.cores for name, use in used.items()}
    return RunResult(
        rate=rate,
        lateness_s=lateness_s,
        background_devices=len(devices),
        load_s=load_s,
        written=written,
        service_messages=messages,
        injections=injections,
        cpu=cpu,
        cpu_s={name: use.seconds for name, use in used.items()},
        loadavg=os.getloadavg(),
        idle_cores=idle,
        service_log=log.read_text(errors="replace")[-3000:],
    )


def match_alerts(injections: list[Injection], received: list[tuple[float, dict[str, Any]]]) -> None:
    """The first "opened" flood alert on the station's kelurahan naming the station."""
    by_zone = {i.device.kelurahan_id: i for i in injections}
    for at, body in list(received):
        inj = by_zone.get(str(body.get("zone_id")))
        if (
            inj is not None
            and inj.alert_at is None
            and body.get("alert") == "opened"
            and body.get("hazard") == "flood"
            and inj.device.id in body.get("devices", [])
        ):
            inj.alert_at = at


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def main(argv: Sequence[str] | None = None) -> int:
    from bench import rules  # noqa: PLC0415 - it imports this module

    return rules.main(["--only", "alert_latency", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    raise SystemExit(main())
