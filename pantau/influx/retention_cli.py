"""`pantau retention`: set up InfluxDB's levels by hand, or downsample a span.

pantau retention setup                       # database, retention policies, level table
pantau retention downsample [--hours H]      # aggregate the last H hours (default 2)
pantau retention downsample --from ISO --to ISO [--reconcile]

`pantau ingest` does both by itself (setup at start, a pass every
`retention.downsample_interval_s`); these are for a deployment that turns the loop off
(`PANTAU_RETENTION__DOWNSAMPLE_INTERVAL_S=0`) and runs passes from cron, and for
re-aggregating a span after a restore or a late bulk import.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from pantau.errors import UserError
from pantau.influx import level_table
from pantau.influx.downsample import Downsampler
from pantau.influx.prepare import prepare_storage
from pantau.settings import Settings


def _when(text: str) -> datetime:
    try:
        t = datetime.fromisoformat(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from err
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="pantau retention", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("setup", help="database, retention policies, the dashboards' level table")
    down = sub.add_parser("downsample", help="aggregate a span into 5-minute and hourly levels")
    down.add_argument("--hours", type=float, default=2.0, help="the last H hours (default 2)")
    down.add_argument("--from", dest="start", type=_when, help="span start (ISO 8601, UTC)")
    down.add_argument("--to", dest="end", type=_when, help="span end (ISO 8601, UTC)")
    down.add_argument(
        "--reconcile", action="store_true", help="only the hours whose counts disagree"
    )
    args = parser.parse_args(argv)
    settings = Settings()
    prepare_storage(settings)
    if args.command == "setup":
        print(f"pantau retention: levels of database {settings.influx.database!r} set up")
        return 0
    now = datetime.now(UTC)
    end: datetime = args.end or now
    start: datetime = args.start or end - timedelta(hours=args.hours)
    if start >= end:
        raise UserError(f"--from {start.isoformat()} is not before --to {end.isoformat()}")
    downsampler = Downsampler.from_settings(settings)
    try:
        stats = downsampler.reconcile(start, end) if args.reconcile else downsampler.run(start, end)
    finally:
        downsampler.close()
    level_table.write(settings.influx, settings.retention, now)
    print(
        f"pantau retention: {start.isoformat()} .. {end.isoformat()}: "
        f"{stats.points_5m} 5-minute and {stats.points_1h} hourly points written"
        + (f", {len(stats.recomputed_hours)} hours recomputed" if args.reconcile else "")
    )
    return 0
