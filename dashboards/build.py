"""Generate the dashboards' JSON into dashboards/generated/ and tell when it is stale.

The JSON is committed so Grafana's file provisioning (deploy/grafana) and `pantau
dashboards push` need no Python at deploy time; a unit test fails when the committed
files differ from what the code and config build.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dashboards.catalog import build_all
from pantau.city import City

GENERATED = Path(__file__).resolve().parent / "generated"


def render(model: dict[str, Any]) -> str:
    return json.dumps(model, indent=2, ensure_ascii=False) + "\n"


def rendered(city: City) -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    return {f"{name}.json": render(d.to_json()) for name, d in build_all(city).items()}


def write(city: City, out: Path = GENERATED) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    files = rendered(city)
    for stale in set(p.name for p in out.glob("*.json")) - set(files):
        (out / stale).unlink()
    paths = []
    for name, text in files.items():
        path = out / name
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths


@dataclass(frozen=True, slots=True)
class Staleness:
    changed: tuple[str, ...]
    missing: tuple[str, ...]
    extra: tuple[str, ...]

    @property
    def fresh(self) -> bool:
        return not (self.changed or self.missing or self.extra)

    def __str__(self) -> str:
        parts = [
            f"{label}: {', '.join(names)}"
            for label, names in (
                ("out of date", self.changed),
                ("missing", self.missing),
                ("not built by the code", self.extra),
            )
            if names
        ]
        return "; ".join(parts) or "up to date"


def check(city: City, out: Path = GENERATED) -> Staleness:
    files = rendered(city)
    present = {p.name: p for p in out.glob("*.json")}
    return Staleness(
        changed=tuple(
            sorted(
                n
                for n, text in files.items()
                if n in present and present[n].read_text(encoding="utf-8") != text
            )
        ),
        missing=tuple(sorted(set(files) - set(present))),
        extra=tuple(sorted(set(present) - set(files))),
    )
