"""The retention levels on InfluxDB 2.x / 3.x by hand: the commands that build the bucket
plan (`retention.v2_buckets`) where Pantau cannot, or an operator wants to see it.

2.x: `pantau ingest` does this itself through the 2.x API (`ensure_retention_v2`);
these are the same steps with the `influx` CLI. 3.x (Core, Enterprise, Cloud) has no
buckets API and no DBRP mappings: InfluxQL's database/RP pair names a database
`db/rp` (InfluxData's "InfluxQL DBRP naming convention"), and a database's retention
is given when it is created (immutable on 3 Core).

    python -m pantau.influx.bucket_setup v2|v3    # for the current settings
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from pantau.influx.retention import v2_buckets
from pantau.settings import RetentionSettings, Settings


def _period(seconds: int) -> str:
    return f"{seconds // 86400}d" if seconds else "0"


def v2_commands(database: str, retention: RetentionSettings) -> list[str]:
    """`influx` CLI (2.x): a bucket per level with its retention (0: forever), mapped
    to the database/RP pair the InfluxQL of Pantau and its dashboards names."""
    out = []
    for plan in v2_buckets(database, retention):
        out.append(f"influx bucket create -n {plan.bucket} -r {_period(plan.retention_s)}")
        out.append(
            f"influx v1 dbrp create --db {plan.database} --rp {plan.rp} "
            f"--bucket-id <id of {plan.bucket}>" + (" --default" if plan.default else "")
        )
    return out


def v3_databases(database: str, retention: RetentionSettings) -> list[tuple[str, str | None]]:
    """(name, retention period or None for forever) of each 3.x database: `db/rp`, the
    raw level the plain `db` (what Pantau writes to and reads without an RP)."""
    out: list[tuple[str, str | None]] = []
    for plan in v2_buckets(database, retention):
        name = plan.database if plan.default else f"{plan.database}/{plan.rp}"
        out.append((name, _period(plan.retention_s) if plan.retention_s else None))
    return out


def v3_commands(database: str, retention: RetentionSettings) -> list[str]:
    return [
        "influxdb3 create database " + (f"--retention-period {period} " if period else "") + name
        for name, period in v3_databases(database, retention)
    ]


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args not in (["v2"], ["v3"]):
        print("usage: python -m pantau.influx.bucket_setup v2|v3", file=sys.stderr)
        return 2
    settings = Settings()
    make = v2_commands if args == ["v2"] else v3_commands
    print("\n".join(make(settings.influx.database, settings.retention)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
