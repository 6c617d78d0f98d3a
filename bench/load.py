"""Throughput against offered load: each consumer's knee, and a burst beside it.

`bench.ingest` sends everything at once and times the burst; a city's sensors instead
arrive at a rate. Here each consumer (Pantau ingest with one reading per message, the
Node-RED flow, Pantau with SenML packs of 50) gets a fresh topic root, database and
process per offered rate, and `bench.pacer` feeds the 50 device topics of
`bench.ingest.Bench` at that rate for a fixed time. The rate doubles until the consumer
loses a reading or is still storing more than 5 s after publishing ended (its knee,
`bench.knee`), or until the publishers are what limits the offer (the cap: the broker
fan-in ceiling measured first, or a point where they pushed under 90 % of it), which
the report then says instead of a knee. Sustained throughput = readings stored /
seconds from the first write until the last reading is in InfluxDB (polled every
0.25 s). A lossy point is a failure, never a figure. Beside the sweep, each consumer
takes a burst (`--burst` readings published at once, `bench.ingest`'s cases).

    uv run python -m bench.load [--quick] [--from 500] [--nodered-from 125]
                                [--senml-from 12500] [--seconds 12] [--burst 100000]
                                [--consumers native,nodered,senml] [--baseline main]

`--baseline REF` adds a curve (and a burst) of the ingest of git commit REF, Pantau
native, measured step by step beside this tree's: a before / after in the same minutes.

prints the tables; `python -m bench.suite` runs it beside the ceilings and plots it.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench.cpu import CpuWatch
from bench.ingest import (
    NATIVE,
    SETTLE_S,
    Bench,
    PayloadForm,
    history_start,
    native_payloads,
    senml_payloads,
)
from bench.ingest import QUICK_SIZES as INGEST_QUICK_SIZES
from bench.ingest_process import IngestProcess, baseline_tree
from bench.ingest_report import CaseResult, markdown_table
from bench.knee import (
    NODERED,
    PANTAU_NATIVE,
    PANTAU_SENML,
    Curve,
    Ladder,
    LoadPoint,
    knee_table,
    load_table,
    sweep,
)
from bench.mosquitto_clients import PUBLISHER_MAX_LINES
from bench.nodered import NodeRed, nodered_flow
from bench.pacer import PacedPublishers, PacedStream
from bench.stored_count import POLL_S, STALL_S, count_points
from ingest.pipeline import Pipeline
from pantau.city import City, load_city
from pantau.influx.query import InfluxQL
from pantau.local import LocalStack
from pantau.local.ports import free_port
from pantau.settings import IngestSettings
from pantau.topics import Topics

__all__ = ["NODERED", "PANTAU_NATIVE", "PANTAU_SENML", "LoadPoint", "LoadSweep", "SweepPlan"]

DRAIN_S = 30.0  # wait this long after publishing ended, then a lagging point is judged
SYSTEMS = (PANTAU_NATIVE, NODERED, PANTAU_SENML)
KEYS = {"native": PANTAU_NATIVE, "nodered": NODERED, "senml": PANTAU_SENML}
BASELINE_PREFIX = "Pantau native, baseline"  # + " REF": another commit's ingest (--baseline)


def baseline_system(ref: str) -> str:
    return f"{BASELINE_PREFIX} {ref}"


@dataclass(frozen=True, slots=True)
class SweepPlan:
    native_from: int  # first offered readings/s, Pantau native (one per message)
    nodered_from: int  # the same for the Node-RED flow
    senml_from: int  # first offered readings/s in SenML packs
    seconds: float  # of offered load per point
    max_points: int = 12  # per consumer, a bound in case no cap is known
    systems: tuple[str, ...] = SYSTEMS

    def start(self, system: str) -> int:
        if system.startswith(BASELINE_PREFIX):
            return self.native_from
        return {
            PANTAU_NATIVE: self.native_from,
            NODERED: self.nodered_from,
            PANTAU_SENML: self.senml_from,
        }[system]


# Node-RED stored 112-126 readings/s on the loaded box (2,879 idle), Pantau thousands:
# ladders of 125 x 2^k, so the two meet at the same offers from 500 up.
DEFAULT_PLAN = SweepPlan(native_from=500, nodered_from=125, senml_from=12_500, seconds=12.0)
QUICK_PLAN = SweepPlan(native_from=500, nodered_from=125, senml_from=12_500, seconds=6.0)


@dataclass(frozen=True, slots=True)
class Caps:
    """Readings/s the publishers can push, per payload form, and how that was measured."""

    native: float
    senml: float
    source: str

    def of(self, system: str) -> float:
        return self.senml if system == PANTAU_SENML else self.native

    @classmethod
    def from_cases(cls, cases: Sequence[CaseResult], pack_size: int) -> Caps | None:
        """From `bench.ingest`'s broker fan-in cases (the same publishers and topics,
        all at once, into one `mosquitto_sub`), when both ran and lost nothing."""
        by_key = {c.key: c for c in cases if not c.lost}
        native, senml = by_key.get("broker_native"), by_key.get("broker_senml")
        if native is None or senml is None:
            return None
        return cls(
            native=native.rate,
            senml=senml.rate * pack_size,
            source="broker fan-in ceiling, same run",
        )


def first_errors(log: Path, limit: int = 3) -> tuple[str, ...]:
    """The first distinct error messages in a consumer's log (timestamps dropped): the
    tail of a flooded log repeats the last one, the cause is usually the first."""
    seen: list[str] = []
    if not log.exists():
        return ()
    for line in log.read_text(errors="replace").splitlines():
        if "error" in line.lower():
            text = line.split("] ", 1)[-1].strip()[:200]
            if text not in seen:
                seen.append(text)
                if len(seen) == limit:
                    break
    return tuple(seen)


def check_payload(city: City, topic: str, payload: bytes, form: PayloadForm) -> None:
    """ingest's own pipeline on one payload: a reject fails the run with its reason."""
    root = topic.split("/", 1)[0]
    outcome = Pipeline(city, Topics(root), IngestSettings()).handle(
        topic, payload, form.content_type, datetime.now(UTC)
    )
    if outcome.rejections or len(outcome.lines) != form.readings_per_message:
        reasons = [f"{r.reason}: {r.detail}" for r in outcome.rejections]
        raise RuntimeError(f"ingest would not take the {form.name} payload: {reasons}")


def wait_drained(
    influx: InfluxQL,
    expected: int,
    started: float,
    until: Callable[[], float],
    alive: Callable[[], bool],
) -> tuple[int, float, bool]:
    """Poll the count until it reaches `expected`, stalls for `STALL_S`, the consumer
    exits, or `until()` (monotonic) passes while it still rises: (count, seconds since
    `started` at that poll, whether waiting stopped while the count was rising)."""
    last, changed_at = -1, time.monotonic()
    while True:
        stored = count_points(influx, "water_level")
        now = time.monotonic()
        if stored >= expected:
            return stored, now - started, False
        if stored != last:
            last, changed_at = stored, now
        elif now - changed_at > STALL_S or not alive():
            return stored, now - started, False
        if now > until():
            return stored, now - started, True
        time.sleep(POLL_S)


class LoadSweep:
    """Paced points on `bench`'s stack and devices, one consumer process per point."""

    def __init__(self, bench: Bench, plan: SweepPlan) -> None:
        """With `bench.baseline`, the plan's baseline system runs that source tree's ingest."""
        self.bench = bench
        self.plan = plan

    def form(self, system: str) -> PayloadForm:
        return self.bench.senml if system == PANTAU_SENML else NATIVE

    def streams(self, form: PayloadForm, root: str, rate: float) -> list[PacedStream]:
        devices = self.bench.devices
        messages = rate * self.plan.seconds / form.readings_per_message
        per_device = max(1, math.ceil(messages / len(devices)))
        start = history_start(per_device * form.readings_per_message)
        topics = Topics(root)
        out = []
        for device in devices:
            if form.content_type is None:
                lines = list(native_payloads(device, per_device, start))
            else:
                readings = per_device * form.readings_per_message
                lines = list(senml_payloads(device, readings, form.readings_per_message, start))
            out.append(
                PacedStream(
                    topics.sensor_up(device.id), lines, len(lines) * form.readings_per_message
                )
            )
        check_payload(self.bench.city, out[0].topic, out[0].lines[0], form)
        return out

    def line_limit(self, system: str) -> float:
        """The highest offer one `mosquitto_pub -l` per device can carry for the plan's
        seconds (each takes at most `PUBLISHER_MAX_LINES`)."""
        per_message = self.form(system).readings_per_message
        return PUBLISHER_MAX_LINES * len(self.bench.devices) * per_message / self.plan.seconds

    def caps(self, progress: Callable[[str], None]) -> Caps:
        """The broker fan-in ceilings of both forms, measured now (`bench.ingest`'s case:
        one publisher per device topic, all at once, into one `mosquitto_sub`)."""
        progress("load: measuring what the publishers can push (broker fan-in)")
        bench = self.bench
        native = bench.broker_fan_in(
            NATIVE, bench.jobs(NATIVE, f"lc{uuid.uuid4().hex[:8]}", 50_000)
        )
        senml = bench.broker_fan_in(
            bench.senml, bench.jobs(bench.senml, f"lc{uuid.uuid4().hex[:8]}", 250_000)
        )
        if native.lost or senml.lost:
            raise RuntimeError("the broker fan-in ceiling lost messages: no cap to sweep to")
        return Caps(
            native.rate, senml.rate * bench.senml.readings_per_message, "broker fan-in ceiling"
        )

    def point(self, system: str, rate: float) -> LoadPoint:
        form = self.form(system)
        stack, work = self.bench.stack, self.bench.work
        root = f"ld{uuid.uuid4().hex[:8]}"
        database = f"bench_load_{root}"
        streams = self.streams(form, root, rate)
        sent = sum(s.readings for s in streams)
        stack.create_database(database)
        consumer: IngestProcess | NodeRed
        if system == NODERED:
            port = int(stack.influx_url.rsplit(":", 1)[1])
            flows = nodered_flow(
                root=root, mqtt_port=stack.mqtt_port, influx_port=port, database=database
            )
            consumer = NodeRed(work / f"nodered-{root}", free_port(), flows)
        else:
            source = None
            if system.startswith(BASELINE_PREFIX):
                assert self.bench.baseline is not None
                source = self.bench.baseline[1]
            consumer = IngestProcess(stack, root, database, work / f"ingest-{root}.log", source)
        consumer.start()
        pacers: PacedPublishers | None = None
        try:
            with InfluxQL(stack.influx_url, database, timeout_s=60) as influx:
                self.bench.wait_until_ingesting(consumer, Topics(root), influx)
                name = "node-red" if system == NODERED else "ingest"
                pids = {**self.bench.service_pids(), name: consumer.pid}
                pacers = PacedPublishers(stack, streams, form.publish_args)
                with CpuWatch(pids) as watch:
                    started = pacers.start(rate / form.readings_per_message)
                    paced = pacers.finish(timeout_s=120 + 2 * self.plan.seconds)
                    published = started + max(paced.publish_s, sent / rate)
                    stored, seconds, gave_up = wait_drained(
                        influx, sent, started, lambda: published + DRAIN_S, consumer.alive
                    )
                if not gave_up:
                    time.sleep(0.5)  # anything beyond what was sent would show up now
                    stored = count_points(influx, "water_level")
        finally:
            if pacers is not None:
                pacers.kill()
            consumer.stop()
        errors: tuple[str, ...] = ()
        if (stored != sent and not gave_up) or paced.failures:
            errors = first_errors(consumer.log)
            print(f"{system} at {rate:,.0f}/s: first errors {errors}", file=sys.stderr)
        stack.drop_database(database)
        return LoadPoint(
            system=system,
            offered=rate,
            readings_per_message=form.readings_per_message,
            planned_s=self.plan.seconds,
            sent=sent,
            stored=stored,
            seconds=seconds,
            achieved=paced.achieved * form.readings_per_message,
            publish_s=paced.publish_s,
            gave_up=gave_up,
            failures=paced.failures,
            errors=errors,
            cpu={k: round(v.cores, 3) for k, v in watch.result().items()},
        )

    def run(self, progress: Callable[[str], None], caps: Caps) -> list[Curve]:
        """Every consumer's curve (`bench.knee.sweep`), step by step: Pantau native,
        then Node-RED, then SenML at each step, so they meet the same minutes of a
        shared machine."""
        plan = self.plan
        ladders = []
        for system in plan.systems:
            limit = self.line_limit(system)
            cap, source = caps.of(system), caps.source
            if limit < cap:
                cap, source = limit, "publisher line limit"
            ladders.append(Ladder(system, plan.start(system), cap, source))

        def measure(system: str, rate: float) -> LoadPoint:
            point = self.point(system, rate)
            time.sleep(SETTLE_S)
            return point

        return sweep(ladders, plan.max_points, measure, progress)


def bursts(
    bench: Bench, readings: int, systems: Sequence[str], progress: Callable[[str], None]
) -> list[CaseResult]:
    """`readings` published at once (no pacing) to each consumer: `bench.ingest`'s
    Pantau and Node-RED cases on one payload set per form."""
    out = []
    native = bench.jobs(NATIVE, f"bb{uuid.uuid4().hex[:8]}", readings)
    cases: dict[str, Callable[[], CaseResult]] = {
        PANTAU_NATIVE: lambda: bench.pantau(NATIVE, native),
        NODERED: lambda: bench.nodered(native),
        PANTAU_SENML: lambda: bench.pantau(
            bench.senml, bench.jobs(bench.senml, f"bb{uuid.uuid4().hex[:8]}", readings)
        ),
    }
    if bench.baseline is not None:
        cases[baseline_system(bench.baseline[0])] = lambda: bench.pantau(
            NATIVE, native, baseline=True
        )
    for system in systems:
        progress(f"burst: {system}, {readings:,} readings at once")
        case = cases[system]()
        progress(f"  {case.stored:,}/{case.sent:,} in {case.seconds:.2f} s = {case.rate:,.0f}/s")
        out.append(case)
        time.sleep(SETTLE_S)
    return out


BURST_NAMES = {"native": PANTAU_NATIVE, "nodered": NODERED, "senml": PANTAU_SENML}


def burst_table(cases: Sequence[CaseResult]) -> str:
    rows = [
        [
            BURST_NAMES.get(c.key, c.name),
            f"{c.sent:,}",
            f"{c.stored:,}" + (f" LOST {c.sent - c.stored:,}" if c.stored < c.sent else ""),
            f"{c.seconds:.2f}",
            "FAILED" if c.lost else f"{c.rate:,.0f}",
        ]
        for c in cases
        if c.key in BURST_NAMES or c.key == "native_baseline"
    ]
    header = ["consumer", "readings at once", "stored", "s to last stored", "readings/s"]
    return markdown_table(header, rows)


def _keys(text: str) -> tuple[str, ...]:
    names = [x.strip() for x in text.split(",") if x.strip()]
    unknown = [n for n in names if n not in KEYS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown consumer {unknown}: pick from {list(KEYS)}")
    return tuple(KEYS[n] for n in names)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="shorter points (6 s)")
    parser.add_argument("--from", dest="native_from", type=int, help="first rate, Pantau native")
    parser.add_argument("--nodered-from", type=int, help="first offered readings/s, Node-RED")
    parser.add_argument("--senml-from", type=int, help="first offered readings/s, SenML")
    parser.add_argument("--seconds", type=float, help="of offered load per point")
    parser.add_argument("--burst", type=int, default=100_000, help="readings at once (0: none)")
    parser.add_argument(
        "--consumers", type=_keys, help="comma-separated: native,nodered,senml (default all)"
    )
    parser.add_argument(
        "--baseline",
        metavar="REF",
        help="also sweep the ingest of git commit REF (e.g. main), Pantau native, each "
        "point right after this tree's",
    )
    args = parser.parse_args(argv)
    base = QUICK_PLAN if args.quick else DEFAULT_PLAN
    systems = args.consumers or base.systems
    if args.baseline:
        at = systems.index(PANTAU_NATIVE) + 1 if PANTAU_NATIVE in systems else 0
        systems = (*systems[:at], baseline_system(args.baseline), *systems[at:])
    plan = SweepPlan(
        native_from=args.native_from or base.native_from,
        nodered_from=args.nodered_from or base.nodered_from,
        senml_from=args.senml_from or base.senml_from,
        seconds=args.seconds or base.seconds,
        systems=systems,
    )
    started = time.monotonic()

    def progress(text: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {text}", file=sys.stderr, flush=True)

    with (
        tempfile.TemporaryDirectory(prefix="pantau-bench-") as tmp,
        LocalStack(Path(tmp) / "stack") as stack,
    ):
        baseline = None
        if args.baseline:
            baseline = (args.baseline, baseline_tree(args.baseline, Path(tmp) / "baseline"))
        bench = Bench(stack, load_city(), INGEST_QUICK_SIZES, Path(tmp), baseline=baseline)
        sweep = LoadSweep(bench, plan)
        curves = sweep.run(progress, sweep.caps(progress))
        burst = bursts(bench, args.burst, plan.systems, progress) if args.burst else []
    print(knee_table(curves))
    print()
    print(load_table([p for c in curves for p in c.points]))
    if burst:
        print()
        print(burst_table(burst))
    print(f"\nend-to-end times are read by polling the count every {POLL_S} s")
    # Node-RED losing data is the peer's knee; Pantau losing any is a failure.
    pantau_lost = any(
        p.lost
        for c in curves
        if c.system == PANTAU_NATIVE or c.system == PANTAU_SENML
        for p in c.points
    )
    pantau_lost |= any(c.lost for c in burst if c.key in ("native", "senml"))
    return 1 if any(c.error for c in curves) or pantau_lost else 0


if __name__ == "__main__":
    raise SystemExit(main())
