"""The rules replicas' figures as a plot: CPU per reading and p99 publish -> crew alert
against the offered rate, one line per replica count (bench.rules_replicas draws it
beside its JSON; `uv run python -m bench.replicas_plot RESULTS.json` redraws one).
A run whose alerts did not all come is drawn as a cross: a failure, not a figure."""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on the bench machine
import matplotlib.pyplot as plt

P99_TARGET_MS = 500.0  # issue 19, at 5,000 readings/s with 2 replicas


def _complete(run: Mapping[str, object]) -> bool:
    got, _, want = str(run.get("alerts", "0/1")).partition("/")
    return got == want


def plot_rules_replicas(runs: Sequence[Mapping[str, object]], path: Path, title: str) -> None:
    by_n: dict[int, list[Mapping[str, object]]] = defaultdict(list)
    for r in runs:
        by_n[int(str(r["replicas"]))].append(r)
    fig, (cpu, lat) = plt.subplots(1, 2, figsize=(11, 4.2))
    for n, unsorted in sorted(by_n.items()):
        rows = sorted(unsorted, key=lambda r: float(str(r["offered_per_s"])))
        label = f"{n} replica{'s' if n > 1 else ''}"
        ok = [r for r in rows if _complete(r)]
        rates = [float(str(r["offered_per_s"])) for r in ok]
        line = cpu.plot(
            rates, [float(str(r["cpu_s_per_1k_readings"])) for r in ok], marker="o", label=label
        )
        lat.plot(
            rates,
            [float(str(r["p99_ms"])) for r in ok],
            marker="o",
            label=label,
            color=line[0].get_color(),
        )
        for r in rows:
            if not _complete(r):
                lat.plot(
                    float(str(r["offered_per_s"])),
                    P99_TARGET_MS,
                    marker="x",
                    ms=12,
                    color=line[0].get_color(),
                )
    cpu.set(
        xlabel="offered readings/s",
        ylabel="CPU-s per 1,000 readings, all replicas",
        xscale="log",
        title="CPU per reading",
    )
    lat.axhline(P99_TARGET_MS, color="grey", ls="--", lw=1, label="target p99 500 ms")
    lat.set(
        xlabel="offered readings/s",
        ylabel="p99 publish -> crew alert, ms",
        xscale="log",
        yscale="log",
        title="p99 publish -> crew alert",
    )
    for ax in (cpu, lat):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: Sequence[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m bench.replicas_plot RESULTS.json", file=sys.stderr)
        return 2
    src = Path(argv[0])
    runs = json.loads(src.read_text())["runs"]
    out = src.with_suffix(".png")
    plot_rules_replicas(runs, out, f"rules replicas ({src.stem})")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
