"""`pantau simulate`: run a scenario against a broker, list scenarios, place devices.

    pantau simulate run --scenario storm-karawaci --speed max
    pantau simulate run --scenario simulators/scenarios/calm-day.yaml --speed 60
    pantau simulate run --scenario calm-day --dry-run          # no broker: the stream only
    pantau simulate scenarios
    pantau simulate place-devices --seed 2026

Broker and topic root come from the settings (PANTAU_MQTT__HOST, PANTAU_MQTT__PORT,
PANTAU_MQTT__ROOT, ...) unless given as flags.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from pydantic import SecretStr

from pantau.broker.passwords import derive_password
from pantau.city import City, load_city
from pantau.clock import SystemClock
from pantau.errors import ConfigError, ConfigErrors
from pantau.lifecycle import stop_on_signals
from pantau.settings import MqttSettings, Settings
from pantau.topics import Topics
from simulators.messages import FleetStream
from simulators.placement import write_registry
from simulators.publisher import PublishError, run_scenario
from simulators.report import ReportBuilder
from simulators.scenario import find_scenario, load_scenario, scenario_paths
from simulators.simclock import anchored_start, latest_start

log = logging.getLogger(__name__)


def _speed(text: str) -> float | None:
    if text == "max":
        return None
    try:
        value = float(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError("speed is `max` or a positive factor") from err
    if value <= 0:
        raise argparse.ArgumentTypeError("speed must be positive")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pantau simulate", description=__doc__.split("\n")[0])
    parser.add_argument("--config-dir", type=Path, default=None)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="publish a scenario to the broker")
    run.add_argument("--scenario", required=True, help="a file, or a name from scenarios/")
    run.add_argument(
        "--speed", type=_speed, default=1.0, help="max, or simulated seconds per second"
    )
    run.add_argument(
        "--start",
        default="auto",
        help="auto (the scenario's time of day, in the last day), now (ends now), "
        "scenario (as written), or an RFC 3339 time",
    )
    run.add_argument("--seed", type=int, default=None, help="override the scenario's seed")
    run.add_argument("--host")
    run.add_argument("--port", type=int)
    run.add_argument("--root", help="topic root")
    run.add_argument("--username")
    run.add_argument("--dry-run", action="store_true", help="generate the stream, no broker")

    sub.add_parser("scenarios", help="list the scenarios that ship")
    place = sub.add_parser("place-devices", help="regenerate config/devices.yaml")
    place.add_argument("--seed", type=int, default=2026)
    return parser


def main(argv: Sequence[str]) -> int:
    args = _parser().parse_args(list(argv))
    settings = Settings()
    config_dir: Path = args.config_dir or settings.config_dir
    if args.command == "place-devices":
        out = write_registry(config_dir, seed=args.seed)
        print(f"wrote {out}")
        return 0
    city = load_city(config_dir)
    if args.command == "scenarios":
        return _list(city)
    return _run(args, city, settings.mqtt)


def _list(city: City) -> int:
    for path in scenario_paths():
        try:
            s = load_scenario(path, city)
        except (ConfigError, ConfigErrors) as err:
            print(f"{path.stem:<24} INVALID: {err}")
            continue
        hours = s.duration_s / 3600
        print(
            f"{path.stem:<24} {hours:>5.1f} h  from {s.start.isoformat()}  "
            f"cells {len(s.cells)}  faults {len(s.faults)}  {s.description}"
        )
    return 0


def _run(args: argparse.Namespace, city: City, mqtt: MqttSettings) -> int:
    scenario = load_scenario(find_scenario(args.scenario), city)
    if args.seed is not None:
        scenario = replace(scenario, seed=args.seed)
    overrides = {
        k: v
        for k, v in {
            "host": args.host,
            "port": args.port,
            "root": args.root,
            "username": args.username,
        }.items()
        if v is not None
    }
    mqtt = mqtt.model_copy(update=overrides)
    now = SystemClock().now()
    start = _start(args.start, scenario.start, scenario.duration_s, now, args.speed)

    if args.dry_run:
        began = time.process_time()
        stream = FleetStream(city, scenario, topics=Topics(mqtt.root), start=start)
        builder = ReportBuilder().add_all(stream)
        cpu = time.process_time() - began
        print(
            f"scenario {scenario.name}: {builder.messages} messages, "
            f"{sum(builder.valid_by_device.values())} valid readings, "
            f"{len(builder.malformed)} malformed, {stream.dropped} dropped; "
            f"{cpu:.2f}s CPU; digest {builder.digest}"
        )
        return 0

    stop = stop_on_signals()  # stops after the current message
    try:
        report = run_scenario(
            city, scenario, mqtt, speed=args.speed, stop=stop, start=start, login=device_login(mqtt)
        )
    except PublishError as err:
        print(f"pantau simulate: {err}", file=sys.stderr)
        return 1
    print(report.summary())
    return 0 if report.completed and report.failed == 0 else 1


def device_login(mqtt: MqttSettings) -> Callable[[str], MqttSettings] | None:
    """On a broker with an account per gateway (pantau broker, e.g. docker-compose's
    demo profile), each simulated gateway logs in as itself: its password derives from
    PANTAU_BROKER_SECRET. Without the secret every gateway uses `mqtt`."""
    secret = os.environ.get("PANTAU_BROKER_SECRET")
    if not secret:
        return None

    def login(gateway: str) -> MqttSettings:
        password = SecretStr(derive_password(secret, gateway))
        return mqtt.model_copy(update={"username": gateway, "password": password})

    return login


def _start(
    how: str, scenario_start: datetime, duration_s: float, now: datetime, speed: float | None
) -> datetime:
    if how == "auto":
        return anchored_start(scenario_start, duration_s, now, speed)
    if how == "now":
        return latest_start(duration_s, now, speed)
    if how == "scenario":
        return scenario_start
    try:
        when = datetime.fromisoformat(how)
    except ValueError as err:
        raise SystemExit(
            f"pantau simulate: --start {how!r} is not auto, now, scenario or RFC 3339"
        ) from err
    if when.tzinfo is None:
        raise SystemExit("pantau simulate: --start needs a UTC offset, e.g. 2026-01-14T08:30:00Z")
    return when.astimezone(UTC)


if __name__ == "__main__":
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    raise SystemExit(main(sys.argv[1:]))
