"""`pantau services up`: a private mosquitto and influxd until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from pantau.lifecycle import stop_on_signals
from pantau.local.errors import ServiceError
from pantau.local.stack import LocalStack

log = logging.getLogger(__name__)

DEFAULT_RUN_DIR = Path("run/services")  # /run/ is git-ignored


def _port(text: str) -> int:
    port = int(text)
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"not a TCP port: {text}")
    return port


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pantau services", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start both and wait until Ctrl-C / SIGTERM")
    up.add_argument(
        "--run-dir",
        type=Path,
        default=DEFAULT_RUN_DIR,
        help=f"configs, logs and data (kept between runs; default {DEFAULT_RUN_DIR})",
    )
    up.add_argument("--mqtt-port", type=_port, default=None, help="default: a free port")
    up.add_argument("--influx-port", type=_port, default=None, help="default: a free port")
    return parser


def main(argv: Sequence[str]) -> int:
    args = _parser().parse_args(argv)
    # Handlers first, so a SIGTERM during start-up still stops what has started.
    stopping = stop_on_signals()
    stack = LocalStack(args.run_dir, mqtt_port=args.mqtt_port, influx_port=args.influx_port)
    try:
        stack.start()
    except ServiceError as err:
        print(f"pantau services: {err}", file=sys.stderr)
        return 1
    try:
        _print_banner(stack)
        while not stopping.wait(0.2):
            for service in (stack.mosquitto, stack.influxd):
                if not service.running:
                    print(
                        f"pantau services: {service.name} died\n{service.log_tail()}",
                        file=sys.stderr,
                    )
                    return 1
        return 0
    finally:
        stack.stop()


def _print_banner(stack: LocalStack) -> None:
    print(f"mosquitto  mqtt://{stack.mqtt_host}:{stack.mqtt_port}  (pid {stack.mosquitto.pid})")
    print(f"influxd    {stack.influx_url}  (pid {stack.influxd.pid})")
    print(f"run dir    {stack.run_dir}")
    print("point pantau at them with:")
    print("export " + " ".join(f"{k}={v}" for k, v in stack.environment().items()))
    print("Ctrl-C stops both.", flush=True)
