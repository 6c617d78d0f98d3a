"""`pantau dashboards`: build the dashboards' JSON (or check it is current), and push it
to a running Grafana."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from dashboards.build import GENERATED, check, write
from dashboards.push import PushError, load_generated, push
from pantau.city import load_city
from pantau.settings import Settings


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="pantau dashboards", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="write dashboards/generated/*.json from the code")
    build.add_argument("--check", action="store_true", help="only tell if the JSON is stale")
    build.add_argument("--out", type=Path, default=GENERATED)
    up = sub.add_parser("push", help="upload the generated dashboards to Grafana (by uid)")
    up.add_argument("--url", required=True, help="Grafana's base URL, e.g. http://grafana:3000")
    up.add_argument(
        "--token",
        default=os.environ.get("GRAFANA_TOKEN"),
        help="service-account token with the Editor role (default: $GRAFANA_TOKEN)",
    )
    up.add_argument("--dir", type=Path, default=GENERATED)
    args = parser.parse_args(argv)

    if args.command == "build":
        city = load_city(Settings().config_dir)
        if args.check:
            stale = check(city, args.out)
            print(f"dashboards: {stale}")
            return 0 if stale.fresh else 1
        for path in write(city, args.out):
            print(path)
        return 0
    if not args.token:
        print("pantau dashboards push: --token (or GRAFANA_TOKEN) is required", file=sys.stderr)
        return 2
    try:
        for done in push(args.url, args.token, load_generated(args.dir)):
            print(f"{done.uid}: version {done.version} {args.url.rstrip('/')}{done.url}")
    except PushError as err:
        print(f"pantau dashboards push: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
