"""The rules service's highest sustained rate in one service run: a staircase of rates.

`bench.rules_latency` gives each rate its own service and waits out the 2-minute hold of
flood-water-level for every one (over 2 minutes a rate). Here one service takes the whole
ladder: `warmup_s` at the first rate, then each rate for `step_s`, doubling after the
rates given (`until_fail`) until a step is not sustained. Each step has its own
`injections` stations (one per kelurahan, none shared with another step), whose
ACTIVE-making readings are spread over the step's middle 60 %: its first 20 % lets the
new rate settle. A station's first 12 breaching readings (device times 2 min to 10 s
before the 13th) are published together BACKDATE_S before it: threshold rules are
series-local and judged on arrival, within the 24 h horizon, so the 13th reading makes
the condition ACTIVE as it does after a real-time hold, and publish -> alert is timed on
that reading as in `bench.rules_latency`.

A step is judged GRACE_S after it ends (the next rate has begun): sustained when every
alert of its stations came, p99 publish -> alert < 250 ms and the load generator
delivered >= 95 % of the rate (RunResult.sustained). An alert not in by then is missing:
the service lags. The first step that is not sustained ends the run. Per step: the
readings written in its window, the CPU seconds of the rules process, mosquitto and this
process over the same window (from /proc, read at the step's edges), readings per rules
CPU-second = (background + 13 per station) / rules CPU s.

    uv run python -m bench.rules --only alert_latency --rates 500 --until-fail --step-s 15
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.cpu import CpuWatch, process_cpu_s
from bench.rules_latency import (
    HOLD_STEP_S,
    IDLE_S,
    MAX_RATE,
    Background,
    Injection,
    LatencyArgs,
    Rig,
    RunResult,
    inject,
    match_alerts,
    percentile,
    pick_stations,
    stop_service,
)
from pantau.city import City
from pantau.local import LocalStack

BACKDATE_S = 1.0  # a station's first 12 readings go this long before its 13th
GRACE_S = 2.0  # a step is judged this long after it ends (alerts still in flight)
SETTLE_SHARE = 0.2  # of a step, before its first injection (the new rate settles)
SPREAD_SHARE = 0.6  # of a step, over which its injections are spread


@dataclass(frozen=True, slots=True)
class Stairs:
    rates: tuple[int, ...]
    lead_s: float  # at rates[0] before the first step
    step_s: float

    def start_of(self, k: int) -> float:
        """Step k's start, in seconds from the load's start."""
        return self.lead_s + k * self.step_s

    def offered(self, elapsed: float) -> float:
        """Readings due in the load's first `elapsed` seconds (the last rate goes on)."""
        total = self.rates[0] * min(elapsed, self.lead_s)
        for k, rate in enumerate(self.rates):
            begin = self.start_of(k)
            if elapsed <= begin:
                break
            end = begin + self.step_s if k < len(self.rates) - 1 else math.inf
            total += rate * (min(elapsed, end) - begin)
        return total

    def active_at(self, k: int, i: int, n: int) -> float:
        """Offset of step k's i-th (of n) ACTIVE-making reading from the load's start."""
        spread = SPREAD_SHARE * self.step_s
        return self.start_of(k) + SETTLE_SHARE * self.step_s + spread * i / max(1, n - 1)


def ladder(la: LatencyArgs, stations: int) -> tuple[int, ...]:
    """The rates given, then (until_fail) doubling up to MAX_RATE; as many steps as there
    are kelurahans with a station for each of their injections."""
    rates = list(la.rates)
    while la.until_fail and rates[-1] * 2 <= MAX_RATE:
        rates.append(rates[-1] * 2)
    return tuple(rates[: max(1, stations // la.injections)])


@dataclass(slots=True)
class Edge:
    """The load at a step's edge: wall time, readings written, CPU seconds per process."""

    at: float
    written: int
    cpu_s: dict[str, float]


def edge(background: Background, pids: dict[str, int]) -> Edge:
    cpu = {name: process_cpu_s(pid) for name, pid in pids.items()}
    return Edge(
        time.time(), sum(background.written), {k: v for k, v in cpu.items() if v is not None}
    )


def wait_until(at: float, each: Callable[[], None]) -> None:
    while (left := at - time.time()) > 0:
        time.sleep(min(0.25, left))
        each()


def run_stairs(
    stack: LocalStack,
    city: City,
    la: LatencyArgs,
    lateness_s: float,
    work: Path,
    progress: Callable[[str], None],
) -> tuple[list[RunResult], int | None]:
    """One RunResult per step (until_fail: up to the first not sustained); the service's
    message count from its stop log."""
    n = la.injections
    rates = ladder(la, len(pick_stations(city, 10**6)))
    stairs = Stairs(rates, la.warmup_s, la.step_s)
    stations = pick_stations(city, n * len(rates))
    rig = Rig.start(stack, city, stations, work, la.service_tree, "bs")
    topics, devices, service, log = rig.topics, rig.devices, rig.service, rig.log
    listener, background, pids = rig.listener, rig.background, rig.pids
    stop = threading.Event()
    results: list[RunResult] = []
    steps: list[list[Injection]] = []
    try:
        with CpuWatch({"rules": service.pid}) as quiet:
            time.sleep(IDLE_S)
        idle = quiet.result()["rules"].cores
        background.start_curve(stairs.offered)
        t0 = background.started
        for k in range(len(rates)):
            mine = stations[k * n : (k + 1) * n]
            steps.append(
                [
                    Injection(d, round(t0 + stairs.active_at(k, i, n) - 12 * HOLD_STEP_S, 3))
                    for i, d in enumerate(mine)
                ]
            )
        everyone = [i for step in steps for i in step]
        injector = threading.Thread(
            target=inject, args=(stack, topics, everyone, stop, BACKDATE_S), daemon=True
        )
        injector.start()
        progress(
            f"  stairs: {len(devices)} background devices, {n} stations a step, rates "
            + ", ".join(f"{r:,}" for r in rates)
            + f"/s, {la.step_s:g} s each after {la.warmup_s:g} s at {rates[0]:,}/s"
        )

        def look() -> None:
            match_alerts(everyone, listener.received)

        wait_until(t0 + stairs.start_of(0), look)
        begin = edge(background, pids)
        for k, rate in enumerate(rates):
            end_at = t0 + stairs.start_of(k + 1)
            wait_until(end_at, look)
            end = edge(background, pids)
            wait_until(end_at + GRACE_S, look)
            results.append(step_result(rate, lateness_s, len(devices), steps[k], begin, end, idle))
            r = results[-1]
            progress(
                f"  {rate:,}/s: {r.readings_per_cpu_s:,.0f} readings per rules CPU s, p99 "
                f"{percentile(r.publish_to_alert_ms(), 99):,.0f} ms, "
                f"{len(r.publish_to_alert_ms())}/{n} alerts, achieved {r.achieved:,.0f}/s, "
                f"{'sustained' if r.sustained else 'NOT sustained'}"
            )
            begin = end
            if la.until_fail and not r.sustained:
                break
        stop.set()
        background.stop()
        injector.join()
    finally:
        stop.set()
        messages = stop_service(service, log)
        listener.close()
        stack.drop_database(rig.database)
    if results:
        results[-1].service_log = log.read_text(errors="replace")[-3000:]
    return results, messages


def step_result(
    rate: int,
    lateness_s: float,
    devices: int,
    injections: list[Injection],
    begin: Edge,
    end: Edge,
    idle: float,
) -> RunResult:
    wall = max(end.at - begin.at, 1e-9)
    cpu_s = {k: end.cpu_s[k] - begin.cpu_s[k] for k in end.cpu_s if k in begin.cpu_s}
    return RunResult(
        rate=rate,
        lateness_s=lateness_s,
        background_devices=devices,
        load_s=wall,
        written=end.written - begin.written,
        service_messages=None,  # one service for all steps: its total is in the notes
        injections=injections,
        cpu={k: v / wall for k, v in cpu_s.items()},
        cpu_s=cpu_s,
        loadavg=os.getloadavg(),
        idle_cores=idle,
    )


def notes(la: LatencyArgs, messages: int | None) -> list[str]:
    return [
        f"Staircase (bench.rules_stairs): one service; {la.warmup_s:g} s at the first rate, "
        f"then each rate for {la.step_s:g} s"
        + (", doubling until a step is not sustained" if la.until_fail else "")
        + f". Each step has its own {la.injections} stations; a station's first 12 breaching "
        f"readings (device times 2 min to 10 s before the 13th) go {BACKDATE_S:g} s before "
        "the 13th, so no step waits out raise_for. A step is judged "
        f"{GRACE_S:g} s after its end: an alert not in by then is missing (the service lags). "
        "CPU, readings and 'achieved' are the step's window; 'service msgs' is the run's "
        f"total: {'?' if messages is None else f'{messages:,}'}.",
    ]
