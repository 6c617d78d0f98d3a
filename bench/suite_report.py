"""bench.suite's outputs: the targets verdicts, the Markdown page and the two PNG plots.

Pure functions of measured results (no measuring here), so they can be unit-tested.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on the bench machine
import matplotlib.pyplot as plt

from bench.ingest_report import CaseResult, markdown_table
from bench.knee import NODERED, PANTAU_NATIVE, PANTAU_SENML, Curve

# Issue 21's targets.
BROKER_SHARE = 0.6  # Pantau native msg/s >= 0.6x the broker fan-in ceiling, same run
INFLUX_SHARE = 0.6  # Pantau SenML readings/s >= 0.6x the InfluxDB /write ceiling
RULES_PER_CPU_S = 15_000  # rules service readings per CPU-second ...
RULES_P99_MS = 250.0  # ... with p99 publish -> crew alert under this
RULES_AT = 2_000  # ... readings/s: the reference point for the CPU figure
PEER_FACTOR = 8.0  # Pantau native >= 8x Node-RED's highest lossless sustained rate


@dataclass(frozen=True, slots=True)
class Verdict:
    target: str
    measured: str
    met: bool | None  # None: not measured in this run


@dataclass(frozen=True, slots=True)
class LatencyPoint:
    offered: float
    achieved: float
    alerts: int
    injections: int
    p50_ms: float
    p99_ms: float
    rules_cores: float = float("nan")  # the rules service's CPU over the run
    sustained: bool | None = None  # the bench's judgement; None: complete and p99 < bound
    readings_per_cpu_s: float | None = None  # the bench's (background + injected readings)

    @property
    def complete(self) -> bool:
        return self.alerts == self.injections

    @property
    def kept_up(self) -> bool:
        if self.sustained is not None:
            return self.sustained
        return self.complete and self.p99_ms < RULES_P99_MS

    @property
    def per_cpu_s(self) -> float:
        """Readings the service handled per CPU-second of its own."""
        if self.readings_per_cpu_s is not None:
            return self.readings_per_cpu_s
        return self.achieved / self.rules_cores if self.rules_cores > 0 else float("nan")

    def why_not(self) -> str:
        """Why a rate was not sustained."""
        if not self.complete:
            return f"missing alerts at {self.offered:,.0f}/s ({self.alerts}/{self.injections})"
        if not self.p99_ms < RULES_P99_MS:
            return f"p99 {self.p99_ms:,.0f} ms at {self.offered:,.0f}/s"
        return f"load generator short at {self.offered:,.0f}/s ({self.achieved:,.0f}/s)"


def ingest_verdicts(cases: Sequence[CaseResult]) -> list[Verdict]:
    """The burst cases of `bench.ingest`, against the ceilings measured beside them."""
    by_key = {c.key: c for c in cases}
    out = []
    native, fan_in = by_key.get("native"), by_key.get("broker_native")
    target = (
        f"Pantau ingest, one reading per message, >= {BROKER_SHARE:g}x the broker fan-in "
        "ceiling (msg/s), zero loss"
    )
    if native is None or fan_in is None or fan_in.rate <= 0:
        out.append(Verdict(target, "not measured", None))
    else:
        ratio = native.message_rate / fan_in.rate
        bound = native.rate_bound / native.rate * ratio  # one reading per message
        out.append(
            Verdict(
                target,
                f"{native.message_rate:,.0f} vs {fan_in.rate:,.0f} msg/s = {ratio:.2f}x"
                + _polling(native, bound)
                + (" (Pantau LOST data)" if native.lost or fan_in.lost else ""),
                ratio >= BROKER_SHARE and not native.lost and not fan_in.lost,
            )
        )
    senml, influx = by_key.get("senml"), by_key.get("influx")
    target = f"Pantau SenML packs of 50 >= {INFLUX_SHARE:g}x the InfluxDB ceiling, zero loss"
    if senml is None or influx is None or influx.rate <= 0:
        out.append(Verdict(target, "not measured", None))
    else:
        ratio = senml.rate / influx.rate
        out.append(
            Verdict(
                target,
                f"{senml.rate:,.0f} readings/s vs {influx.rate:,.0f} points/s = {ratio:.2f}x"
                + _polling(senml, senml.rate_bound / influx.rate)
                + (" (Pantau LOST data)" if senml.lost or influx.lost else ""),
                ratio >= INFLUX_SHARE and not senml.lost and not influx.lost,
            )
        )
    return out


def _polling(case: CaseResult, bound: float) -> str:
    """The count polling's error on a ratio judged at the conservative end."""
    if case.resolution_s is None:
        return ""
    return f" (<= {bound:.2f}x: stored up to {case.resolution_s * 1000:.0f} ms before seen)"


def _per_cpu(p: LatencyPoint) -> str:
    """NaN (alerts missing: the service had not read everything) as not measured."""
    return "-/CPU-s" if math.isnan(p.per_cpu_s) else f"{p.per_cpu_s:,.0f}/CPU-s"


def rules_verdict(latency: Sequence[LatencyPoint]) -> Verdict:
    """Readings per CPU-second at RULES_AT readings/s (else at the highest rate kept up
    with), the highest rate sustained (p99 under the bound, every alert in) with every
    lower rate sustained too, and what stopped the ladder."""
    target = (
        f"rules service >= {RULES_PER_CPU_S:,} readings per CPU-second at {RULES_AT:,}/s, "
        f"p99 publish -> crew alert < {RULES_P99_MS:g} ms at every rate up to the highest "
        "sustained"
    )
    points = sorted(latency, key=lambda p: p.offered)
    complete = [p for p in points if p.complete]
    if not complete:
        return Verdict(target, "not measured (no rate with every alert)", None)
    highest: LatencyPoint | None = None
    for p in points:  # the ladder up to its first rate not sustained
        if not p.kept_up:
            break
        highest = p
    at = [p for p in points if p.offered == RULES_AT]
    ref = at[0] if at else complete[-1]
    parts = [
        f"{ref.per_cpu_s:,.0f} readings/CPU-s at {ref.offered:,.0f}/s "
        f"({ref.rules_cores:.2f} cores) = {ref.per_cpu_s / RULES_PER_CPU_S:.2f}x the target",
        "highest sustained " + ("none" if highest is None else f"{highest.offered:,.0f}/s"),
        "per rate "
        + ", ".join(f"{p.offered:,.0f}/s {_per_cpu(p)} p99 {p.p99_ms:,.0f} ms" for p in points),
    ]
    failed = [p for p in points if not p.kept_up]
    if failed:
        parts.append("stopped: " + "; ".join(p.why_not() for p in failed))
    met = (
        highest is not None
        and highest.offered >= ref.offered
        and ref.kept_up
        and ref.per_cpu_s >= RULES_PER_CPU_S
    )
    return Verdict(target, "; ".join(parts), met)


def sweep_verdict(curves: Sequence[Curve], cases: Sequence[CaseResult]) -> list[Verdict]:
    """Pantau native's highest lossless sustained rate against Node-RED's; the bursts of
    the same payloads as a second opinion."""
    by_system = {c.system: c for c in curves}
    pantau, peer = by_system.get(PANTAU_NATIVE), by_system.get(NODERED)
    target = (
        f"load sweep: Pantau native >= {PEER_FACTOR:g}x Node-RED's highest lossless "
        "sustained rate, one reading per message"
    )
    out = []
    mine = None if pantau is None else pantau.best
    theirs = None if peer is None else peer.best
    if pantau is None or peer is None or mine is None or theirs is None:
        out.append(Verdict(target, "not measured (no lossless point of one of them)", None))
    else:
        ratio = mine.throughput / theirs.throughput
        bound = "" if pantau.consumer_stopped else " (Pantau did not reach its knee: a lower bound)"
        lost = [p for p in pantau.points if p.lost]
        out.append(
            Verdict(
                target,
                f"{mine.throughput:,.0f} vs {theirs.throughput:,.0f} readings/s (at "
                f"{mine.offered:,.0f} and {theirs.offered:,.0f}/s offered) = {ratio:.1f}x"
                + bound
                + (f"; Pantau LOST data at {lost[0].offered:,.0f}/s" if lost else ""),
                ratio >= PEER_FACTOR,
            )
        )
    by_key = {c.key: c for c in cases}
    native, nodered = by_key.get("native"), by_key.get("nodered")
    target = f"the same, burst of one payload set at once (bench.ingest), >= {PEER_FACTOR:g}x"
    if native is None or nodered is None:
        out.append(Verdict(target, "not measured", None))
    elif native.lost:
        out.append(Verdict(target, f"{native.sent:,} readings: Pantau LOST data", False))
    elif nodered.lost:  # no ratio to a figure that is not one; not Pantau's failure
        out.append(
            Verdict(
                target,
                f"{native.sent:,} readings: Pantau stored all at {native.rate:,.0f}/s; "
                f"Node-RED LOST {nodered.sent - nodered.stored:,} (no ratio)",
                None,
            )
        )
    else:
        ratio = native.rate / nodered.rate if nodered.rate > 0 else float("inf")
        out.append(
            Verdict(
                target,
                f"{native.sent:,} readings: {native.rate:,.0f} vs {nodered.rate:,.0f} "
                f"readings/s = {ratio:.1f}x",
                ratio >= PEER_FACTOR,
            )
        )
    return out


def verdicts(
    cases: Sequence[CaseResult], curves: Sequence[Curve], latency: Sequence[LatencyPoint]
) -> list[Verdict]:
    return [*ingest_verdicts(cases), rules_verdict(latency), *sweep_verdict(curves, cases)]


def verdict_table(items: Sequence[Verdict]) -> str:
    mark = {True: "met", False: "**NOT met**", None: "not measured"}
    return markdown_table(
        ["target", "measured", "verdict"], [[v.target, v.measured, mark[v.met]] for v in items]
    )


def latency_table(points: Sequence[LatencyPoint]) -> str:
    rows = [
        [
            f"{p.offered:,.0f}",
            f"{p.achieved:,.0f}",
            f"{p.alerts}/{p.injections}" + ("" if p.complete else " MISSING"),
            f"{p.p50_ms:,.0f}",
            f"{p.p99_ms:,.0f}",
            f"{p.rules_cores:.2f}",
            f"{p.per_cpu_s:,.0f}",
        ]
        for p in points
    ]
    header = [
        "offered readings/s",
        "achieved /s",
        "alerts",
        "p50 ms",
        "p99 ms",
        "rules cores",
        "readings per rules CPU-s",
    ]
    return markdown_table(header, rows)


# --- plots ------------------------------------------------------------------------------

STYLE: Mapping[str, tuple[str, str]] = {
    PANTAU_NATIVE: ("tab:blue", "o"),
    PANTAU_SENML: ("tab:green", "s"),
    NODERED: ("tab:red", "^"),
}


def plot_throughput(
    curves: Sequence[Curve],
    bursts: Sequence[CaseResult],
    ceilings: Mapping[str, float],
    title: str,
    path: Path,
) -> None:
    """Left: sustained readings/s against offered readings/s, log-log, one curve per
    consumer up to the point that stopped it; each consumer's highest lossless sustained
    point ringed and labelled (its knee's last good point); a failing point as a cross
    (lost data: at the offered rate, no figure) or a hollow marker (lagged > 5 s: at what
    it stored); a curve the publishers' cap ended, with an arrow. Ceilings as horizontal
    lines. Right: the bursts beside it, readings/s per consumer; a consumer that lost
    readings as a hatched bar (what it stored per second until the bench stopped waiting,
    not a figure) labelled LOST with its counts."""
    fig, (ax, bx) = plt.subplots(
        1, 2, figsize=(11, 5.8), dpi=110, gridspec_kw={"width_ratios": [3, 1]}
    )
    points = [p for c in curves for p in c.points]
    offered = [p.offered for p in points] or [1.0]
    lo, hi = min(offered) / 1.5, max(offered) * 1.5
    ax.plot([lo, hi], [lo, hi], color="0.7", linestyle=":", label="stored = offered")
    for curve in curves:
        color, marker = STYLE.get(curve.system, ("0.3", "o"))
        ok = [p for p in curve.points if not p.failed]
        if ok:
            ax.plot(
                [p.offered for p in ok],
                [p.throughput for p in ok],
                color=color,
                marker=marker,
                label=f"{curve.system}, sustained",
            )
        best = curve.best
        if best is not None:
            ax.scatter(
                [best.offered], [best.throughput], s=260, facecolors="none", edgecolors=color
            )
            ax.annotate(
                f"{best.throughput:,.0f}/s",
                (best.offered, best.throughput),
                xytext=(-10, 12),
                textcoords="offset points",
                ha="right",
                fontsize=8,
                color=color,
            )
        knee = curve.knee
        if knee is not None and knee.lost:
            ax.scatter(
                [knee.offered],
                [knee.offered],
                color=color,
                marker="x",
                s=110,
                label=f"{curve.system}: LOST data at {knee.offered:,.0f}/s (failure, no figure)",
            )
        elif knee is not None:
            ax.scatter(
                [knee.offered],
                [knee.throughput],
                facecolors="none",
                edgecolors=color,
                marker=marker,
                s=90,
                label=f"{curve.system}: lagged > 5 s at {knee.offered:,.0f}/s (knee)",
            )
        elif best is not None and curve.error is None:
            ax.annotate(
                "capped by the publishers",
                (best.offered, best.throughput),
                xytext=(18, -4),
                textcoords="offset points",
                fontsize=7,
                color=color,
                arrowprops={"arrowstyle": "<-", "color": color},
            )
    for (name, value), style in zip(ceilings.items(), ("--", "-.", ":"), strict=False):
        ax.axhline(value, color="0.3", linestyle=style, linewidth=1)
        ax.text(lo * 1.05, value * 1.08, f"ceiling: {name} {value:,.0f}/s", fontsize=8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("offered load, readings/s")
    ax.set_ylabel("sustained throughput, readings/s stored in InfluxDB")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(0.0, 0.66))  # under the ceilings
    names = {"native": PANTAU_NATIVE, "nodered": NODERED, "senml": PANTAU_SENML}
    shown = [c for c in bursts if c.key in names]
    heights = [c.rate for c in shown if c.rate > 0]
    floor = min(heights) / 3 if heights else 1.0  # every bar's foot above the log axis's
    for i, case in enumerate(shown):
        color = STYLE.get(names[case.key], ("0.3", "o"))[0]
        if case.lost:  # a failure, not a figure: hatched, labelled with its counts
            top = max(case.rate, floor)
            bx.bar(i, top, color="none", edgecolor=color, hatch="//")
            label = f"LOST {case.sent - case.stored:,}\nof {case.sent:,}\nstored {case.stored:,}"
            bx.text(i, top, label, ha="center", va="bottom", fontsize=8, color=color)
            continue
        bx.bar(i, case.rate, color=color)
        bx.text(i, case.rate, f"{case.rate:,.0f}", ha="center", va="bottom", fontsize=8)
    bx.set_xticks(range(len(shown)), [names[c.key].replace(" ", "\n") for c in shown], fontsize=8)
    if heights:  # a log axis of no bar cannot be drawn
        bx.set_yscale("log")
        # Room above the tallest bar for its label (three lines for a lost case).
        bx.set_ylim(floor, max(heights) * 8)
    sizes = sorted({c.sent for c in shown})
    bx.set_title("burst: " + " / ".join(f"{s:,}" for s in sizes) + " readings at once", fontsize=9)
    bx.set_ylabel("readings/s until all stored")
    bx.grid(True, axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_latency(points: Sequence[LatencyPoint], title: str, path: Path) -> None:
    """p50 / p99 reading -> crew alert (publish -> alert) against background load."""
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    if not points:  # the stage failed or did not run: say so rather than plot nothing
        ax.text(0.5, 0.5, "no alert latency measured in this run", ha="center", va="center")
        ax.set_axis_off()
        ax.set_title(title, fontsize=10)
        fig.savefig(path)
        plt.close(fig)
        return
    ordered = sorted(points, key=lambda p: p.offered)
    x = [p.offered for p in ordered]
    ax.plot(x, [p.p50_ms for p in ordered], marker="o", label="p50")
    ax.plot(x, [p.p99_ms for p in ordered], marker="s", label="p99")
    ax.axhline(250, color="0.4", linestyle="--", linewidth=1, label="target p99 250 ms")
    ax.set_xscale("log")
    ax.set_xlabel("offered background load, readings/s")
    ax.set_ylabel("reading -> crew alert, ms (publish -> alert arrival)")
    ax.set_ylim(bottom=0)
    failed = [p for p in ordered if not p.complete]
    if failed:  # no percentile to draw for them: a cross near the top, and the count
        top = ax.get_ylim()[1] * 0.9
        ax.scatter([p.offered for p in failed], [top] * len(failed), color="red", marker="x")
        for p in failed:
            ax.annotate(f"FAILED: {p.alerts}/{p.injections} alerts", (p.offered, top), fontsize=8)
        ax.set_xlim(min(x) / 1.5, max(x) * 1.5)
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
