"""`python -m bench.ingest [--quick]`: Pantau's ingest in readings/s, end to end, beside
what the broker and InfluxDB alone manage on the same machine in the same run.

One LocalStack (private mosquitto + influxd) serves every case:

- broker, 1 topic: `mosquitto_pub -l -q 1 -V 5` into `mosquitto_sub -C N` (msg/s)
- broker fan-in: the publishers of a Pantau case (one per device topic) into one
  `mosquitto_sub` on `{root}/sensors/+/up`: the broker's share of that case's path
- InfluxDB: POST /write of 10,000-line batches of Pantau's line protocol (points/s)
- Pantau native: `pantau ingest` as a subprocess, one reading per QoS 1 message
- Pantau SenML: the same with RFC 8428 packs of 50 readings per message

Each case counts what arrived (subscriber lines, InfluxQL count) against what was sent;
a short count is reported as LOST and the run exits 1. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench import influxd_vars
from bench.cpu import CpuWatch
from bench.ingest_process import FlameGraph, IngestProcess, baseline_tree
from bench.ingest_report import CaseResult, machine_info, report, results_document
from bench.mosquitto_clients import (
    PUBLISHER_MAX_LINES,
    PublishJob,
    mqtt_args,
    run_publishers,
    subscriber,
    write_lines,
)
from bench.nodered import NodeRed, nodered_flow
from bench.stored_count import POLL_S, STALL_S, count_points, poll_stored
from ingest.pipeline import Pipeline
from pantau.city import City, load_city
from pantau.devices import Device
from pantau.influx.lineprotocol import series_key, to_line
from pantau.influx.query import InfluxQL
from pantau.influx.writers import make_writer
from pantau.local import LocalStack
from pantau.local.ports import free_port
from pantau.readings import Reading
from pantau.settings import InfluxSettings, IngestSettings
from pantau.topics import Topics
from pantau.wire import SENML_CONTENT_TYPE, Sample, encode_native

RESULTS_DIR = Path(__file__).resolve().parent / "results"
SETTLE_S = 2.0  # between cases, so one case's tail (WAL flush, autosave) spares the next


@dataclass(frozen=True, slots=True, kw_only=True)
class Sizes:
    broker_messages: int
    influx_points: int
    native_messages: int
    packed_readings: int
    devices: int = 50
    pack_size: int = 50
    influx_batch: int = 10_000


DEFAULT_SIZES = Sizes(
    broker_messages=100_000,
    influx_points=500_000,
    native_messages=100_000,
    packed_readings=1_000_000,
)
QUICK_SIZES = Sizes(
    broker_messages=20_000,
    influx_points=50_000,
    native_messages=10_000,
    packed_readings=100_000,
)


@dataclass(frozen=True, slots=True)
class PayloadForm:
    """How a Pantau case's messages are encoded and announced."""

    name: str
    content_type: str | None
    readings_per_message: int

    @property
    def publish_args(self) -> tuple[str, ...]:
        """MQTT v5 content type on every message, as a device following the contract sends."""
        if self.content_type is None:
            return ()
        return ("-D", "publish", "content-type", self.content_type)


# --- payloads ---------------------------------------------------------------------------


def water_level_cm(i: int) -> float:
    """A plausible, varying level well inside the catalogue's [0, 1500] cm."""
    return 40.0 + (i % 480) * 0.25


def native_payloads(device: Device, count: int, start: datetime) -> Iterator[bytes]:
    """One water_level reading per message, one second apart, so each is its own point."""
    for i in range(count):
        when = start + timedelta(seconds=i)
        yield encode_native(device.id, i, when, [Sample("water_level", water_level_cm(i), "cm")])


def senml_pack(device: Device, first: int, size: int, start: datetime) -> bytes:
    """RFC 8428 pack of `size` water levels one second apart: base name, time and unit in
    the first record, then only a name, value and time offset per record. (encode_senml
    gives every record the one base time, which would collapse a pack into one point.)"""
    records: list[dict[str, object]] = [
        {"bn": f"{device.id}/", "bt": int(start.timestamp()) + first, "bu": "cm"}
    ]
    for j in range(size):
        records.append({"n": "water_level", "v": water_level_cm(first + j), "t": j})
    return json.dumps(records, separators=(",", ":")).encode()


def senml_payloads(device: Device, readings: int, size: int, start: datetime) -> Iterator[bytes]:
    for first in range(0, readings, size):
        yield senml_pack(device, first, min(size, readings - first), start)


def history_start(span_s: int) -> datetime:
    """Device times ending 10 minutes ago: inside ingest's 7-day age limit, never future."""
    now = datetime.now(UTC).replace(microsecond=0)
    return now - timedelta(seconds=span_s) - timedelta(minutes=10)


def check_accepted(city: City, topics: Topics, job: PublishJob, form: PayloadForm) -> None:
    """Run the job's first payload through ingest's own pipeline: a payload ingest would
    reject shows up here with its reason, not as an unexplained LOST row."""
    with job.lines.open("rb") as f:
        payload = f.readline().rstrip(b"\n")
    outcome = Pipeline(city, topics, IngestSettings()).handle(
        job.topic, payload, form.content_type, datetime.now(UTC)
    )
    if outcome.rejections or len(outcome.lines) != form.readings_per_message:
        reasons = [f"{r.reason}: {r.detail}" for r in outcome.rejections]
        raise RuntimeError(f"ingest would not take {job.lines.name} as sent: {reasons}")


# --- InfluxDB -------------------------------------------------------------------------


def wait_stored(
    influx: InfluxQL, measurement: str, expected: int, started: float, alive: Callable[[], bool]
) -> tuple[int, float]:
    """`poll_stored` as (count, seconds): for callers that do not report its resolution."""
    stored = poll_stored(influx, measurement, expected, started, alive)
    return stored.count, stored.seconds


def influx_lines(city: City, points: int) -> list[str]:
    """Pantau's own line protocol: every metric of every device of the city in turn,
    one second apart per series, values inside each metric's valid range."""
    series: list[tuple[Device, str, str, str, float, float]] = []
    for device in sorted(city.devices.values(), key=lambda d: d.id):
        tags = series_key(device)
        for metric in device.metrics:
            spec = city.catalogue.metric(metric)
            assert spec is not None  # load_city checked every kind's metrics
            series.append((device, metric, spec.unit, tags, spec.valid_min, spec.valid_max))
    start = history_start(points // len(series) + 1)
    lines = []
    for i in range(points):
        device, metric, unit, tags, low, high = series[i % len(series)]
        step = i // len(series)
        reading = Reading(
            device_id=device.id,
            metric=metric,
            value=low + (high - low) * (i % 97) / 97,
            unit=unit,
            time=start + timedelta(seconds=step),
            seq=step,
        )
        lines.append(to_line(reading, tags))
    return lines


def publish_beside(
    stack: LocalStack, jobs: Sequence[PublishJob], extra: Sequence[str]
) -> Future[float]:
    """`run_publishers` in a thread, so the count is polled from the first publish on:
    a poll that saw everything stored is then never the first one, whose interval (the
    error bound) would be the whole run."""
    pool = ThreadPoolExecutor(1, thread_name_prefix="publishers")
    future = pool.submit(run_publishers, stack, jobs, extra)
    pool.shutdown(wait=False)
    return future


def fresh_root(jobs: Sequence[PublishJob], root: str) -> list[PublishJob]:
    """The same payload files published under another topic root."""
    old_root = jobs[0].topic.split("/", 1)[0]
    return [replace(j, topic=root + j.topic.removeprefix(old_root)) for j in jobs]


# --- cases ------------------------------------------------------------------------------

NATIVE = PayloadForm("native JSON", None, 1)


class Bench:
    def __init__(
        self,
        stack: LocalStack,
        city: City,
        sizes: Sizes,
        work: Path,
        *,
        nodered: bool = True,
        baseline: tuple[str, Path] | None = None,
        flame: bool = False,
    ) -> None:
        self.stack = stack
        self.city = city
        self.sizes = sizes
        self.work = work
        self.with_nodered = nodered
        self.baseline = baseline  # (git ref, its source tree): its ingest runs beside ours
        self.flame = flame
        self.senml = PayloadForm("SenML", SENML_CONTENT_TYPE, sizes.pack_size)
        candidates = sorted(
            (d for d in city.devices.values() if {"water_level", "battery"} <= set(d.metrics)),
            key=lambda d: d.id,
        )
        if len(candidates) < sizes.devices:
            raise RuntimeError(f"only {len(candidates)} water-level devices in config/")
        stride = len(candidates) // sizes.devices  # spread over the city's zones
        self.devices = candidates[::stride][: sizes.devices]

    def service_pids(self) -> dict[str, int]:
        pids = {"bench": os.getpid()}
        for name, service in (("mosquitto", self.stack.mosquitto), ("influxd", self.stack.influxd)):
            if service.pid is not None:
                pids[name] = service.pid
        return pids

    def jobs(self, form: PayloadForm, root: str, readings: int) -> list[PublishJob]:
        """One payload file per device, each reading one second after the last."""
        per_device = readings // len(self.devices)
        start = history_start(per_device)
        topics = Topics(root)
        folder = self.work / root
        folder.mkdir()
        jobs = []
        for device in self.devices:
            path = folder / f"{device.id}.lines"
            if form.content_type is None:
                payloads = native_payloads(device, per_device, start)
            else:
                payloads = senml_payloads(device, per_device, form.readings_per_message, start)
            count = write_lines(path, payloads)
            jobs.append(PublishJob(topics.sensor_up(device.id), path, count, per_device))
        return jobs

    # --- ceilings -----------------------------------------------------------------------
    def broker_one_topic(self) -> CaseResult:
        total = self.sizes.broker_messages
        publishers = math.ceil(total / PUBLISHER_MAX_LINES)
        topic = f"bench/{uuid.uuid4().hex[:8]}/raw"
        device = self.devices[0]
        jobs = []
        for p in range(publishers):
            count = total // publishers + (1 if p < total % publishers else 0)
            path = self.work / f"broker-{p}.lines"
            # Pantau-sized payloads (~130 bytes): the broker's work grows with size.
            count = write_lines(path, native_payloads(device, count, history_start(count)))
            jobs.append(PublishJob(topic, path, count, count))
        with self.subscriber_case(topic, total) as (received, watch):
            publish_s = run_publishers(self.stack, jobs)
            got = received()
        return CaseResult(
            key="broker",
            name=f"broker, 1 topic: mosquitto_pub x{publishers} -> mosquitto_sub",
            unit="msg/s",
            sent=total,
            stored=got,
            seconds=watch.wall_s,
            messages=total,
            publish_seconds=publish_s,
            cpu=watch.result(),
        )

    def broker_fan_in(self, form: PayloadForm, jobs: Sequence[PublishJob]) -> CaseResult:
        total = sum(j.count for j in jobs)
        root = jobs[0].topic.split("/", 1)[0]
        with self.subscriber_case(Topics(root).all_sensor_up, total) as (received, watch):
            publish_s = run_publishers(self.stack, jobs, form.publish_args)
            got = received()
        per = f", {form.readings_per_message}/msg" if form.readings_per_message > 1 else ""
        return CaseResult(
            key=f"broker_{form.name.split()[0].lower()}",
            name=f"broker fan-in, {form.name}{per}: {len(jobs)} pubs -> 1 sub on +/up",
            unit="msg/s",
            sent=total,
            stored=got,
            seconds=watch.wall_s,
            messages=total,
            publish_seconds=publish_s,
            cpu=watch.result(),
        )

    @contextmanager
    def subscriber_case(
        self, topic_filter: str, count: int
    ) -> Iterator[tuple[Callable[[], int], CpuWatch]]:
        out = self.work / f"sub-{uuid.uuid4().hex[:8]}.out"
        timeout_s = STALL_S + count / 5_000  # far beyond any rate seen, short of a hang
        # The watch spans publisher start to subscriber exit: the timed window.
        with (
            subscriber(self.stack, topic_filter, count, out, timeout_s) as received,
            CpuWatch(self.service_pids()) as watch,
        ):
            yield received, watch
        out.unlink(missing_ok=True)  # up to ~50 MB of payloads

    def points_written(self, database: str) -> Callable[[], int]:
        """Points influxd accepts into `database` from now on (bench.stored_count)."""
        url = self.stack.influx_url
        before = influxd_vars.points_in(url, database)
        return lambda: influxd_vars.points_in(url, database) - before

    def influx_ceiling(self) -> CaseResult:
        database = f"bench_influx_{uuid.uuid4().hex[:8]}"
        self.stack.create_database(database)
        lines = influx_lines(self.city, self.sizes.influx_points)
        batch = self.sizes.influx_batch
        # ingest's own writer: the same HTTP client and error handling, bigger batches.
        writer = make_writer(InfluxSettings(url=self.stack.influx_url, database=database))
        try:
            with CpuWatch(self.service_pids()) as watch:
                for i in range(0, len(lines), batch):
                    writer.write(lines[i : i + batch])
        finally:
            writer.close()
        with InfluxQL(self.stack.influx_url, database, timeout_s=60) as influx:
            stored = count_points(influx)
        self.stack.drop_database(database)
        return CaseResult(
            key="influx",
            name=f"InfluxDB: POST /write, {batch:,}-line batches, sequential",
            unit="points/s",
            sent=len(lines),
            stored=stored,
            seconds=watch.wall_s,
            messages=math.ceil(len(lines) / batch),
            cpu=watch.result(),
        )

    # --- Pantau ---------------------------------------------------------------------
    def pantau(
        self, form: PayloadForm, jobs: Sequence[PublishJob], *, baseline: bool = False
    ) -> CaseResult:
        key = form.name.split()[0].lower()
        source = None
        if baseline:
            assert self.baseline is not None
            # A topic root of its own: the earlier ingest's persistent session on the old
            # root would otherwise queue every message a second time (see nodered()).
            jobs = fresh_root(jobs, f"bb{uuid.uuid4().hex[:8]}")
            source = self.baseline[1]
        root = jobs[0].topic.split("/", 1)[0]
        topics = Topics(root)
        check_accepted(self.city, topics, jobs[0], form)
        database = f"bench_{key}_{uuid.uuid4().hex[:8]}"
        self.stack.create_database(database)
        log_name = f"ingest-{key}{'-baseline' if baseline else ''}.log"
        ingest = IngestProcess(self.stack, root, database, self.work / log_name, source)
        sent = sum(j.readings for j in jobs)
        ingest.start()
        try:
            with InfluxQL(self.stack.influx_url, database, timeout_s=60) as influx:
                self.wait_until_ingesting(ingest, topics, influx)
                pids = {**self.service_pids(), "ingest": ingest.pid}
                flame = None if baseline or not self.flame else FlameGraph(ingest.pid, key)
                written = self.points_written(database)
                with CpuWatch(pids) as watch, flame or nullcontext():
                    started = time.monotonic()
                    publishing = publish_beside(self.stack, jobs, form.publish_args)
                    done = poll_stored(influx, "water_level", sent, started, ingest.alive, written)
                    publish_s = publishing.result()
                rss_mb = ingest.peak_rss_mb()
                time.sleep(0.5)  # anything beyond what was sent would show up now
                stored = count_points(influx, "water_level")
        finally:
            ingest.stop()
        if stored != sent:
            print(f"{form.name}: ingest log tail\n{ingest.log_tail()}", file=sys.stderr)
        self.stack.drop_database(database)
        per = "1 reading" if form.readings_per_message == 1 else f"{form.readings_per_message}"
        which = f" (baseline {self.baseline[0]})" if baseline and self.baseline else ""
        return CaseResult(
            key=f"{key}_baseline" if baseline else key,
            name=f"Pantau ingest{which}, {form.name}, {per}/msg, QoS 1",
            rss_mb=rss_mb,
            unit="readings/s",
            sent=sent,
            stored=stored,
            seconds=done.seconds,
            resolution_s=done.resolution_s,
            messages=sum(j.count for j in jobs),
            publish_seconds=publish_s,
            cpu=watch.result(),
        )

    def nodered(self, jobs: Sequence[PublishJob]) -> CaseResult:
        """The peer on the same broker, InfluxDB and payload files as Pantau native.

        On a topic root of its own: the broker still queues the earlier case's topics
        for ingest's offline persistent session, which would slow this case down."""
        root = f"nr{uuid.uuid4().hex[:8]}"
        jobs = fresh_root(jobs, root)
        database = f"bench_nodered_{uuid.uuid4().hex[:8]}"
        self.stack.create_database(database)
        port = int(self.stack.influx_url.rsplit(":", 1)[1])
        flows = nodered_flow(
            root=root, mqtt_port=self.stack.mqtt_port, influx_port=port, database=database
        )
        peer = NodeRed(self.work / f"nodered-{root}", free_port(), flows)
        sent = sum(j.readings for j in jobs)
        peer.start()
        try:
            with InfluxQL(self.stack.influx_url, database, timeout_s=60) as influx:
                self.wait_until_ingesting(peer, Topics(root), influx)
                written = self.points_written(database)
                with CpuWatch({**self.service_pids(), "node-red": peer.pid}) as watch:
                    started = time.monotonic()
                    publishing = publish_beside(self.stack, jobs, NATIVE.publish_args)
                    done = poll_stored(influx, "water_level", sent, started, peer.alive, written)
                    publish_s = publishing.result()
                time.sleep(0.5)
                stored = count_points(influx, "water_level")
        finally:
            peer.stop()
        if stored != sent:
            print(f"Node-RED: log tail\n{peer.log_tail()}", file=sys.stderr)
        self.stack.drop_database(database)
        return CaseResult(
            key="nodered",
            name="Node-RED flow (mqtt in -> function -> influxdb out), native JSON, QoS 1",
            unit="readings/s",
            sent=sent,
            stored=stored,
            seconds=done.seconds,
            resolution_s=done.resolution_s,
            messages=sum(j.count for j in jobs),
            publish_seconds=publish_s,
            cpu=watch.result(),
        )

    def wait_until_ingesting(
        self, ingest: IngestProcess | NodeRed, topics: Topics, influx: InfluxQL
    ) -> None:
        """Readings published before the consumer's first SUBSCRIBE have no session to
        wait in, so probe with a battery reading (not counted) until one is stored."""
        probe = self.devices[0]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if not ingest.alive():
                raise RuntimeError(f"the consumer exited:\n{ingest.log_tail()}")
            payload = encode_native(probe.id, None, datetime.now(UTC), [Sample("battery", 50.0)])
            subprocess.run(
                ["mosquitto_pub", *mqtt_args(self.stack, topics.sensor_up(probe.id)), "-s"],
                input=payload,
                check=True,
            )
            time.sleep(0.3)
            if count_points(influx, "battery") > 0:
                return
        raise RuntimeError(f"ingest did not store a probe within 60 s:\n{ingest.log_tail()}")

    def run(self, progress: Callable[[str], None]) -> list[CaseResult]:
        sizes = self.sizes
        progress("writing payload files")
        native = self.jobs(NATIVE, f"bn{uuid.uuid4().hex[:8]}", sizes.native_messages)
        senml = self.jobs(self.senml, f"bs{uuid.uuid4().hex[:8]}", sizes.packed_readings)
        steps: list[tuple[str, Callable[[], CaseResult]]] = [
            ("broker, one topic", self.broker_one_topic),
            ("broker fan-in, native", lambda: self.broker_fan_in(NATIVE, native)),
            ("broker fan-in, SenML", lambda: self.broker_fan_in(self.senml, senml)),
            ("InfluxDB /write", self.influx_ceiling),
        ]
        if self.baseline is not None:
            steps.append(
                (
                    "Pantau ingest, native, baseline",
                    lambda: self.pantau(NATIVE, native, baseline=True),
                )
            )
        steps.append(("Pantau ingest, native", lambda: self.pantau(NATIVE, native)))
        if self.with_nodered:
            steps.append(("Node-RED flow, native", lambda: self.nodered(native)))
        if self.baseline is not None:
            steps.append(
                (
                    "Pantau ingest, SenML, baseline",
                    lambda: self.pantau(self.senml, senml, baseline=True),
                )
            )
        steps.append(("Pantau ingest, SenML", lambda: self.pantau(self.senml, senml)))
        results = []
        for label, step in steps:
            progress(label)
            result = step()
            progress(
                f"  {result.stored:,}/{result.sent:,} in {result.seconds:.2f} s"
                f" = {result.rate:,.0f} {result.unit}"
            )
            results.append(result)
            time.sleep(SETTLE_S)
        return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke check")
    parser.add_argument("--no-save", action="store_true", help="do not write bench/results/")
    parser.add_argument("--no-nodered", action="store_true", help="leave the Node-RED case out")
    parser.add_argument(
        "--baseline",
        metavar="REF",
        help="also run the Pantau cases with the ingest of git commit REF (e.g. main), each "
        "right before this tree's, against the same ceilings",
    )
    parser.add_argument(
        "--flame",
        action="store_true",
        help="py-spy flame graphs of this tree's ingest under each Pantau case "
        "(bench/results/ingest-flame-<date>-<case>.svg; py-spy slows what it samples)",
    )
    args = parser.parse_args(argv)
    sizes = QUICK_SIZES if args.quick else DEFAULT_SIZES
    started = time.monotonic()

    def progress(text: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {text}", file=sys.stderr, flush=True)

    machine = machine_info()
    city = load_city()
    with (
        tempfile.TemporaryDirectory(prefix="pantau-bench-") as tmp,
        LocalStack(Path(tmp) / "stack") as stack,
    ):
        progress(f"stack up: mqtt {stack.mqtt_port}, influx {stack.influx_url}")
        baseline = None
        if args.baseline:
            baseline = (args.baseline, baseline_tree(args.baseline, Path(tmp) / "baseline"))
        bench = Bench(
            stack,
            city,
            sizes,
            Path(tmp),
            nodered=not args.no_nodered,
            baseline=baseline,
            flame=args.flame,
        )
        results = bench.run(progress)
    print(report(results, sizes.pack_size, POLL_S))
    if not args.no_save:
        RESULTS_DIR.mkdir(exist_ok=True)
        day = datetime.now(UTC).date().isoformat()
        tag = ("-quick" if args.quick else "") + ("-baseline" if args.baseline else "")
        path = RESULTS_DIR / f"ingest-{day}{tag}.json"
        document = results_document(
            results,
            sizes=asdict(sizes),
            quick=args.quick,
            poll_s=POLL_S,
            machine=machine,
            command=" ".join(["uv run python -m bench.ingest", *(argv or sys.argv[1:])]),
        )
        path.write_text(json.dumps(document, indent=2) + "\n")
        print(f"\nresults: {path}")
    progress("done")
    return 1 if any(r.lost for r in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
