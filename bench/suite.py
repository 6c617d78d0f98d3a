"""`uv run python -m bench.suite [--quick]`: every benchmark in one run, one report.

1. One LocalStack for the ingest side, so the ceilings and the consumers share a broker,
   an InfluxDB and the same minutes: `bench.ingest` (broker and InfluxDB ceilings,
   Pantau native, the Node-RED flow and Pantau SenML on one payload set: the burst of
   100,000 readings), then `bench.load` (each consumer's knee: offered rates doubled
   until it fails, up to what the publishers can push).
2. `bench.rules`: point-in-zone tests/s, rule evaluations/s, reading -> crew alert
   latency and readings per rules CPU-second on a staircase of background rates (500/s
   doubling until a step is not sustained: `bench.rules_stairs`), its highest sustained
   rate named.
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
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from bench import rules
from bench.ingest import DEFAULT_SIZES, QUICK_SIZES, Bench, Sizes
from bench.ingest_report import CaseResult, machine_info, markdown_table, report
from bench.knee import NODERED, Curve, LoadPoint, knee_table, load_table
from bench.load import DEFAULT_PLAN, QUICK_PLAN, Caps, LoadSweep, SweepPlan, burst_table
from bench.rules_latency import LatencyArgs
from bench.stored_count import POLL_S
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


# The burst beside the sweep: 100,000 native readings at once to Pantau and to the
# Node-RED flow (which drains a few hundred to a few thousand readings/s: minutes).
BURST = 100_000
FULL = Plan(
    sizes=replace(DEFAULT_SIZES, native_messages=BURST),
    sweep=DEFAULT_PLAN,
    rules=rules.Args(
        points=1_000_000,
        single_points=100_000,
        repeats=3,
        eval_readings=10**9,
        # One service, 500/s doubling every 30 s until a step is not sustained (the
        # issue's reference point, 2,000/s, is the third step): ~5 min.
        latency=LatencyArgs(
            rates=(500,), injections=12, spacing_s=0.5, warmup_s=10, until_fail=True, step_s=30
        ),
    ),
    external_timeout_s=2400,  # bench.faults at full length holds a 10-minute outage
)
QUICK = Plan(
    sizes=replace(QUICK_SIZES, native_messages=BURST, packed_readings=BURST),
    sweep=QUICK_PLAN,
    rules=rules.Args(
        points=100_000,
        single_points=10_000,
        repeats=1,
        eval_readings=100_000,
        # As FULL's, 15 s a step: ~2-3 min.
        latency=LatencyArgs(
            rates=(500,), injections=10, spacing_s=0.5, warmup_s=5, until_fail=True, step_s=15
        ),
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
    curves: list[Curve] = field(default_factory=list)
    sections: list[rules.Section] = field(default_factory=list)
    external: list[External] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # stages that raised

    @property
    def points(self) -> list[LoadPoint]:
        return [p for c in self.curves for p in c.points]

    @property
    def failed(self) -> bool:
        """A stage raised, Pantau or a ceiling lost data, an alert was missed, a module
        failed. The Node-RED peer losing data is its knee (or its burst's figure), not
        the suite's failure; every curve ends at a failing point by design."""
        return (
            bool(self.errors)
            or any(c.lost for c in self.cases if c.key != "nodered")
            or any(p.lost for p in self.points if p.system != NODERED)
            or any(c.error is not None for c in self.curves)
            or any(s.failed for s in self.sections)
            or any(e.status.startswith("failed") for e in self.external)
        )

    def latency(self) -> list[LatencyPoint]:
        out = []
        for s in self.sections:
            for d in s.data:
                if "publish_to_alert_p50_ms" in d:
                    cores = d.get("cpu_cores")
                    rules_cores = cores.get("rules") if isinstance(cores, dict) else None
                    per = d.get("readings_per_rules_cpu_s")
                    out.append(
                        LatencyPoint(
                            offered=float(str(d["offered_per_s"])),
                            achieved=float(str(d["achieved_per_s"])),
                            alerts=int(str(d["alerts"])),
                            injections=int(str(d["injections"])),
                            p50_ms=float(str(d["publish_to_alert_p50_ms"])),
                            p99_ms=float(str(d["publish_to_alert_p99_ms"])),
                            rules_cores=float(str(rules_cores or "nan")),
                            sustained=bool(d["sustained"]) if "sustained" in d else None,
                            readings_per_cpu_s=None if per is None else float(str(per)),
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


STAGES = ("ingest", "rules", "external")  # ingest = bench.ingest's cases and bench.load


def run_suite(
    plan: Plan, quick: bool, progress: Callable[[str], None], skip: Sequence[str] = ()
) -> SuiteRun:
    run = SuiteRun()
    if "ingest" not in skip:
        ingest_side(run, plan, progress)
    for section in () if "rules" in skip else rules.SECTIONS:
        progress(f"bench.rules: {section.__name__}")
        stage(run, f"bench.rules {section.__name__}", rules_stage(run, section, plan), progress)
    for module in () if "external" in skip else EXTERNAL:
        progress(f"bench.{module}")
        ext = run_external(module, quick, plan.external_timeout_s)
        progress(f"  {ext.status}")
        run.external.append(ext)
    return run


def ingest_side(run: SuiteRun, plan: Plan, progress: Callable[[str], None]) -> None:
    city = load_city()
    with (
        tempfile.TemporaryDirectory(prefix="pantau-bench-") as tmp,
        LocalStack(Path(tmp) / "stack") as stack,
    ):
        progress(f"stack up: mqtt {stack.mqtt_port}, influx {stack.influx_url}")
        bench = Bench(stack, city, plan.sizes, Path(tmp))
        stage(run, "bench.ingest", lambda: run.cases.extend(bench.run(progress)), progress)
        sweep = LoadSweep(bench, plan.sweep)

        def load() -> None:
            caps = Caps.from_cases(run.cases, plan.sizes.pack_size) or sweep.caps(progress)
            run.curves.extend(sweep.run(progress, caps))

        stage(run, "bench.load", load, progress)


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
        verdict_table(verdicts(run.cases, run.curves, run.latency())),
        "",
        f"![throughput against offered load]({stem}-throughput.png)",
        f"![alert latency against offered load]({stem}-latency.png)",
        "",
        "## Each consumer's knee (bench.load)",
        "",
        f"Offered rates double from {plan.sweep.native_from:,} readings/s (Node-RED "
        f"{plan.sweep.nodered_from:,}, SenML {plan.sweep.senml_from:,}) until the consumer "
        "loses a reading or lags more than 5 s behind the publishers, or until the "
        "publishers' cap (the broker fan-in ceiling of this run) is reached: then the "
        "consumer's figure is a lower bound and the table says so.",
        "",
        knee_table(run.curves) if run.curves else "not run (see errors)",
        "",
        f"{plan.sweep.seconds:g} s of paced load per point; pushed = readings / seconds "
        "until the publishers' last PUBACK; sustained = stored / seconds from the first "
        "write to the last reading stored; lag = how long after publishing ended that "
        "was. Each point: its own consumer process, topic root and database.",
        "",
        load_table(run.points) if run.points else "not run (see errors)",
        "",
        "The burst beside it (bench.ingest's cases: every reading published at once):",
        "",
        burst_table(run.cases) if run.cases else "not run",
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
        "targets": [asdict(v) for v in verdicts(run.cases, run.curves, run.latency())],
        "ingest_cases": [
            {**asdict(c), "lost": c.lost, "rate": round(c.rate, 1)} for c in run.cases
        ],
        "load_curves": [
            {
                "system": c.system,
                "cap": round(c.cap, 1),
                "cap_source": c.cap_source,
                "stop": c.stop,
                "consumer_stopped": c.consumer_stopped,
                "error": c.error,
                "best_sustained": None if c.best is None else round(c.best.throughput, 1),
                "best_at_offered": None if c.best is None else c.best.offered,
                "points": [
                    {
                        **asdict(p),
                        "lost": p.lost,
                        "lag_s": round(p.lag_s, 2),
                        "lagged": p.lagged,
                        "pushed": round(p.pushed, 1),
                        "throughput": None if p.lost else round(p.throughput, 1),
                    }
                    for p in c.points
                ],
            }
            for c in run.curves
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
    parser.add_argument("--quick", action="store_true", help="smaller, shorter: ~30-40 min")
    parser.add_argument(
        "--skip", action="append", choices=STAGES, default=[], help="leave a stage out (repeatable)"
    )
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    started = time.monotonic()

    def progress(text: str) -> None:
        print(f"[{time.monotonic() - started:7.1f}s] {text}", file=sys.stderr, flush=True)

    machine = machine_info()
    run = run_suite(plan, args.quick, progress, args.skip)
    RESULTS_DIR.mkdir(exist_ok=True)
    stem = datetime.now(UTC).date().isoformat() + ("-quick" if args.quick else "")
    title = f"Pantau vs Node-RED, {stem}, {machine.get('cpus')} CPUs"
    by_key = {c.key: c for c in run.cases if not c.lost}
    ceilings = {
        name: by_key[key].rate * factor
        for key, name, factor in (
            ("broker_native", "broker fan-in, native (1 reading/msg)", 1),
            ("influx", "InfluxDB /write, points", 1),
            ("broker_senml", "broker fan-in, SenML readings", plan.sizes.pack_size),
        )
        if key in by_key
    }
    # The figures first: a plot that raises must not lose a run of half an hour.
    doc = document(run, plan, machine, args.quick)
    (RESULTS_DIR / f"{stem}.json").write_text(json.dumps(finite(doc), indent=2, default=str) + "\n")
    plots: list[tuple[str, Callable[[], None]]] = [
        (
            "throughput plot",
            lambda: plot_throughput(
                run.curves, run.cases, ceilings, title, RESULTS_DIR / f"{stem}-throughput.png"
            ),
        ),
        (
            "latency plot",
            lambda: plot_latency(
                run.latency(), f"reading -> crew alert, {stem}", RESULTS_DIR / f"{stem}-latency.png"
            ),
        ),
    ]
    for name, draw in plots:
        stage(run, name, draw, progress)
    page = markdown(run, plan, machine, stem)
    (RESULTS_DIR / f"{stem}.md").write_text(page + "\n")
    print(page)
    progress(f"results: {RESULTS_DIR / stem}.{{json,md}}, -throughput.png, -latency.png")
    return 1 if run.failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
