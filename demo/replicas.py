"""`pantau demo --replicas N`: the storm with N replicas of every stage, one rules
replica SIGKILLed halfway.

All of them share one broker, one InfluxDB and one PostgreSQL (a private server under
the run directory, as the scaling-out design asks: docs/architecture.md#scaling-out):

- ingest: N replicas of `ingest.partitions` = 2N partition sessions (ingest.partitions);
- rules: N `pantau rules` processes with `rules.partitioned` (rules.replicas);
- vision: N workers with `vision.share_cameras` (camera leases);
- api: N API instances on their own ports, the crews' calls alternating between them
  (demo.ekinerja.RoundRobinApi).

Ingest, vision and the API run in the demo's process, each replica with its own name,
MQTT sessions, leases and store connections: vision and the API follow the storm's
simulated clock, which lives here. The rules replicas are processes, so that one can
be SIGKILLed: halfway through the storm the first is, and it is not restarted; the
survivors take its kecamatan partitions once its leases run out and the demo says who
took which and when. The storm's end reaches every partition as a control message on
its session (rules.partitions), so the summary and the oracle line are those of the
default demo.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as paho
import psycopg
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import Engine, text

from demo.cameras import FleetStart, StormClock, cameras_running
from ingest.partitions import KIND as INGEST_KIND
from ingest.partitions import PartitionedIngest
from ingest.service import IngestStats
from pantau.cameras import Camera
from pantau.city import City
from pantau.local import LocalStack
from pantau.local.ports import free_port
from pantau.local.postgres import Postgres
from pantau.settings import Settings
from pantau.store import IncidentStore, make_engine
from pantau.store.leases import Leases, holders
from pantau.zoneindex import ZoneIndex
from rules.partitions import advance_payload, advance_topic
from rules.service import make_store
from rules.stats import RulesStats
from simulators.publisher import run_scenario
from simulators.report import SimReport
from simulators.scenario import Scenario
from simulators.simclock import DAY, anchored_start

STAMP = r"^(\S+ \S+) INFO rules\.\S+: "
TOOK = re.compile(STAMP + r"rules replica (\S+) took partition (\S+) \(epoch (\d+)\)", re.M)
CONSUMES = re.compile(STAMP + r"partition (\S+) consuming", re.M)
REBUILT = re.compile(STAMP + r"partition (\S+) rebuilt from (\d+) readings", re.M)
CONSUMING = re.compile(r"partition (\S+) consuming")
TAKEN = re.compile(r"took partition (\S+)")
GIVEN = re.compile(r"partition (\S+) lost, stopping")
ADVANCED = re.compile(r"partition (\S+) advanced")
DATABASE = "pantau"


@dataclass(frozen=True, slots=True)
class ReplicatedPlay:
    report: SimReport
    stored: int
    judged: bool
    ingest_stats: IngestStats  # every ingest replica's partitions together
    rules_stats: RulesStats  # from the outbox: the replicas' own counters died with them
    store: IncidentStore  # open: the caller closes it
    shares: str  # who held what at the storm's end (rules: once it was judged)
    takeover: str  # who took over which partitions and when


@contextmanager
def postgres_database(run_dir: Path) -> Iterator[str]:
    """A private PostgreSQL server for the run (the replicas' shared store); its URL."""
    server = Postgres(run_dir / "postgres", free_port())
    server.start()
    try:
        admin = f"host={server.host} port={server.port} user=postgres dbname=postgres"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{DATABASE}"')
        yield server.url_of(DATABASE)
    finally:
        server.stop()
        server.remove_data()


class RulesReplica:
    """One `pantau rules` replica process, its log in the run directory."""

    def __init__(
        self, stack: LocalStack, settings: Settings, name: str, log: Path, rebuild_window_s: float
    ) -> None:
        self.name, self.log = name, log
        env = {
            **os.environ,
            **stack.environment(),
            "PANTAU_MQTT__ROOT": settings.mqtt.root,
            "PANTAU_INFLUX__DATABASE": settings.influx.database,
            "PANTAU_DATABASE_URL": settings.database_url,
            "PANTAU_RULES__PARTITIONED": "true",
            "PANTAU_RULES__TICK_INTERVAL_S": "0",
            # A taker rebuilds its partitions from InfluxDB over the window before *now*,
            # and the storm's event time lies up to a day back (simulators.simclock):
            # with the default 3 h it would rebuild from nothing and judge the dead
            # owner's backlog without the readings before it (late incidents).
            "PANTAU_RULES__REBUILD_WINDOW_S": str(rebuild_window_s),
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


class IngestReplica(PartitionedIngest):
    """An ingest replica that keeps the counters of the partitions it ran (a partition
    handed over takes its service's counters with it)."""

    def __init__(self, settings: Settings, city: City, cameras: Mapping[str, Camera]) -> None:
        super().__init__(settings, city, cameras)
        self.name = settings.replica
        self._done: list[IngestStats] = []

    def _stop_partition(self, partition: str) -> None:
        service = self.running.get(partition)
        super()._stop_partition(partition)
        if service is not None:
            self._done.append(service.stats)

    def stats(self) -> list[IngestStats]:
        return self._done + [s.stats for s in list(self.running.values())]

    def subscribed(self) -> bool:
        return all(s.wait_subscribed(0.1) for s in list(self.running.values()))


def _sum(stats: list[IngestStats]) -> IngestStats:
    rejected: Counter[str] = Counter()
    for s in stats:
        rejected.update(s.rejected)
    return IngestStats(
        messages=sum(s.messages for s in stats),
        readings_spooled=sum(s.readings_spooled for s in stats),
        readings_written=sum(s.readings_written for s in stats),
        rejected=rejected,
    )


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
    """As demo.run.play, with `replicas` of every stage, the first rules one killed
    halfway. `settings.database_url` is the shared PostgreSQL (postgres_database)."""
    store = make_store(settings, zones)  # the schema, before the replicas start
    names = [str(i + 1) for i in range(replicas)]
    partitions = {z.id for z in city.zones.kecamatan}
    window = (DAY + timedelta(seconds=scenario.duration_s) + timedelta(hours=1)).total_seconds()
    rules = [
        RulesReplica(stack, settings, f"rules-{n}", run_dir / f"rules-{n}.log", window)
        for n in names
    ]
    ingest_settings = settings.model_copy(
        update={"ingest": settings.ingest.model_copy(update={"partitions": 2 * replicas})}
    )
    ingests: list[IngestReplica] = []
    engine = make_engine(settings.database_url)
    ttl = settings.leases.ttl_s
    visions = [Leases(engine, "vision", f"vision-{n}", ttl) for n in names]
    try:
        for n in names:
            replica = IngestReplica(
                ingest_settings.model_copy(update={"replica": f"ingest-{n}"}), city, cameras
            )
            replica.start()
            ingests.append(replica)
        if not (
            _until(lambda: _fair(engine, INGEST_KIND, 2 * replicas, replicas), 120)
            and _until(lambda: all(r.subscribed() for r in ingests), 60)
            and _until(lambda: _seen(rules, CONSUMING) >= partitions, 120)
            # ... and the shares settled (13 over 2: 7 and 6) before the storm: a
            # hand-over early in it would be a second takeover to explain.
            and _until(lambda: _fair(engine, "rules", len(partitions), replicas), 120)
        ):
            return None
        time.sleep(2.0)  # the last hand-over's rebuild and SUBACK
        print(
            f"pantau demo: {replicas} replicas of ingest, rules, vision and the API on one "
            f"broker, InfluxDB and PostgreSQL; playing {scenario.name!r} at {speed:g}x, "
            f"{rules[0].name} is SIGKILLed halfway ...",
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
            workers=visions,
            period_s=settings.leases.period_s,
        ):
            timer.start()
            report = run_scenario(
                city, scenario, settings.mqtt, speed=speed, start=start, clock=fleet
            )
            shares = _shares(engine, ("ingest", "vision"))  # vision's leases end with it
        timer.join()
        stored = wait_stored(settings, report, 120)
        _advance(settings, report.end)
        survivors = rules[1:]
        judged = _until(lambda: _seen(survivors, ADVANCED) >= partitions, 120)
        shares += _shares(engine, ("rules",))
        takeover = _takeover_line(rules[0].name, survivors, killed[0] if killed else None, ttl)
    finally:
        for ingest in ingests:
            ingest.stop()
        for r in rules:
            r.stop()
        engine.dispose()
    stats = _sum([s for r in ingests for s in r.stats()])
    return ReplicatedPlay(report, stored, judged, stats, _published(store), store, shares, takeover)


def _until(condition: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True


def _fair(engine: Engine, kind: str, units: int, replicas: int) -> bool:
    """Every unit of `kind` leased, as evenly as can be (13 over 2: 7 and 6)."""
    held = Counter(lease.owner for lease in holders(engine, kind))
    fair = sorted(units // replicas + (i < units % replicas) for i in range(replicas))
    return sorted(held.values()) == fair


def _shares(engine: Engine, kinds: tuple[str, ...]) -> str:
    """Who holds what (a line per stage), read from the leases."""
    lines = []
    for kind in kinds:
        held: dict[str, list[str]] = {}
        for lease in holders(engine, kind):
            held.setdefault(lease.owner, []).append(lease.key)
        said = "; ".join(f"{o} {len(k)} ({', '.join(sorted(k))})" for o, k in sorted(held.items()))
        lines.append(f"\n  {kind:<8}{said}")
    return "".join(lines)


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


def _when(stamp: str) -> float:
    return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()


def _takeover_line(
    dead: str,
    survivors: list[RulesReplica],
    killed: tuple[float, datetime] | None,
    ttl_s: float,
) -> str:
    if killed is None:
        return "Takeover     the kill did not happen (the storm ended first)"
    at, storm_at = killed
    moves: dict[str, tuple[float, str]] = {}  # partition: seconds after the kill, taker
    for r in survivors:
        for stamp, who, key, epoch in TOOK.findall(r.text()):
            if _when(stamp) >= at and int(epoch) > 1:
                moves.setdefault(key, (_when(stamp) - at, who))
    if not moves:
        return f"Takeover     {dead} SIGKILLed, but nobody took its partitions"
    consuming: dict[str, float] = {}
    rebuilt: dict[str, int] = {}  # readings each taken partition's state was rebuilt from
    for r in survivors:
        for stamp, key in CONSUMES.findall(r.text()):
            if key in moves and _when(stamp) >= at:
                consuming.setdefault(key, _when(stamp) - at)
        for stamp, key, n in REBUILT.findall(r.text()):
            if key in moves and _when(stamp) >= at:
                rebuilt.setdefault(key, int(n))
    by_who: dict[str, list[str]] = {}
    for key, (_, who) in sorted(moves.items(), key=lambda kv: kv[1]):
        by_who.setdefault(who, []).append(key)
    who_took = "; ".join(f"{w} took {', '.join(k)}" for w, k in by_who.items())
    local = datetime.fromtimestamp(at).strftime("%H:%M:%S")
    taken = [s for s, _ in moves.values()]
    # A taker rebuilding from no readings would judge the backlog without its past.
    blind = sorted(k for k in moves if not rebuilt.get(k))
    resumed = (
        f", all consuming again {max(consuming.values()):.1f} s after the kill (state "
        f"rebuilt from {sum(rebuilt.values())} readings in InfluxDB"
        + (f", {len(blind)} from NONE: {', '.join(blind)}" if blind else "")
        + ", the dead sessions' backlog resumed)"
        if consuming.keys() == moves.keys()
        else f", {len(moves) - len(consuming)} never consuming again"
    )
    return (
        f"Takeover     {dead} SIGKILLed at {local} (storm time {storm_at:%H:%M} UTC); "
        f"{who_took}: leases taken {min(taken):.1f}-{max(taken):.1f} s after the kill "
        f"(lease ttl {ttl_s:g} s){resumed}"
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
