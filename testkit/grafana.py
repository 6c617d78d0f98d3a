"""Grafana's front-end library (@grafana/data from npm, at the version docker-compose
pins) for the dashboard tests: the units it knows, its transformations run on real
query results, and how it displays a value (mappings, thresholds, unit).

The package is installed once per version into a cache directory (not the repository):
`$PANTAU_CACHE_DIR` or `~/.cache/pantau`, with `npm install --ignore-scripts`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = Path(__file__).resolve().parent / "grafana_data.cjs"
COMPOSE = ROOT / "docker-compose.yml"
_IMAGE = re.compile(r"^\s*image:\s*grafana/grafana(?:-oss)?:(\d+\.\d+\.\d+)\s*$", re.M)


class GrafanaDataError(RuntimeError):
    """npm or node failed; the message carries their output."""


def pinned_grafana_version(compose: Path = COMPOSE) -> str:
    """The Grafana release docker-compose.yml runs (its image tag)."""
    found = _IMAGE.findall(compose.read_text(encoding="utf-8"))
    if len(found) != 1:
        raise GrafanaDataError(f"{compose}: expected one pinned grafana image, found {found}")
    return str(found[0])


def cache_dir() -> Path:
    return Path(os.environ.get("PANTAU_CACHE_DIR", Path.home() / ".cache" / "pantau"))


@dataclass(frozen=True, slots=True)
class Frame:
    """A data frame as Grafana holds it: named columns; `-inf` stands for -Infinity."""

    ref_id: str
    fields: dict[str, list[Any]]

    def to_json(self) -> dict[str, Any]:
        def kind(values: list[Any]) -> str:
            sample = next((v for v in values if v is not None), None)
            return "string" if isinstance(sample, str) and sample != "-inf" else "number"

        return {
            "refId": self.ref_id,
            "fields": [
                {"name": name, "type": kind(values), "values": values}
                for name, values in self.fields.items()
            ],
        }

    @property
    def length(self) -> int:
        return len(next(iter(self.fields.values()), []))

    def rows(self) -> list[dict[str, Any]]:
        return [{k: v[i] for k, v in self.fields.items()} for i in range(self.length)]


class GrafanaData:
    def __init__(self, version: str | None = None) -> None:
        self.version = version or pinned_grafana_version()
        self.home = cache_dir() / f"grafana-data-{self.version}"

    def install(self) -> None:
        if (self.home / "node_modules" / "@grafana" / "data" / "package.json").exists():
            return
        npm = shutil.which("npm")
        if npm is None:
            raise GrafanaDataError("npm is not installed (scripts/setup installs it)")
        self.home.parent.mkdir(parents=True, exist_ok=True)
        # Install beside, then rename: a second test process never sees half a package.
        work = Path(tempfile.mkdtemp(prefix="grafana-data-", dir=self.home.parent))
        (work / "package.json").write_text('{"private": true}\n', encoding="utf-8")
        done = subprocess.run(
            [
                npm,
                "install",
                "--ignore-scripts",
                "--no-audit",
                "--no-fund",
                "--silent",
                f"@grafana/data@{self.version}",
            ],
            cwd=work,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if done.returncode != 0:
            shutil.rmtree(work, ignore_errors=True)
            raise GrafanaDataError(f"npm install @grafana/data@{self.version}: {done.stderr}")
        try:
            work.rename(self.home)
        except OSError:  # another process installed it first
            shutil.rmtree(work, ignore_errors=True)

    def _call(self, request: Mapping[str, Any]) -> dict[str, Any]:
        self.install()
        node = shutil.which("node")
        if node is None:
            raise GrafanaDataError("node is not installed (scripts/setup installs it)")
        done = subprocess.run(
            [node, str(SCRIPT)],
            input=json.dumps(request),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env={**os.environ, "NODE_PATH": str(self.home / "node_modules")},
        )
        if done.returncode != 0:
            raise GrafanaDataError(f"@grafana/data {request.get('op')}: {done.stderr[-2000:]}")
        answer: dict[str, Any] = json.loads(done.stdout)
        return answer

    def units(self) -> set[str]:
        return set(self._call({"op": "units"})["units"])

    def transform(
        self, frames: Sequence[Frame], transformations: Sequence[Mapping[str, Any]]
    ) -> list[Frame]:
        answer = self._call(
            {
                "op": "transform",
                "frames": [f.to_json() for f in frames],
                "transformations": list(transformations),
            }
        )
        return [
            Frame(f["refId"], {x["name"]: x["values"] for x in f["fields"]})
            for f in answer["frames"]
        ]

    def display(self, config: Mapping[str, Any], values: Sequence[Any]) -> list[dict[str, str]]:
        """How Grafana shows each value with this field config: text, suffix, colour."""
        shown: list[dict[str, str]] = self._call(
            {"op": "display", "config": config, "values": list(values)}
        )["shown"]
        return shown
