"""`pantau demo --replicas N`: the storm with N rules replicas, one SIGKILLed halfway.

Ingest runs in the demo's process as in the default demo; the rules service runs as N
`pantau rules` processes with `rules.partitioned` on the demo's SQLite file (one host:
SQLite's write lock serializes the replicas, the lease kernel works the same as on
PostgreSQL). Halfway through the storm the first replica is SIGKILLed and not
restarted; the survivors take its kecamatan partitions once its leases run out
(rules.replicas) and the demo says who took which and when. The storm's end reaches
every partition as a control message on its session (rules.partitions), so the
summary and the oracle line are those of the default demo.

Other stages become replicas here as they learn to (ingest, vision, api: a
`Stage` with `start`/`stop` in STAGES); today only rules does.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import text

from demo.cameras import FleetStart, StormClock, cameras_running
from ingest.service import IngestService
from pantau.cameras import Camera
from pantau.city import City
from pantau.influx.writers import make_writer
from pantau.local import LocalStack
from pantau.settings import Settings
from pantau.store import IncidentStore
from pantau.zoneindex import ZoneIndex
from rules.partitions import advance_payload, advance_topic
from rules.service import make_store
from rules.stats import RulesStats
from simulators.publisher import run_scenario
from simulators.report import SimReport
from simulators.scenario import Scenario
from simulators.simclock import anchored_start

TOOK = re.compile(
    r"^(\S+ \S+) INFO rules\.replicas: rules replica (\S+) took partition (\S+) \(epoch (\d+)\)",
    re.M,
)
CONSUMING = re.compile(r"partition (\S+) consuming")
TAKEN = re.compile(r"took partition (\S+)")
GIVEN = re.compile(r"partition (\S+) lost, stopping")
ADVANCED = re.compile(r"partition (\S+) advanced")


@dataclass(frozen=True, slots=True)
class ReplicatedPlay:
    report: SimReport
    stored: int
    judged: bool
    ingest: IngestService  # stopped
    rules_stats: RulesStats  # from the outbox: the replicas' own counters died with them
    store: IncidentStore  # open: the caller closes it
    takeover: str  # who took over which partitions and when


class RulesReplica:
    """One `pantau rules` replica process, its log in the run directory."""

    def __init__(self, stack: LocalStack, settings: Settings, name: str, log: Path) -> None:
        self.name, self.log = name, log
        env = {
            **os.environ,
            **stack.environment(),
            "PANTAU_MQTT__ROOT": settings.mqtt.root,
            "PANTAU_INFLUX__DATABASE": settings.influx.database,
            "PANTAU_DATABASE_URL": settings.database_url,
            "PANTAU_RULES__PARTITIONED": "true",
            "PANTAU_RULES__TICK_INTERVAL_S": "0",
            "PANTAU_REPLICA": name,
        }
        with log.open("ab") as sink:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "pantau.cli", "rules"],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def play_replicas(
    stack: LocalStack,
    settings: Settings,
    city: City,
    zones: ZoneIndex,
    scenario: Scenario,
    *,
    cameras: Mapping[str, Camera],
    speed: float,
    replicas: int,
    run_dir: Path,
    wait_stored: Callable[[Settings, SimReport, float], int],
) -> ReplicatedPlay | None:
    """As demo.run.play, with `replicas` rules processes, the first killed halfway."""
    ingest = IngestService(settings, city, make_writer(settings.influx), cameras=cameras)
    store = make_store(settings, zones)  # the schema, before the replicas start
    partitions = {z.id for z in city.zones.kecamatan}
    rules = [
        RulesReplica(stack, settings, f"rules-{i + 1}", run_dir / f"rules-{i + 1}.log")
        for i in range(replicas)
    ]
    fair = sorted(
        len(partitions) // replicas + (i < len(partitions) % replicas) for i in range(replicas)
    )
    ingest.start()
    try:
        if not (
            ingest.wait_subscribed(15)
            and _until(lambda: _seen(rules, CONSUMING) >= partitions, 120)
            # ... and the shares settled (13 over 2: 7 and 6) before the storm: a
            # hand-over early in it would be a second takeover to explain.
            and _until(lambda: sorted(_held(r) for r in rules) == fair, 120)
        ):
            return None
        time.sleep(2.0)  # the last hand-over's rebuild and SUBACK
        print(
            f"pantau demo: {replicas} rules replicas share {len(partitions)} kecamatan; "
            f"playing {scenario.name!r} at {speed:g}x, {rules[0].name} is SIGKILLed halfway ...",
            flush=True,
        )
        fleet = FleetStart()
        start = anchored_start(scenario.start, scenario.duration_s, datetime.now(UTC), speed)
        killed: list[tuple[float, datetime]] = []

        def kill_halfway() -> None:
            rules[0].kill()
            killed.append((time.time(), start + timedelta(seconds=scenario.duration_s / 2)))

        timer = threading.Timer(scenario.duration_s / speed / 2, kill_halfway)
        with cameras_running(
            city,
            cameras,
            scenario=scenario,
            start=start,
            clock=StormClock(fleet, start, speed),
            mqtt=settings.mqtt,
            evidence_dir=settings.evidence_dir,
        ):
            timer.start()
            report = run_scenario(
                city, scenario, settings.mqtt, speed=speed, start=start, clock=fleet
            )
        timer.join()
        stored = wait_stored(settings, report, 120)
        _advance(settings, report.end)
        survivors = rules[1:]
        judged = _until(lambda: _seen(survivors, ADVANCED) >= partitions, 120)
        takeover = _takeover_line(rules[0].name, survivors, killed[0] if killed else None)
    finally:
        ingest.stop()
        for r in rules:
            r.stop()
    return ReplicatedPlay(report, stored, judged, ingest, _published(store), store, takeover)


def _until(condition: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True


def _held(replica: RulesReplica) -> int:
    """Partitions the replica holds now, by its log: taken less given back."""
    held: set[str] = set()
    for line in replica.text().splitlines():
        if m := TAKEN.search(line):
            held.add(m.group(1))
        elif m := GIVEN.search(line):
            held.discard(m.group(1))
    return len(held)


def _seen(rules: list[RulesReplica], pattern: re.Pattern[str]) -> set[str]:
    return {m for r in rules for m in pattern.findall(r.text())}


def _advance(settings: Settings, to: datetime) -> None:
    """The storm's end, queued in every partition's session behind its readings."""
    client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    client.connect(settings.mqtt.host, settings.mqtt.port)
    client.loop_start()
    client.publish(advance_topic(settings.mqtt.root), advance_payload(to), qos=1).wait_for_publish(
        10
    )
    client.disconnect()
    client.loop_stop()


def _takeover_line(
    dead: str, survivors: list[RulesReplica], killed: tuple[float, datetime] | None
) -> str:
    if killed is None:
        return "Takeover     the kill did not happen (the storm ended first)"
    at, storm_at = killed
    moves: list[tuple[float, str, str, int]] = []
    for r in survivors:
        for stamp, who, key, epoch in TOOK.findall(r.text()):
            when = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()
            if when >= at and int(epoch) > 1:
                moves.append((when - at, who, key, int(epoch)))
    if not moves:
        return f"Takeover     {dead} SIGKILLed, but nobody took its partitions"
    by_who: dict[str, list[str]] = {}
    for _, who, key, _ in sorted(moves):
        by_who.setdefault(who, []).append(key)
    who_took = "; ".join(f"{w} took {', '.join(k)}" for w, k in by_who.items())
    local = datetime.fromtimestamp(at).strftime("%H:%M:%S")
    return (
        f"Takeover     {dead} SIGKILLed at {local} (storm time {storm_at:%H:%M} UTC); "
        f"{who_took}; within {max(m[0] for m in moves):.1f} s of the kill"
    )


def _published(store: IncidentStore) -> RulesStats:
    query = text("SELECT kind, count(*) FROM outbox WHERE published_at IS NOT NULL GROUP BY kind")
    with store.engine.connect() as conn:
        counts = {str(k): int(n) for k, n in conn.execute(query)}
    return RulesStats(
        alerts_published=counts.get("alert", 0),
        events_published=counts.get("event", 0),
        escalations_published=counts.get("escalation", 0),
    )
