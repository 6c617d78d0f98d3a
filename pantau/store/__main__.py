"""`python -m pantau.store migrate [URL]`: apply the incident store's migrations."""

from __future__ import annotations

import argparse
import logging
import os

from pantau.store.migrate import DEFAULT_URL, migrate


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
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    migrate(args.url, args.revision)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
