"""`pantau store migrate [URL]`: apply the incident store's migrations.
`pantau store prune --before DATE --reason WHY`: delete ended incidents and audit rows
older than DATE, past the retention only (pantau.store.prune)."""

from __future__ import annotations

import argparse
import getpass
import logging
import os
from datetime import UTC, datetime

from pantau.settings import Settings
from pantau.store.migrate import DEFAULT_URL, make_engine, migrate
from pantau.store.prune import prune


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pantau.store")
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("migrate", help="upgrade the incident tables to the newest revision")
    m.add_argument(
        "url",
        nargs="?",
        default=os.environ.get("PANTAU_DATABASE_URL", DEFAULT_URL),
        help=f"SQLAlchemy URL (default: $PANTAU_DATABASE_URL or {DEFAULT_URL})",
    )
    m.add_argument("--revision", default="head")
    p = sub.add_parser(
        "prune", help="delete ended incidents and audit rows older than a date past retention"
    )
    p.add_argument("--before", required=True, type=date_arg, help="YYYY-MM-DD (UTC)")
    p.add_argument("--reason", required=True, help="why: recorded in the audit log")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.command == "migrate":
        migrate(args.url, args.revision)
        return 0
    settings = Settings()
    engine = make_engine(settings.database_url)
    try:
        done = prune(
            engine,
            before=args.before,
            now=datetime.now(UTC),
            keep_years=settings.retention.incidents_years,
            actor=f"cli:{getpass.getuser()}",
            reason=args.reason,
        )
    finally:
        engine.dispose()
    print(
        f"pruned {done.incidents} ended incidents and {done.audit_rows} audit rows "
        f"older than {done.before:%Y-%m-%d}; recorded in audit_prunes and the audit log"
    )
    return 0


def date_arg(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)


if __name__ == "__main__":
    raise SystemExit(main())
