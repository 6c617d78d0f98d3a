"""`pantau demo`: the whole data path end to end, on embedded defaults.

Starts a private mosquitto and influxd, runs ingest and the rules service (incidents
in a SQLite file under the run directory), plays the two-hour storm over Karawaci at
90x real time with every registry camera served by the camera simulator (flood
cameras' water following their stations) and analysed by the vision service, waits
until InfluxDB holds every valid reading the fleet sent and the rules have judged the
whole storm, and prints what a person wants to know: devices, readings written, the
peak water level per kecamatan against its alert level, the incidents raised and the
crews alerted, rejects by reason. Then simulated crews answer every routed incident
through the API (its clock following simulated time) and the demo prints the storm's
e-Kinerja as the API's GET /kpi answers it, per agency and for the kota. Last, the
InfluxQL to look further. With --keep the services stay up and the API serves the
operations and crew pages, with an operator and a crew user whose generated password
is printed once.
"""

from __future__ import annotations

import argparse
import dataclasses
import fcntl
import logging
import secrets
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pydantic import SecretStr

from api.accounts import AccountError
from api.context import build_context
from api.principal import Role
from demo.apiserver import ApiCallError, serve
from demo.cameras import FleetStart, StormClock, cameras_running
from demo.crews import principal_of
from demo.ekinerja import CrewsResult, answer_and_evaluate, kpi_table
from demo.live import live_city
from demo.replicas import ReplicatedPlay, play_replicas, postgres_database
from ingest.service import IngestService, IngestStats
from pantau.cameras import Camera, load_cameras
from pantau.city import City, load_city
from pantau.errors import UserError
from pantau.incidents import Hazard
from pantau.influx.prepare import prepare_storage
from pantau.influx.query import InfluxQL
from pantau.influx.writers import make_writer
from pantau.lifecycle import stop_on_signals
from pantau.local import LocalStack
from pantau.roster import load_roster
from pantau.settings import ApiSettings, RulesSettings, Settings
from pantau.store import IncidentStore
from pantau.zoneindex import ZoneIndex
from rules.cameras import CAMERA_KINDS
from rules.routing import Router
from rules.rulespec import load_rules
from rules.service import RulesService, make_store
from rules.stats import RulesStats
from simulators.publisher import run_scenario
from simulators.report import SimReport
from simulators.scenario import Scenario, find_scenario, load_scenario
from simulators.simclock import anchored_start
from testkit.truth import Observed, ground_truth

log = logging.getLogger(__name__)

DATABASE = "pantau"
# The storm at 90x real time (2 h in 80 s): the cameras are rendered and analysed as it
# plays, and the rules' 2-minute lateness is then 1.3 s of wall time for a frame.
SPEED = 90.0
ROOT = "pantau"


@dataclass(frozen=True, slots=True)
class KecamatanPeak:
    name: str
    stations: int
    peak_cm: float
    station: str
    alert_cm: float
    danger_cm: float
    above_alert: int


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="pantau demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", default="storm-karawaci", help="name or file")
    parser.add_argument("--run-dir", type=Path, help="keep service data here (default: temp)")
    parser.add_argument("--keep", action="store_true", help="leave services up until Ctrl-C")
    parser.add_argument(
        "--replicas",
        type=int,
        default=1,
        choices=range(1, 6),
        help="run N replicas of ingest, rules, vision and the API on one PostgreSQL and "
        "SIGKILL a rules replica halfway (demo/replicas.py)",
    )
    args = parser.parse_args(argv)
    logging.getLogger().setLevel(logging.WARNING)  # the summary is the output

    city = load_city()
    scenario = load_scenario(find_scenario(args.scenario), city)
    with tempfile.TemporaryDirectory(prefix="pantau-demo-") as tmp, ExitStack() as services:
        run_dir = args.run_dir or Path(tmp)
        print(f"pantau demo: starting mosquitto and influxd under {run_dir} ...", flush=True)
        services.enter_context(_exclusive(run_dir))
        stack = services.enter_context(LocalStack(run_dir))
        # One of each: a SQLite file. Replicas: a private PostgreSQL they all share.
        database_url = (
            f"sqlite:///{run_dir / 'incidents.db'}"
            if args.replicas == 1
            else services.enter_context(postgres_database(run_dir))
        )
        settings = _demo_settings(stack, run_dir, database_url)
        # Retention policies and the dashboards' level table, as `pantau ingest` sets
        # them up: a Grafana pointed at the demo's InfluxDB reads the same shape.
        prepare_storage(settings)
        zones = ZoneIndex.for_city(city)
        # Every stage of Pantau: the fleet and the registry's cameras, paced together.
        cameras = load_cameras(city)
        if args.replicas > 1:
            played: Played | ReplicatedPlay | None = play_replicas(
                stack,
                settings,
                city,
                zones,
                scenario,
                cameras=cameras,
                speed=SPEED,
                replicas=args.replicas,
                run_dir=run_dir,
                wait_stored=_wait_until_stored,
            )
        else:
            played = play(settings, city, zones, scenario, cameras=cameras, speed=SPEED)
        if played is None:
            print("pantau demo: could not subscribe to the broker", file=sys.stderr)
            return 1
        report, stored, judged = played.report, played.stored, played.judged
        rules, store = played.rules_stats, played.store
        ingested = (
            played.ingest_stats if isinstance(played, ReplicatedPlay) else played.ingest.stats
        )
        print(_summary(city, settings, report, stored, ingested))
        print(_incidents(city, zones, store, rules) if judged else "Rules did not finish.")
        if isinstance(played, ReplicatedPlay):
            print(f"\nReplicas     by their leases in PostgreSQL at the storm's end{played.shares}")
            print(played.takeover)
        oracle_exact = judged and _print_oracle(city, scenario, settings, report, store)
        store.close()
        # The simulated fleet went into service when the storm began: a month's
        # availability does not count the days before it existed.
        city = commissioned(city, report.start)
        crews: CrewsResult | None = None
        if judged:
            try:
                crews = answer_and_evaluate(
                    settings, city, zones, report.start, report.end, api_replicas=args.replicas
                )
                print(kpi_table(crews, report.start, report.end))
            except ApiCallError as err:
                print(f"\nCrews: the API refused a call: {err}", file=sys.stderr)
        print(_queries(settings, run_dir))
        if args.keep:
            # The storm again in real time, so the pages are not empty (demo/live.py).
            with live_city(settings, city, zones, scenario) as line:
                print(line, flush=True)
                _serve_until_ctrl_c(stack, settings, city, crews)
    # A demo whose incidents differ from the oracle failed, whatever else it printed.
    ok = stored == len(report.reading_keys) and crews is not None and oracle_exact
    return 0 if ok else 1


def _demo_settings(stack: LocalStack, run_dir: Path, database_url: str) -> Settings:
    """The demo's settings on its private services (its InfluxDB database created), with
    the incident store at `database_url`."""
    stack.create_database(DATABASE)
    base = stack.settings(database=DATABASE, root=ROOT)
    return base.model_copy(
        update={
            "database_url": database_url,
            # The spool is the run's own: not run/spool of the current folder,
            # which another demo or ingest started here may hold.
            "ingest": base.ingest.model_copy(update={"spool_dir": run_dir / "spool"}),
            "evidence_dir": run_dir / "evidence",
            # The storm's event time is in the past: judge it to its end explicitly
            # instead of ticking with the wall clock.
            "rules": RulesSettings(tick_interval_s=0),
            # A fresh signing key per run: tokens of an old demo never pass. The
            # e-Kinerja series for Grafana, every minute (api/kpi_publisher.py).
            "api": ApiSettings(
                jwt_secret=SecretStr(secrets.token_urlsafe(32)), kpi_publish_every_s=60
            ),
        }
    )


class RunDirInUse(UserError):
    pass


@contextmanager
def _exclusive(run_dir: Path) -> Iterator[None]:
    """Hold run_dir for this demo: a second demo on the same --run-dir stops with one
    line instead of fighting over the services' data files."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with (run_dir / "demo.lock").open("a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunDirInUse(
                f"another pantau demo is running in {run_dir}: stop it (Ctrl-C), "
                "or give this one another --run-dir"
            ) from None
        yield


@dataclass(frozen=True, slots=True)
class Played:
    report: SimReport
    stored: int  # readings in InfluxDB
    judged: bool  # the rules judged the whole scenario
    ingest: IngestService  # stopped
    rules_stats: RulesStats  # of the stopped rules service
    store: IncidentStore  # open: the caller closes it


def play(
    settings: Settings,
    city: City,
    zones: ZoneIndex,
    scenario: Scenario,
    *,
    cameras: Mapping[str, Camera] | None = None,
    speed: float | None = None,
) -> Played | None:
    """Run ingest and the rules service, play `scenario` (as fast as the broker takes it,
    or `speed` times real time), wait until InfluxDB holds every valid reading and the
    rules judged it to its end; None if the services could not subscribe.

    With `cameras` (and a `speed`: cameras run in real time), the camera simulator serves
    them, their water following the stations' storm, and the vision service analyses
    them on the storm's simulated clock: ingest stores the analyses, the rules judge them.
    """
    if cameras and speed is None:
        raise ValueError("cameras run at a speed: give one")
    ingest = IngestService(settings, city, make_writer(settings.influx), cameras=cameras)
    store = make_store(settings, zones)
    router = Router(load_roster(city), zones)
    rules = RulesService(settings, city, store, router, zones, cameras=cameras)
    ingest.start()
    rules.start()
    if not (ingest.wait_subscribed(15) and rules.wait_subscribed(15)):
        ingest.stop()
        rules.stop()
        store.close()
        return None
    pace = "as fast as the broker takes it" if speed is None else f"at {speed:g}x real time"
    what = f"{len(city.devices)} devices" + (f", {len(cameras)} cameras" if cameras else "")
    print(
        f"pantau demo: playing {scenario.name!r} ({scenario.duration_s / 3600:g} h "
        f"simulated, {what}) {pace} ...",
        flush=True,
    )
    fleet = FleetStart()
    start = anchored_start(scenario.start, scenario.duration_s, datetime.now(UTC), speed)
    with ExitStack() as running:
        if cameras and speed is not None:
            running.enter_context(
                cameras_running(
                    city,
                    cameras,
                    scenario=scenario,
                    start=start,
                    clock=StormClock(fleet, start, speed),
                    mqtt=settings.mqtt,
                    evidence_dir=settings.evidence_dir,
                )
            )
        report = run_scenario(city, scenario, settings.mqtt, speed=speed, start=start, clock=fleet)
    # Vision stopped with the storm: nothing newer than its end reaches the rules.
    stored = _wait_until_stored(settings, report, timeout_s=120)
    judged = _wait_until_judged(rules, report, timeout_s=120)
    ingest.stop()
    rules.stop()
    return Played(report, stored, judged, ingest, rules.stats, store)


def _count(influx: InfluxQL) -> int:
    # The fleet's readings only: camera analyses (tagged `camera`) are not in the report.
    rows = influx.rows("SELECT count(value) FROM /.*/ WHERE camera = ''")
    return sum(int(str(r["count"])) for r in rows)


def _wait_until_stored(settings: Settings, report: SimReport, timeout_s: float) -> int:
    deadline = time.monotonic() + timeout_s
    with InfluxQL.from_settings(settings.influx) as influx:
        stored = _count(influx)
        while stored < len(report.reading_keys) and time.monotonic() < deadline:
            time.sleep(0.5)
            stored = _count(influx)
    return stored


def _wait_until_judged(rules: RulesService, report: SimReport, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while rules.stats.messages < report.messages and time.monotonic() < deadline:
        time.sleep(0.5)
    return rules.advance_to(report.end, max(1.0, deadline - time.monotonic()))


def _print_oracle(
    city: City, scenario: Scenario, settings: Settings, report: SimReport, store: IncidentStore
) -> bool:
    """Print whether the sensors' incidents are exactly what the devices measured
    (testkit.truth), and return it. The oracle knows the sensor fleet only, so incidents
    of the rules on cameras (and camera faults) are left out of the comparison, and the
    line says so."""
    rules = load_rules(settings.config_dir / "rules.yaml", city)
    truth = ground_truth(city, scenario, rules, report.end, start=report.start)
    on_cameras = {
        r.id
        for r in rules.rules
        if r.kind == "cross_check" or set(r.applies_to.kinds) & set(CAMERA_KINDS.values())
    }
    active = store.active()
    sensors = [
        i
        for i in active
        if i.key.rule_id not in on_cameras and i.key.hazard is not Hazard.CAMERA_FAULT
    ]
    verdict = truth.check(Observed(i.key, i.opened_at, i.severity_max) for i in sensors)
    said = verdict.summary().splitlines()[0]
    left_out = len(active) - len(sensors)
    match = "match" if verdict.exact else "do NOT match"
    print(
        f"Oracle       the sensors' incidents {match} the ground truth: {said}"
        f" ({left_out} camera incidents left out: the oracle knows the sensors only)"
    )
    return verdict.exact


def _incidents(city: City, zones: ZoneIndex, store: IncidentStore, rules: RulesStats) -> str:
    incidents = store.active()
    by_hazard = Counter(i.key.hazard.value for i in incidents)
    by_kecamatan = Counter(
        city.zones.by_id()[kec].name
        for i in incidents
        if (kec := _kecamatan_of(zones, i.key.zone_id)) is not None
    )
    lines = [
        "",
        f"Incidents    {len(incidents)} opened by the rules "
        f"({', '.join(f'{h} {n}' for h, n in by_hazard.most_common())}); "
        f"{rules.alerts_published} crew alerts, {rules.events_published} "
        "incident events published",
        "  per kecamatan: " + ", ".join(f"{k} {n}" for k, n in by_kecamatan.most_common()),
        "  most severe:",
    ]
    for i in incidents[:6]:
        lines.append(
            f"    {i.severity_max.name.lower():<8}{i.key.hazard.value:<14}"
            f"{zones.zone(i.key.zone_id).name:<20} rule {i.key.rule_id}, "
            f"crew {i.routed_crew_id or '-'}"
        )
    return "\n".join(lines)


def _kecamatan_of(zones: ZoneIndex, zone_id: str) -> str | None:
    for zone in zones.ancestors(zone_id):
        if zone.id.startswith("kec-"):
            return zone.id
    return None


def kecamatan_peaks(city: City, influx: InfluxQL) -> list[KecamatanPeak]:
    """Per kecamatan: the highest level any station reached, and how many passed alert."""
    rows = influx.rows(
        "SELECT max(value) FROM water_level WHERE kind = 'water_level_station' GROUP BY device"
    )
    peaks = {str(r["device"]): float(str(r["max"])) for r in rows}
    out: list[KecamatanPeak] = []
    for kec in city.zones.kecamatan:
        stations = [
            d
            for d in city.devices.values()
            if d.kecamatan_id == kec.id and d.levels is not None and d.id in peaks
        ]
        if not stations:
            continue
        top = max(stations, key=lambda d: peaks[d.id] / d.levels.alert_cm if d.levels else 0)
        assert top.levels is not None
        out.append(
            KecamatanPeak(
                name=kec.name,
                stations=len(stations),
                peak_cm=peaks[top.id],
                station=top.id,
                alert_cm=top.levels.alert_cm,
                danger_cm=top.levels.danger_cm,
                above_alert=sum(
                    1 for d in stations if d.levels and peaks[d.id] >= d.levels.alert_cm
                ),
            )
        )
    return sorted(out, key=lambda p: p.peak_cm / p.alert_cm, reverse=True)


def _summary(
    city: City, settings: Settings, report: SimReport, stored: int, ingested: IngestStats
) -> str:
    with InfluxQL.from_settings(settings.influx) as influx:
        peaks = kecamatan_peaks(city, influx)
    # Distinct point identities: a device re-sending a (metric, time) overwrites it.
    expected = len(report.reading_keys)
    lost = expected - stored
    rejected: Counter[str] = ingested.rejected
    lines = [
        "",
        f"Scenario     {report.scenario}: {report.start:%Y-%m-%d %H:%M} .. {report.end:%H:%M} UTC "
        f"(simulated), played in {report.wall_s:.1f} s",
        f"Devices      {len(report.valid_by_device)} of {len(city.devices)} reported "
        f"({len(city.zones.kelurahan)} kelurahan, {len(city.zones.kecamatan)} kecamatan)",
        f"Messages     {report.messages} sent, {ingested.messages} ingested",
        f"Readings     {stored} written to InfluxDB of {expected} valid sent "
        + ("(none lost)" if lost == 0 else f"({lost} MISSING)"),
        "",
        "Peak water level per kecamatan (highest station relative to its Siaga alert level):",
        f"  {'kecamatan':<15}{'peak cm':>9}{'alert':>7}{'danger':>8}  {'above alert':<12} station",
    ]
    for p in peaks:
        flag = "AWAS" if p.peak_cm >= p.danger_cm else "SIAGA" if p.peak_cm >= p.alert_cm else ""
        lines.append(
            f"  {p.name:<15}{p.peak_cm:>9.0f}{p.alert_cm:>7.0f}{p.danger_cm:>8.0f}  "
            f"{p.above_alert:>2}/{p.stations:<9} {p.station} {flag}"
        )
    lines += ["", "Rejected input (dead-lettered with its reason):"]
    injected = report.reasons
    for reason in sorted(set(rejected) | set(injected)):
        lines.append(
            f"  {reason:<16}{rejected[reason]:>6}   (simulator injected {injected[reason]})"
        )
    if not rejected and not injected:
        lines.append("  none")
    return "\n".join(lines)


def _queries(settings: Settings, run_dir: Path) -> str:
    lines: list[str] = []
    lines += [
        "",
        f"Look at the data (InfluxDB {settings.influx.url}, database {DATABASE!r}):",
        "  SELECT max(value) FROM water_level WHERE kecamatan = 'kec-karawaci' "
        "GROUP BY time(10m), device",
        "  SELECT mean(value) FROM rainfall_rate GROUP BY time(10m), kecamatan",
        "  SELECT count(value) FROM /.*/ GROUP BY kind",
        f"  e.g. curl -G {settings.influx.url}/query --data-urlencode db={DATABASE} "
        '--data-urlencode "q=SHOW MEASUREMENTS"',
    ]
    if settings.database_url.startswith("sqlite"):
        lines.append(f"  incidents (SQLite): {run_dir / 'incidents.db'}, table incidents")
    else:
        url = settings.database_url.replace("+psycopg", "")
        lines.append(f"  incidents (PostgreSQL, while the demo runs): psql {url}, table incidents")
    return "\n".join(lines)


def commissioned(city: City, at: datetime) -> City:
    """`city` with every device in service from `at`."""
    devices = {i: dataclasses.replace(d, in_service_from=at) for i, d in city.devices.items()}
    return dataclasses.replace(city, devices=devices)


def _serve_until_ctrl_c(
    stack: LocalStack, settings: Settings, city: City, crews: CrewsResult | None
) -> None:
    """The API on a free loopback port (wall clock) against the demo's incident database
    and InfluxDB, with an operator and a crew user, until Ctrl-C."""
    stop = stop_on_signals()
    ctx = build_context(settings, city=city)
    try:
        password = secrets.token_urlsafe(12)
        answered = Counter(a.crew for a in crews.answers) if crews else Counter[str]()
        crew_id = next(
            (c for c, _ in answered.most_common() if not c.endswith("-supervisor")),
            ctx.roster.crews[0].id,
        )
        crew = principal_of(ctx, crew_id)
        users: list[tuple[str, Role, str | None, frozenset[str] | None, str | None]] = [
            ("ops", Role.OPERATOR, None, None, None),
            ("crew", Role.CREW, crew.agency, crew.kecamatan, crew_id),
        ]
        for name, role, agency, kecamatan, crew_of in users:
            try:
                ctx.accounts.create_user(
                    name, password, role, agency=agency, kecamatan=kecamatan, crew_id=crew_of
                )
            except AccountError as err:  # a --run-dir kept from an earlier run
                print(f"pantau demo: {err}; its earlier password stands", file=sys.stderr)
        with serve(ctx) as url:
            print(
                f"\nServices stay up (Ctrl-C to stop): MQTT {stack.mqtt_host}:{stack.mqtt_port}, "
                f"InfluxDB {stack.influx_url}, API {url}\n"
                f"  operations page  {url}/app/ops   (user ops, operator)\n"
                f"  crew page        {url}/app/crew  (user crew, crew {crew_id})\n"
                f"  API docs         {url}/docs\n"
                f"  password for both (shown only now): {password}",
                flush=True,
            )
            stop.wait()
        print("pantau demo: stopping ...", flush=True)
    finally:
        ctx.close()
