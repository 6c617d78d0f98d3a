"""`uv run python -m bench.suite [--quick]`: every benchmark in one run, one report.

1. One LocalStack for the ingest side, so the ceilings and the consumers share a broker,
   an InfluxDB and the same minutes: `bench.ingest` (broker and InfluxDB ceilings,
   Pantau native, the Node-RED flow and Pantau SenML on one payload set), then
   `bench.load` (throughput against offered load, paced).
2. `bench.rules`: point-in-zone tests/s, rule evaluations/s, reading -> crew alert
   latency at several background loads.
3. `bench.api`, `bench.vision`, `bench.faults`, `bench.ingest_replicas` as subprocesses
   when those modules exist (their own tables, their own exit status); "not run: module
   missing" otherwise.

Writes bench/results/<date>[-quick].json, .md, -throughput.png and -latency.png. A
stage that fails or loses data is reported as such and the suite exits 1.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bench import rules
from bench.ingest import DEFAULT_SIZES, POLL_S, QUICK_SIZES, Bench, Sizes
from bench.ingest_report import CaseResult, machine_info, markdown_table, report
from bench.load import DEFAULT_PLAN, QUICK_PLAN, LoadPoint, LoadSweep, SweepPlan, load_table
from bench.rules_latency import LatencyArgs
from bench.suite_report import (
    LatencyPoint,
    latency_table,
    plot_latency,
    plot_throughput,
    verdict_table,
    verdicts,
)
from pantau.city import load_city
from pantau.local import LocalStack

RESULTS_DIR = Path(__file__).resolve().parent / "results"
EXTERNAL = ("api", "vision", "faults", "ingest_replicas")  # bench modules other engineers own


@dataclass(frozen=True, slots=True)
class Plan:
    sizes: Sizes
    sweep: SweepPlan
    rules: rules.Args
    external_timeout_s: float


# The Node-RED flow stores a few hundred readings/s here: the burst case's native payload
# set is kept at 20,000 readings so its drain stays near a minute.
FULL = Plan(
    sizes=Sizes(
        broker_messages=DEFAULT_SIZES.broker_messages,
        influx_points=DEFAULT_SIZES.influx_points,
        native_messages=20_000,
        packed_readings=DEFAULT_SIZES.packed_readings,
    ),
    sweep=DEFAULT_PLAN,
    rules=rules.Args(
        points=1_000_000,
        single_points=100_000,
        repeats=3,
        eval_readings=10**9,
        latency=LatencyArgs(rates=(1_000, 2_000, 4_000), injections=40, spacing_s=0.5, warmup_s=10),
    ),
    external_timeout_s=2400,  # bench.faults at full length holds a 10-minute outage
)
QUICK = Plan(
    sizes=QUICK_SIZES,
    sweep=QUICK_PLAN,
    rules=rules.Args(
        points=100_000,
        single_points=10_000,
        repeats=1,
        eval_readings=100_000,
        latency=LatencyArgs(rates=(500, 1_000, 2_000), injections=10, spacing_s=0.5, warmup_s=5),
    ),
    external_timeout_s=600,
)


@dataclass(slots=True)
class External:
    module: str
    status: str  # "ok", "failed (exit N)", "not run: module missing", ...
    seconds: float = 0.0
    output: str = ""


@dataclass(slots=True)
class SuiteRun:
    cases: list[CaseResult] = field(default_factory=list)
    points: list[LoadPoint] = field(default_factory=list)
    sections: list[rules.Section] = field(default_factory=list)
    external: list[External] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # stages that raised

    @property
    def failed(self) -> bool:
        return (
            bool(self.errors)
            or any(c.lost for c in self.cases)
            or any(p.lost for p in self.points)
            or any(s.failed for s in self.sections)
            or any(e.status.startswith("failed") for e in self.external)
        )

    def latency(self) -> list[LatencyPoint]:
        out = []
        for s in self.sections:
            for d in s.data:
                if "publish_to_alert_p50_ms" in d:
                    out.append(
                        LatencyPoint(
                            offered=float(str(d["offered_per_s"])),
                            achieved=float(str(d["achieved_per_s"])),
                            alerts=int(str(d["alerts"])),
                            injections=int(str(d["injections"])),
                            p50_ms=float(str(d["publish_to_alert_p50_ms"])),
                            p99_ms=float(str(d["publish_to_alert_p99_ms"])),
                        )
                    )
        return out


def run_external(module: str, quick: bool, timeout_s: float) -> External:
    """`python -m bench.<module>`; its stdout is its report. `--quick` and `--no-save`
    only if its --help lists them."""
    name = f"bench.{module}"
    if importlib.util.find_spec(name) is None:
        return External(module, "not run: module missing")
    argv = [sys.executable, "-m", name]
    helptext = subprocess.run(
        [*argv, "--help"], capture_output=True, text=True, timeout=120, check=False
    ).stdout
    if quick and "--quick" in helptext:
        argv.append("--quick")
    if "--no-save" in helptext:
        argv.append("--no-save")  # its figures live in the suite's files, not beside them
    started = time.monotonic()
    # Its own process group: on a timeout, SIGINT lets its `with` blocks stop the
    # brokers and databases it started; whatever is left of the group is then killed.
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            out, err = "", ""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        tail = (out + err)[-3000:].strip()
        return External(module, f"failed (no result in {timeout_s:.0f} s)", timeout_s, tail)
    seconds = time.monotonic() - started
    status = "ok" if proc.returncode == 0 else f"failed (exit {proc.returncode})"
    output = out if proc.returncode == 0 else out + err[-3000:]
    return External(module, status, seconds, output.strip())


def stage(
    run: SuiteRun, name: str, fn: Callable[[], None], progress: Callable[[str], None]
) -> None:
    """A stage that raises is recorded and the suite goes on with the next one."""
    try:
        fn()
    except Exception as err:
        progress(f"{name} FAILED: {err!r}")
        run.errors.append(f"{name}: {err!r}\n{traceback.format_exc()[-2000:]}")


def rules_stage(
    run: SuiteRun, section: Callable[[rules.Args], rules.Section], plan: Plan
) -> Callable[[], None]:
    def go() -> None:
        run.sections.append(section(plan.rules))

    return go


def run_suite(plan: Plan, quick: bool, progress: Callable[[str], None]) -> SuiteRun:
    run = SuiteRun()
    city = load_city()
    with (
        tempfile.TemporaryDirectory(prefix="pantau-bench-") as tmp,
        LocalStack(Path(tmp) / "stack") as stack,
    ):
        progress(f"stack up: mqtt {stack.mqtt_port}, influx {stack.influx_url}")
        bench = Bench(stack, city, plan.sizes, Path(tmp))
        stage(run, "bench.ingest", lambda: run.cases.extend(bench.run(progress)), progress)
        sweep = LoadSweep(bench, plan.sweep)
        stage(run, "bench.load", lambda: run.points.extend(sweep.run(progress)), progress)
    for section in rules.SECTIONS:
        progress(f"bench.rules: {section.__name__}")
        stage(run, f"bench.rules {section.__name__}", rules_stage(run, section, plan), progress)
    for module in EXTERNAL:
        progress(f"bench.{module}")
        ext = run_external(module, quick, plan.external_timeout_s)
        progress(f"  {ext.status}")
        run.external.append(ext)
    return run


def section_markdown(section: rules.Section) -> str:
    header = ["case", "n", "wall s", "CPU s", "rate", "per CPU s", "unit", "check"]
    rows = [
        [
            c.name,
            f"{c.n:,}",
            f"{c.wall_s:.3f}",
            f"{c.cpu_s:.3f}",
            f"{c.rate:,.0f}",
            f"{c.rate_per_cpu_s:,.0f}",
            c.unit,
            c.note,
        ]
        for c in section.cases
    ]
    if section.table is not None:
        header, rows = section.table
    notes = [f"- {n}" for n in section.notes]
    return "\n".join([f"### {section.title}", "", markdown_table(header, rows), "", *notes])


def markdown(run: SuiteRun, plan: Plan, machine: dict[str, object], stem: str) -> str:
    cpus, model = machine.get("cpus"), machine.get("cpu_model")
    load = machine.get("loadavg_at_start")
    out = [
        f"# Pantau benchmark suite, {stem}",
        "",
        f"Machine: {cpus} CPUs ({model}), kernel {machine.get('kernel')}, Python "
        f"{machine.get('python')}, {machine.get('mosquitto')}, {machine.get('influxd')}; "
        f"load average at start {load}. Figures are measured in this one run; a case that "
        "lost data is a failure, not a figure.",
        "",
        "## Targets",
        "",
        verdict_table(verdicts(run.cases, run.points)),
        "",
        f"![throughput against offered load]({stem}-throughput.png)",
        f"![alert latency against offered load]({stem}-latency.png)",
        "",
        "## Throughput against offered load (bench.load)",
        "",
        f"{plan.sweep.seconds:g} s of paced load per point; sustained = stored / seconds "
        "from the first write to the last reading stored; lag = how long after the offer "
        "ended that was. Each point: its own consumer process, topic root and database.",
        "",
        load_table(run.points) if run.points else "not run (see errors)",
        "",
        "## Ceilings and consumers on one payload set (bench.ingest)",
        "",
        report(run.cases, plan.sizes.pack_size, POLL_S) if run.cases else "not run",
        "",
        "## Rules (bench.rules)",
        "",
    ]
    for section in run.sections:
        out += [section_markdown(section), ""]
    latency = run.latency()
    if latency:
        out += ["Alert latency summary:", "", latency_table(latency), ""]
    out += ["## API, vision, faults", ""]
    for ext in run.external:
        out += [f"### bench.{ext.module}: {ext.status}", ""]
        if ext.output:
            out += [ext.output, ""]
    if run.errors:
        out += ["## Errors", "", "```", *run.errors, "```", ""]
    return "\n".join(out)


def document(run: SuiteRun, plan: Plan, machine: dict[str, object], quick: bool) -> object:
    return {
        "benchmark": "bench.suite",
        "command": "uv run python -m bench.suite" + (" --quick" if quick else ""),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine,
        "plan": asdict(plan),
        "failed": run.failed,
        "targets": [asdict(v) for v in verdicts(run.cases, run.points)],
        "ingest_cases": [
            {**asdict(c), "lost": c.lost, "rate": round(c.rate, 1)} for c in run.cases
        ],
        "load_points": [
            {**asdict(p), "lost": p.lost, "throughput": None if p.lost else round(p.throughput, 1)}
            for p in run.points
        ],
        "rules_sections": [
            {
                "title": s.title,
                "failed": s.failed,
                "cases": [{**asdict(c), "rate": c.rate} for c in s.cases],
                "data": s.data,
                "notes": s.notes,
            }
            for s in run.sections
        ],
        "external": [asdict(e) for e in run.external],
        "errors": run.errors,
    }


def finite(value: object) -> object:
    """NaN (a percentile of no samples) as null: strict JSON has no NaN."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.suite", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller, shorter: ~10 min")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    started = time.monotonic()

    def progress(text: str) -> None:
        print(f"[{time.monotonic() - started:7.1f}s] {text}", file=sys.stderr, flush=True)

    machine = machine_info()
    run = run_suite(plan, args.quick, progress)
    RESULTS_DIR.mkdir(exist_ok=True)
    stem = datetime.now(UTC).date().isoformat() + ("-quick" if args.quick else "")
    title = f"Pantau vs Node-RED, {stem}, {machine.get('cpus')} CPUs"
    names = {"broker": "broker 1 topic, msg/s", "influx": "InfluxDB /write, points/s"}
    ceilings = {names[c.key]: c.rate for c in run.cases if c.key in names and not c.lost}
    plot_throughput(run.points, ceilings, title, RESULTS_DIR / f"{stem}-throughput.png")
    plot_latency(
        run.latency(), f"reading -> crew alert, {stem}", RESULTS_DIR / f"{stem}-latency.png"
    )
    page = markdown(run, plan, machine, stem)
    (RESULTS_DIR / f"{stem}.md").write_text(page + "\n")
    doc = document(run, plan, machine, args.quick)
    (RESULTS_DIR / f"{stem}.json").write_text(json.dumps(finite(doc), indent=2, default=str) + "\n")
    print(page)
    progress(f"results: {RESULTS_DIR / stem}.{{json,md}}, -throughput.png, -latency.png")
    return 1 if run.failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
