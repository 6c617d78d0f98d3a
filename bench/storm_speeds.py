"""`python -m bench.storm_speeds [--quick] [--loops N] [--scenario NAME]`: the same
incidents at any speed and load (issue 18). Not in CI: the full loop plays the two-hour
storm in real time.

Each run starts a fresh rules service (its own topic root and SQLite store) on a private
Mosquitto, plays the scenario through the simulator's publisher at one speed, lets the
rules judge it to its end, and takes the incident set: dedup key -> highest severity.
Speeds: 1x and 60x (the service ticks on a simulated clock that runs at that speed, so
silent sources do go idle), as fast as the broker takes it (no tick: the flush at the end
judges what is left), and as fast as possible beside two CPU-bound processes. Every run
must give the same set as the first, and the oracle (testkit.truth) must call it exact.
`--quick` plays the first 30 simulated minutes at 60x, fast and loaded, once; `--no-1x`
plays the whole storm at those three speeds, `--loops` times.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from pantau.city import City, load_city
from pantau.clock import Clock, SystemClock
from pantau.incidents import DedupKey, Severity
from pantau.local import LocalStack
from pantau.roster import load_roster
from pantau.settings import RulesSettings, Settings
from pantau.zoneindex import ZoneIndex
from rules.routing import Router
from rules.rulespec import load_rules
from rules.service import RulesService, make_store
from simulators.publisher import run_scenario
from simulators.scenario import Scenario, find_scenario, load_scenario
from simulators.simclock import SimulatedClock, anchored_start
from testkit.truth import Observed, ground_truth

Incidents = dict[DedupKey, Severity]


@dataclass(frozen=True, slots=True)
class Speed:
    name: str
    speed: float | None  # None: as fast as the broker takes it
    burners: int = 0  # CPU-bound processes beside the run


FULL: tuple[Speed, ...] = (
    Speed("1x", 1.0),
    Speed("60x", 60.0),
    Speed("fast", None),
    Speed("fast+2cpu", None, 2),
)
QUICK: tuple[Speed, ...] = (Speed("60x", 60.0), Speed("fast", None), Speed("fast+2cpu", None, 2))


@dataclass(frozen=True, slots=True)
class Run:
    speed: Speed
    incidents: Incidents
    exact: bool
    summary: str
    seconds: float
    late: int
    stale: int


def _burn() -> None:  # pragma: no cover - a load generator
    x = 0
    while True:
        x = (x * 31 + 7) % 1_000_003


def play_once(settings: Settings, city: City, scenario: Scenario, speed: Speed, n: int) -> Run:
    zones = ZoneIndex.for_city(city)
    with tempfile.TemporaryDirectory(prefix="pantau-speeds-") as tmp:
        root = f"speeds{n}"
        run_settings = settings.model_copy(
            update={
                "database_url": f"sqlite:///{Path(tmp) / 'incidents.db'}",
                "mqtt": settings.mqtt.model_copy(update={"root": root}),
                "rules": RulesSettings(
                    client_id=f"rules-{root}",
                    tick_interval_s=0 if speed.speed is None else 1.0,
                    rebuild_window_s=0,
                ),
            }
        )
        wall = SystemClock()
        start = anchored_start(scenario.start, scenario.duration_s, wall.now(), speed.speed)
        clock: Clock = wall if speed.speed is None else SimulatedClock(wall, start, speed.speed)
        store = make_store(run_settings, zones)
        rules = RulesService(
            run_settings, city, store, Router(load_roster(city), zones), zones, clock=clock
        )
        burners = [multiprocessing.Process(target=_burn, daemon=True) for _ in range(speed.burners)]
        rules.start()
        try:
            if not rules.wait_subscribed(15):
                raise RuntimeError("the rules service did not subscribe")
            for b in burners:
                b.start()
            began = time.monotonic()
            report = run_scenario(city, scenario, run_settings.mqtt, speed=speed.speed, start=start)
            deadline = time.monotonic() + 300
            while rules.stats.messages < report.messages and time.monotonic() < deadline:
                time.sleep(0.2)
            if not rules.advance_to(report.end, 120):
                raise RuntimeError("the rules did not judge the scenario to its end")
            took = time.monotonic() - began
        finally:
            for b in burners:
                b.terminate()
                b.join(5)
            rules.stop()
        opened = store.active()
        store.close()
    incidents = {i.key: i.severity_max for i in opened}
    rule_set = load_rules(settings.config_dir / "rules.yaml", city)
    truth = ground_truth(city, scenario, rule_set, report.end, start=report.start)
    verdict = truth.check(Observed(i.key, i.opened_at, i.severity_max) for i in opened)
    return Run(
        speed,
        incidents,
        verdict.exact,
        verdict.summary().splitlines()[0],
        took,
        rules.stats.late,
        rules.stats.stale,
    )


def differences(a: Incidents, b: Incidents) -> list[str]:
    out = [f"only first: {k} {a[k].name}" for k in sorted(a.keys() - b.keys(), key=str)]
    out += [f"only this: {k} {b[k].name}" for k in sorted(b.keys() - a.keys(), key=str)]
    out += [
        f"severity: {k} {a[k].name} vs {b[k].name}" for k in a.keys() & b.keys() if a[k] != b[k]
    ]
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.storm_speeds", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="30 min, no 1x, one loop")
    parser.add_argument("--loops", type=int, default=20)
    parser.add_argument("--scenario", default="storm-karawaci")
    parser.add_argument(
        "--no-1x",
        action="store_true",
        help="the whole storm at 60x, fast and loaded only (1x plays it in real time)",
    )
    args = parser.parse_args(argv)
    city = load_city()
    scenario = load_scenario(find_scenario(args.scenario), city)
    speeds, loops = FULL, args.loops
    if args.no_1x:
        speeds = tuple(s for s in FULL if s.speed != 1.0)
    if args.quick:
        scenario = replace(scenario, duration_s=min(scenario.duration_s, 1800.0))
        speeds, loops = QUICK, 1
    print(
        f"bench.storm_speeds: {scenario.name}, {scenario.duration_s / 60:g} min simulated, "
        f"{loops} loop(s) of {', '.join(s.name for s in speeds)}; load {os.getloadavg()}",
        flush=True,
    )
    first: Incidents | None = None
    failures = 0
    with (
        tempfile.TemporaryDirectory(prefix="pantau-speeds-stack-") as tmp,
        LocalStack(Path(tmp)) as stack,
    ):
        stack.create_database("pantau")  # the services' metrics and data_quality points
        settings = stack.settings()
        n = 0
        for loop in range(loops):
            for speed in speeds:
                n += 1
                run = play_once(settings, city, scenario, speed, n)
                if first is None:
                    first = run.incidents
                diff = differences(first, run.incidents)
                ok = not diff and run.exact
                failures += not ok
                print(
                    f"loop {loop + 1} {speed.name:>9}: {len(run.incidents)} incidents, "
                    f"{'same as the first' if not diff else f'{len(diff)} differ'}, oracle "
                    f"{'exact' if run.exact else 'NOT exact'} ({run.summary}); "
                    f"{run.seconds:.1f} s, late {run.late}, stale {run.stale}; "
                    f"load {os.getloadavg()[0]:.2f}",
                    flush=True,
                )
                for line in diff[:10]:
                    print(f"    {line}")
    print("same incidents every time" if not failures else f"{failures} run(s) differ")
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
