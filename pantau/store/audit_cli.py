"""`pantau audit verify [URL] [--anchor ID:HASH] [--json]`: walk the hash chains of the
audit log and every incident timeline (pantau.store.chain) and name each break.

Exit 0 when every chain holds, 1 when one does not. An auditor keeps the printed
anchor (the newest audit row's id and hash) and passes it back next time with
`--anchor`: a chain rewritten from some row on no longer has that hash there.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Sequence

from pantau.errors import UserError
from pantau.store.chain import check_anchor, verify_chains
from pantau.store.migrate import DEFAULT_URL, make_engine

ANCHOR = re.compile(r"^(\d+):([0-9a-f]{64})$")


def _anchor(value: str) -> tuple[int, str]:
    m = ANCHOR.match(value)
    if m is None:
        raise argparse.ArgumentTypeError("expected ID:HASH (an audit row id, 64 hex digits)")
    return int(m.group(1)), m.group(2)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="pantau audit", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    v = sub.add_parser("verify", help="check the audit log and timelines for tampering")
    v.add_argument(
        "url",
        nargs="?",
        default=os.environ.get("PANTAU_DATABASE_URL", DEFAULT_URL),
        help=f"SQLAlchemy URL (default: $PANTAU_DATABASE_URL or {DEFAULT_URL})",
    )
    v.add_argument("--anchor", type=_anchor, help="ID:HASH of an audit row kept earlier")
    v.add_argument("--json", action="store_true", help="print the report as JSON")
    args = p.parse_args(argv)
    engine = make_engine(args.url)
    try:
        with engine.connect() as conn:
            if not engine.dialect.has_table(conn, "audit_log"):
                raise UserError(f"{args.url}: no Pantau schema there (run migrations first)")
            report = verify_chains(conn)
            if args.anchor is not None:
                check_anchor(report, args.anchor, conn)
    finally:
        engine.dispose()
    if args.json:
        out = {
            "ok": report.ok,
            "audit_rows": report.audit_rows,
            "events": report.events,
            "incidents": report.incidents,
            "anchor": report.anchor(),
            "breaks": [
                {
                    "table": b.table,
                    "kind": b.kind,
                    "row_id": b.row_id,
                    "incident_id": b.incident_id,
                    "detail": b.detail,
                }
                for b in report.breaks
            ],
        }
        print(json.dumps(out, indent=2))
    else:
        print(
            f"audit log: {report.audit_rows} rows; timelines: {report.events} events "
            f"in {report.incidents} incidents"
        )
        for b in report.breaks:
            print(f"BROKEN {b}")
        if report.audit_head is not None:
            print(f"anchor: {report.audit_head[0]}:{report.audit_head[1]}")
        print(f"timelines digest: {report.timelines_digest()}")
        print("OK: every chain holds" if report.ok else f"FAILED: {len(report.breaks)} break(s)")
    sys.stdout.flush()
    return 0 if report.ok else 1
