"""`pantau backup DIR` and `pantau restore DIR` (see pantau.backup)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from pantau.backup import backup, restore
from pantau.settings import Settings


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="pantau backup",
        description="Back up the incident store, InfluxDB and the camera evidence into "
        "DIR (new or empty). Settings come from PANTAU_* variables.",
    )
    parser.add_argument("dir", type=Path)
    args = parser.parse_args(argv)
    m = backup(Settings(), args.dir)
    print(
        f"backed up {m.store_dialect} store (revision {m.store_revision}), InfluxDB "
        f"database {m.influx_database!r}"
        + (", evidence" if m.evidence_dir else "")
        + f" into {args.dir}"
    )
    return 0


def restore_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="pantau restore",
        description="Restore a `pantau backup` DIR into an empty store and an InfluxDB "
        "without the database, then migrate the store to this Pantau's schema.",
    )
    parser.add_argument("dir", type=Path)
    args = parser.parse_args(argv)
    m = restore(Settings(), args.dir)
    print(f"restored the backup of {m.created} from {args.dir}")
    return 0
