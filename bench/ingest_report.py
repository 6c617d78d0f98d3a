"""bench.ingest's results: the Markdown tables, the targets and the JSON document."""

from __future__ import annotations

import os
import platform
import subprocess
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

from bench.cpu import CpuUse
from bench.stored_count import COUNTER_POLL_S, FINE_POLL_S
from pantau.local.process import find_executable

TARGET_NATIVE = 20_000  # readings/s, one reading per message
TARGET_PACKED = 100_000  # readings/s, SenML packs
EXPECTED_BROKER = 160_000  # msg/s, the estimate for this machine
EXPECTED_INFLUX = 280_000  # points/s, likewise


@dataclass(frozen=True, slots=True, kw_only=True)
class CaseResult:
    key: str
    name: str
    unit: str
    sent: int  # readings (or messages, for the broker cases)
    stored: int
    seconds: float  # first publish / write until everything arrived
    messages: int
    publish_seconds: float | None = None  # publishers alone (start until all exited)
    cpu: dict[str, CpuUse] = field(default_factory=dict)
    rss_mb: float | None = None  # the consumer's peak resident memory, at the window's end
    # Polled cases (bench.stored_count): everything was stored at most this long before
    # `seconds`, the return of the count query that saw it.
    resolution_s: float | None = None

    @property
    def lost(self) -> bool:
        return self.stored != self.sent

    @property
    def rate(self) -> float:
        return self.stored / self.seconds if self.seconds > 0 else 0.0

    @property
    def message_rate(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else 0.0

    @property
    def rate_bound(self) -> float:
        """The rate if everything was stored right after the previous count query: the
        most the polling can have understated `rate` by."""
        fastest = self.seconds - (self.resolution_s or 0.0)
        return self.stored / fastest if fastest > 0 else float("inf")


def seconds_cell(r: CaseResult) -> str:
    if r.resolution_s is None:
        return f"{r.seconds:.2f}"
    return f"{r.seconds:.3f} (-{r.resolution_s * 1000:.0f} ms)"


def stored_cell(r: CaseResult) -> str:
    if r.stored < r.sent:
        return f"{r.stored:,} LOST ({r.sent - r.stored:,} missing)"
    if r.stored > r.sent:
        return f"{r.stored:,} EXTRA ({r.stored - r.sent:,} more than sent)"
    return f"{r.stored:,}"


def vs_ceiling(r: CaseResult, by_key: dict[str, CaseResult]) -> str:
    def share(value: float, of: float) -> str:
        return f"{value / of:.0%}" if of > 0 else "n/a"

    influx = by_key.get("influx")
    if r.key.startswith("broker"):
        return f"ceiling; {share(r.rate, EXPECTED_BROKER)} of the expected ~{EXPECTED_BROKER:,}"
    if r.key == "influx":
        return f"ceiling; {share(r.rate, EXPECTED_INFLUX)} of the expected ~{EXPECTED_INFLUX:,}"
    parts = []
    broker = by_key.get(f"broker_{r.key.removesuffix('_baseline')}")
    if broker is not None:
        parts.append(f"{share(r.message_rate, broker.rate)} of broker fan-in (msg/s)")
    if influx is not None:
        parts.append(f"{share(r.rate, influx.rate)} of InfluxDB (points/s)")
    return "; ".join(parts)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def report(results: Sequence[CaseResult], pack_size: int, poll_s: float) -> str:
    by_key = {r.key: r for r in results}
    main_rows = [
        [
            r.name,
            f"{r.sent:,}",
            stored_cell(r),
            seconds_cell(r),
            f"{r.rate:,.0f}",
            r.unit,
            vs_ceiling(r, by_key),
            f"{r.rss_mb:.0f}" if r.rss_mb is not None else "-",
        ]
        for r in results
    ]
    out = [
        markdown_table(
            ["case", "sent", "stored", "seconds", "rate", "unit", "vs ceiling", "peak RSS MB"],
            main_rows,
        ),
        "",
        "Messages and publishers (publishers alone: start of the first mosquitto_pub until the"
        " last has its final PUBACK):",
        "",
    ]
    message_rows = [
        [
            r.name,
            f"{r.messages:,}",
            f"{r.message_rate:,.0f}",
            f"{r.publish_seconds:.2f}" if r.publish_seconds is not None else "-",
            f"{r.messages / r.publish_seconds:,.0f}" if r.publish_seconds else "-",
        ]
        for r in results
    ]
    out.append(
        markdown_table(
            ["case", "messages / requests", "per s end to end", "publishers s", "published/s"],
            message_rows,
        )
    )
    names = ["mosquitto", "influxd", "ingest", "bench", "clients", "other", "machine"]
    cpu_rows = [
        [r.key, f"{r.seconds:.1f}"]
        + [r.cpu[n].as_text() if n in r.cpu else "-" for n in names]
        + [f"{r.cpu['steal'].cores:.2f}" if "steal" in r.cpu else "-"]
        for r in results
    ]
    out += [
        "",
        "CPU in cores (1.00 = one core busy; 2 is all of this machine), average over the"
        " timed window, (peak) = busiest 0.5 s. clients = mosquitto_pub/_sub;"
        " bench = this script (InfluxDB case: the HTTP writer); other = the rest of the"
        " machine (other users of a shared box).",
        "",
        markdown_table(["case", "wall s", *names, "steal"], cpu_rows),
        "",
        "Targets:",
    ]
    for key, target, what in (
        ("native", TARGET_NATIVE, "one reading per message"),
        ("senml", TARGET_PACKED, f"SenML packs of {pack_size}"),
    ):
        r = by_key.get(key)
        if r is None:
            continue
        verdict = "met" if r.rate >= target and not r.lost else "NOT met"
        out.append(f"- >= {target:,} readings/s, {what}: {r.rate:,.0f} -> {verdict}")
    for key, expected, what in (
        ("broker", EXPECTED_BROKER, "msg/s broker"),
        ("influx", EXPECTED_INFLUX, "points/s InfluxDB"),
    ):
        r = by_key.get(key)
        if r is not None:
            out.append(
                f"- issue's expected ceiling ~{expected:,} {what}: measured {r.rate:,.0f}"
                f" ({r.rate / expected:.0%})"
            )
    out.append(
        f"- end-to-end times are read from influxd's points-written counter for the case's"
        f" database every {COUNTER_POLL_S} s, confirmed by a count query once it reaches the"
        f" total (else by polling the count every {poll_s} s, then ever faster down to every"
        f" {FINE_POLL_S} s: bench.stored_count); a time is when the read that saw everything"
        " returned, and (-N ms) is how much earlier it may have got there: the polling's"
        " whole error, never in Pantau's favour"
    )
    return "\n".join(out)


def _version(argv: Sequence[str], needle: str = "version") -> str:
    """The first output line of `argv` that holds `needle`."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"unknown ({err})"
    lines = (done.stdout + done.stderr).splitlines()
    return next((line.strip() for line in lines if needle in line), "unknown")


def machine_info() -> dict[str, object]:
    model = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadavg_at_start": os.getloadavg(),
        "mosquitto": _version([find_executable("mosquitto"), "-h"]),
        "mosquitto_pub": _version(["mosquitto_pub", "--help"]),
        "influxd": _version([find_executable("influxd"), "version"], "InfluxDB"),
    }


def _rounded(value: object) -> object:
    return round(value, 3) if isinstance(value, float) else value


def results_document(
    results: Sequence[CaseResult],
    *,
    sizes: dict[str, int],
    quick: bool,
    poll_s: float,
    machine: dict[str, object],
    command: str | None = None,
) -> dict[str, object]:
    cases = []
    for r in results:
        case = {k: _rounded(v) for k, v in asdict(r).items() if k != "cpu"}
        case |= {"lost": r.lost, "rate": round(r.rate), "message_rate": round(r.message_rate)}
        case["cpu"] = {
            name: {k: _rounded(v) for k, v in asdict(use).items()} for name, use in r.cpu.items()
        }
        cases.append(case)
    return {
        "benchmark": "bench.ingest",
        "command": command or "uv run python -m bench.ingest" + (" --quick" if quick else ""),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine,
        "sizes": sizes,
        "targets_readings_per_s": {"native": TARGET_NATIVE, "packed": TARGET_PACKED},
        "expected_ceilings": {
            "broker_msg_per_s": EXPECTED_BROKER,
            "influx_points_per_s": EXPECTED_INFLUX,
        },
        "poll_s": poll_s,
        "fine_poll_s": FINE_POLL_S,
        "cases": cases,
    }
