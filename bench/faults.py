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
import multiprocessing
import multiprocessing.queues
import shutil
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

from bench.fault_load import (
    FleetLoad,
    LatencyProbe,
    MemoryWatch,
    count_dead_letters,
    send_malformed,
    stored_series,
    stored_total,
)
from pantau.city import load_city
from pantau.devices import default_config_dir
from pantau.influx.query import InfluxQL
from pantau.local import LocalStack
from pantau.settings import InfluxSettings, MqttSettings, Settings
from pantau.topics import Topics
from pantau.wire import Sample, encode_native
from testkit.mqtt import Publisher
from testkit.services import IngestProcess, directory_bytes, wait_until

RESULTS_DIR = Path(__file__).resolve().parent / "results"
COPIES = 4  # each device of config/ placed this many times: 325 -> 1,300


def bench_config(work: Path) -> Path:
    """config/ with every device cloned COPIES - 1 times at the same place."""
    target = work / "config"
    shutil.copytree(default_config_dir(), target)
    doc = yaml.safe_load((target / "devices.yaml").read_text())
    clones = [{**d, "id": f"{d['id']}-x{n}"} for n in range(1, COPIES) for d in doc["devices"]]
    doc["devices"] = doc["devices"] + clones
    (target / "devices.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return target


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
