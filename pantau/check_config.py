"""`pantau check-config`: load and cross-check config/, print a summary or every error."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from pantau.cameras import load_cameras
from pantau.city import load_city
from pantau.errors import ConfigErrors
from pantau.settings import Settings


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="pantau check-config", description=__doc__)
    parser.add_argument("--config-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    config_dir = args.config_dir or Settings().config_dir
    try:
        city = load_city(config_dir)
        cameras = load_cameras(city)
    except ConfigErrors as err:
        print(f"{len(err.errors)} problem(s) in {config_dir}:", file=sys.stderr)
        for e in err.errors:
            print(f"  {e}", file=sys.stderr)
        return 1
    kinds = Counter(d.kind for d in city.devices.values())
    print(f"config OK: {config_dir}")
    print(f"  city: {city.facts.display_name} ({city.facts.time_zone.key})")
    print(
        f"  zones: 1 kota, {len(city.zones.kecamatan)} kecamatan, "
        f"{len(city.zones.kelurahan)} kelurahan"
    )
    print(f"  metrics: {len(city.catalogue.metrics)}; agencies: {', '.join(city.agencies)}")
    print(f"  devices: {len(city.devices)} ({', '.join(f'{k} {n}' for k, n in kinds.items())})")
    camera_kinds = Counter(c.kind.value for c in cameras.values())
    print(f"  cameras: {len(cameras)} ({', '.join(f'{k} {n}' for k, n in camera_kinds.items())})")
    return 0
