"""bench.suite's outputs: the targets verdicts, the Markdown page and the two PNG plots.

Pure functions of measured results (no measuring here), so they can be unit-tested.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on the bench machine
import matplotlib.pyplot as plt

from bench.ingest_report import CaseResult, markdown_table
from bench.load import NODERED, PANTAU_NATIVE, PANTAU_SENML, LoadPoint

PEER_FACTOR = 3.0  # Pantau >= 3x the Node-RED flow's sustained throughput
CEILING_FACTOR = 0.5  # packed Pantau >= 0.5x the lower ceiling


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

    @property
    def complete(self) -> bool:
        return self.alerts == self.injections


def peak(points: Sequence[LoadPoint], system: str) -> LoadPoint | None:
    """The best sustained point of a consumer among those that lost nothing."""
    ok = [p for p in points if p.system == system and not p.lost]
    return max(ok, key=lambda p: p.throughput, default=None)


def verdicts(cases: Sequence[CaseResult], points: Sequence[LoadPoint]) -> list[Verdict]:
    by_key = {c.key: c for c in cases}
    out = []
    pantau, peer = peak(points, PANTAU_NATIVE), peak(points, NODERED)
    pantau_lost = [p for p in points if p.system == PANTAU_NATIVE and p.lost]
    target = f"Pantau ingest >= {PEER_FACTOR:g}x Node-RED sustained, zero loss (load sweep)"
    if pantau is None or peer is None:
        out.append(Verdict(target, "not measured (no lossless point of one of them)", None))
    else:
        ratio = pantau.throughput / peer.throughput
        lost = f"; {len(pantau_lost)} Pantau point(s) LOST" if pantau_lost else ", zero loss"
        out.append(
            Verdict(
                target,
                f"{pantau.throughput:,.0f} vs {peer.throughput:,.0f} readings/s (peaks at "
                f"{pantau.offered:,.0f} and {peer.offered:,.0f}/s offered) = {ratio:.1f}x{lost}",
                ratio >= PEER_FACTOR and not pantau_lost,
            )
        )
    native, nodered = by_key.get("native"), by_key.get("nodered")
    target = f"the same, burst of one payload set (bench.ingest cases), >= {PEER_FACTOR:g}x"
    if native is None or nodered is None:
        out.append(Verdict(target, "not measured", None))
    else:
        any_lost = native.lost or nodered.lost
        ratio = native.rate / nodered.rate if nodered.rate > 0 else float("inf")
        out.append(
            Verdict(
                target,
                f"{native.rate:,.0f} vs {nodered.rate:,.0f} readings/s = {ratio:.1f}x"
                + (" (a case LOST data)" if any_lost else ""),
                ratio >= PEER_FACTOR and not native.lost,
            )
        )
    broker, influx, senml = by_key.get("broker"), by_key.get("influx"), by_key.get("senml")
    target = (
        f"Pantau SenML >= {CEILING_FACTOR:g}x the lower ceiling (broker msg/s, InfluxDB points/s)"
    )
    if broker is None or influx is None or senml is None:
        out.append(Verdict(target, "not measured", None))
    else:
        lower = min(broker.rate, influx.rate)
        which = "broker" if broker.rate <= influx.rate else "InfluxDB"
        out.append(
            Verdict(
                target,
                f"{senml.rate:,.0f} readings/s vs {which} {lower:,.0f}/s"
                f" = {senml.rate / lower:.2f}x" + (" (LOST data)" if senml.lost else ""),
                senml.rate >= CEILING_FACTOR * lower and not senml.lost,
            )
        )
    return out


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
        ]
        for p in points
    ]
    header = ["offered readings/s", "achieved /s", "alerts", "p50 ms", "p99 ms"]
    return markdown_table(header, rows)


# --- plots ------------------------------------------------------------------------------

STYLE: Mapping[str, tuple[str, str]] = {
    PANTAU_NATIVE: ("tab:blue", "o"),
    PANTAU_SENML: ("tab:green", "s"),
    NODERED: ("tab:red", "^"),
}


def plot_throughput(
    points: Sequence[LoadPoint], ceilings: Mapping[str, float], title: str, path: Path
) -> None:
    """Sustained readings/s against offered readings/s, log-log; LOST points as crosses
    at the offered rate (no figure for them); ceilings as horizontal lines."""
    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=110)
    offered = [p.offered for p in points] or [1.0]
    lo, hi = min(offered) / 1.5, max(offered) * 1.5
    ax.plot([lo, hi], [lo, hi], color="0.7", linestyle=":", label="stored = offered")
    for system, (color, marker) in STYLE.items():
        mine = [p for p in points if p.system == system]
        ok = sorted((p for p in mine if not p.lost), key=lambda p: p.offered)
        if ok:
            ax.plot(
                [p.offered for p in ok],
                [p.throughput for p in ok],
                color=color,
                marker=marker,
                label=f"{system}, sustained",
            )
        lost = [p for p in mine if p.lost]
        if lost:
            ax.scatter(
                [p.offered for p in lost],
                [p.offered for p in lost],
                color=color,
                marker="x",
                s=90,
                label=f"{system}: LOST data (failure, no figure)",
            )
    for (name, value), style in zip(ceilings.items(), ("--", "-."), strict=False):
        ax.axhline(value, color="0.3", linestyle=style, linewidth=1)
        ax.text(lo * 1.05, value * 1.08, f"ceiling: {name} {value:,.0f}/s", fontsize=8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("offered load, readings/s")
    ax.set_ylabel("sustained throughput, readings/s stored in InfluxDB")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_latency(points: Sequence[LatencyPoint], title: str, path: Path) -> None:
    """p50 / p99 reading -> crew alert (publish -> alert) against background load."""
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
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
