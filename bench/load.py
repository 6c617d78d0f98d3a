"""Throughput against offered load: Pantau ingest and the Node-RED peer, paced.

`bench.ingest` sends everything at once and times the burst; a city's sensors instead
arrive at a rate. Here each consumer gets a fresh topic root, database and process per
offered rate, and `bench.pacer` feeds the 50 device topics of `bench.ingest.Bench` at
that rate for a fixed time. Sustained throughput = readings stored / seconds from the
first write until the last reading is in InfluxDB (polled every 0.25 s): below the
consumer's capacity it follows the offer, above it the backlog stretches the time and
the figure settles at what the consumer can sustain. A point whose InfluxDB count is
not what was sent (or whose publishers failed) is a failure, never a figure.

    uv run python -m bench.load [--quick] [--rates 500,1000,...] [--nodered-rates ...]
                                [--senml-rates ...] [--seconds 12]

prints the table; `python -m bench.suite` runs it beside the ceilings and plots it.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bench.cpu import CpuWatch
from bench.ingest import (
    NATIVE,
    POLL_S,
    SETTLE_S,
    Bench,
    PayloadForm,
    count_points,
    history_start,
    native_payloads,
    senml_payloads,
    wait_stored,
)
from bench.ingest import QUICK_SIZES as INGEST_QUICK_SIZES
from bench.ingest_process import IngestProcess
from bench.ingest_report import markdown_table
from bench.nodered import NodeRed, nodered_flow
from bench.pacer import PacedPublishers, PacedStream
from ingest.pipeline import Pipeline
from pantau.city import City, load_city
from pantau.influx.query import InfluxQL
from pantau.local import LocalStack
from pantau.local.ports import free_port
from pantau.settings import IngestSettings
from pantau.topics import Topics

PANTAU_NATIVE = "Pantau native"
NODERED = "Node-RED"
PANTAU_SENML = "Pantau SenML"


@dataclass(frozen=True, slots=True)
class SweepPlan:
    rates: tuple[int, ...]  # offered readings/s for Pantau native, one per message
    nodered_rates: tuple[int, ...]  # the same for the Node-RED flow
    senml_rates: tuple[int, ...]  # offered readings/s in SenML packs
    seconds: float  # of offered load per point


# Node-RED's own range sits lower: it stores a few hundred readings/s here, so 12 s at
# 8,000/s would take it six minutes to drain; the shared rates (500-2,000) are compared
# directly and the rest shows each curve's knee.
DEFAULT_PLAN = SweepPlan(
    rates=(500, 1_000, 2_000, 4_000, 8_000),
    nodered_rates=(125, 250, 500, 1_000, 2_000),
    senml_rates=(20_000, 50_000),
    seconds=12.0,
)
QUICK_PLAN = SweepPlan(
    rates=(1_000, 4_000, 8_000), nodered_rates=(250, 1_000), senml_rates=(25_000,), seconds=6.0
)


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadPoint:
    system: str
    offered: float  # readings/s
    readings_per_message: int
    planned_s: float
    sent: int  # readings in the lines the pacers were given
    stored: int
    seconds: float  # first write until the last reading was stored (or the last poll)
    achieved: float  # readings/s the pacers actually wrote
    publish_s: float  # first write until every publisher had its last PUBACK
    failures: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()  # the consumer's first distinct error lines, when lost
    cpu: dict[str, float] = field(default_factory=dict)  # cores over the point

    @property
    def lost(self) -> bool:
        return self.stored != self.sent or bool(self.failures)

    @property
    def throughput(self) -> float:
        """Sustained readings/s; meaningless (and never reported) when `lost`."""
        return self.stored / self.seconds if self.seconds > 0 else 0.0

    @property
    def lag_s(self) -> float:
        """How long after the offered load ended the last reading was stored."""
        return self.seconds - self.sent / self.offered


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


class LoadSweep:
    """Paced points on `bench`'s stack and devices, one consumer process per point."""

    def __init__(self, bench: Bench, plan: SweepPlan) -> None:
        self.bench = bench
        self.plan = plan

    def streams(self, form: PayloadForm, root: str, rate: int) -> list[PacedStream]:
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

    def point(self, system: str, rate: int) -> LoadPoint:
        form = self.bench.senml if system == PANTAU_SENML else NATIVE
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
            consumer = IngestProcess(stack, root, database, work / f"ingest-{root}.log")
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
                    stored, seconds = wait_stored(
                        influx, "water_level", sent, started, consumer.alive
                    )
                time.sleep(0.5)  # anything beyond what was sent would show up now
                stored = count_points(influx, "water_level")
        finally:
            if pacers is not None:
                pacers.kill()
            consumer.stop()
        errors: tuple[str, ...] = ()
        if stored != sent or paced.failures:
            errors = first_errors(consumer.log)
            print(f"{system} at {rate}/s: first errors {errors}", file=sys.stderr)
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
            failures=paced.failures,
            errors=errors,
            cpu={k: round(v.cores, 3) for k, v in watch.result().items()},
        )

    def run(self, progress: Callable[[str], None]) -> list[LoadPoint]:
        """By rising rate, Pantau then Node-RED where both are offered it, so the two
        meet the same minute of a shared machine; then the SenML points."""
        rates = sorted({*self.plan.rates, *self.plan.nodered_rates})
        order = []
        for r in rates:
            if r in self.plan.rates:
                order.append((PANTAU_NATIVE, r))
            if r in self.plan.nodered_rates:
                order.append((NODERED, r))
        order += [(PANTAU_SENML, r) for r in self.plan.senml_rates]
        points = []
        for system, rate in order:
            progress(f"load: {system} at {rate:,} readings/s offered")
            p = self.point(system, rate)
            verdict = "LOST" if p.lost else f"{p.throughput:,.0f} readings/s"
            progress(f"  {p.stored:,}/{p.sent:,} in {p.seconds:.2f} s -> {verdict}")
            points.append(p)
            time.sleep(SETTLE_S)
        return points


def throughput_cell(p: LoadPoint) -> str:
    if p.stored < p.sent:
        return f"FAILED: LOST {p.sent - p.stored:,}"
    if p.stored > p.sent:
        return f"FAILED: {p.stored - p.sent:,} EXTRA"
    if p.failures:
        return f"FAILED: {p.failures[0]}"
    return f"{p.throughput:,.0f}"


def load_table(points: Sequence[LoadPoint]) -> str:
    rows = [
        [
            p.system,
            f"{p.offered:,.0f}",
            f"{p.achieved:,.0f}",
            f"{p.sent:,}",
            f"{p.stored:,}",
            f"{p.seconds:.2f}",
            f"{p.lag_s:.2f}",
            throughput_cell(p),
            f"{p.cpu.get('ingest', p.cpu.get('node-red', float('nan'))):.2f}",
        ]
        for p in points
    ]
    header = [
        "consumer",
        "offered /s",
        "written /s",
        "sent",
        "stored",
        "s to last stored",
        "lag s",
        "sustained readings/s",
        "consumer cores",
    ]
    notes = [
        f"- {p.system} at {p.offered:,.0f}/s: the consumer's first errors: "
        + "; ".join(f"`{e}`" for e in p.errors)
        for p in points
        if p.lost and p.errors
    ]
    return "\n".join([markdown_table(header, rows), *(["", *notes] if notes else [])])


def _rates(text: str) -> tuple[int, ...]:
    return tuple(int(x.replace("_", "")) for x in text.split(",") if x.strip())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer, shorter points")
    parser.add_argument("--rates", type=_rates, help="offered readings/s, comma-separated")
    parser.add_argument("--nodered-rates", type=_rates, help="offered readings/s, Node-RED")
    parser.add_argument("--senml-rates", type=_rates, help="offered readings/s in packs")
    parser.add_argument("--seconds", type=float, help="of offered load per point")
    args = parser.parse_args(argv)
    plan = QUICK_PLAN if args.quick else DEFAULT_PLAN
    plan = SweepPlan(
        rates=args.rates if args.rates is not None else plan.rates,
        nodered_rates=args.nodered_rates if args.nodered_rates is not None else plan.nodered_rates,
        senml_rates=args.senml_rates if args.senml_rates is not None else plan.senml_rates,
        seconds=args.seconds or plan.seconds,
    )
    started = time.monotonic()

    def progress(text: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {text}", file=sys.stderr, flush=True)

    with (
        tempfile.TemporaryDirectory(prefix="pantau-bench-") as tmp,
        LocalStack(Path(tmp) / "stack") as stack,
    ):
        bench = Bench(stack, load_city(), INGEST_QUICK_SIZES, Path(tmp))
        points = LoadSweep(bench, plan).run(progress)
    print(load_table(points))
    print(f"\nend-to-end times are read by polling the count every {POLL_S} s")
    return 1 if any(p.lost for p in points) else 0


if __name__ == "__main__":
    raise SystemExit(main())
