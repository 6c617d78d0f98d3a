"""What browser tests share: axe-core (installed from npm into a cache directory on
first use, pinned) for the accessibility check, and the directory screenshots are kept
in as artefacts."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

AXE_VERSION = "4.10.2"
REPO = Path(__file__).resolve().parent.parent


def cache_dir() -> Path:
    """$PANTAU_TEST_CACHE, else ~/.cache/pantau-tests."""
    return Path(os.environ.get("PANTAU_TEST_CACHE", Path.home() / ".cache" / "pantau-tests"))


def artifacts_dir(name: str) -> Path:
    """$PANTAU_ARTIFACTS/<name>, else run/artifacts/<name> in the repository (ignored by
    git), created."""
    base = Path(os.environ.get("PANTAU_ARTIFACTS", REPO / "run" / "artifacts"))
    out = base / name
    out.mkdir(parents=True, exist_ok=True)
    return out


def axe_script() -> Path:
    """axe.min.js of the pinned axe-core, installed with npm on first use."""
    prefix = cache_dir() / f"axe-core-{AXE_VERSION}"
    script = prefix / "node_modules" / "axe-core" / "axe.min.js"
    if script.exists():
        return script
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is needed for the accessibility check: run ./scripts/setup")
    prefix.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund", "--silent",
         f"axe-core@{AXE_VERSION}"],
        check=True,
        timeout=300,
    )  # fmt: skip
    if not script.exists():
        raise RuntimeError(f"npm installed axe-core but {script} is missing")
    return script


def serious_violations(page: Any) -> list[dict[str, Any]]:
    """Run axe-core (WCAG 2.1 A/AA rules) on a Playwright page; the serious and critical
    violations, each with the elements it found."""
    page.add_script_tag(path=str(axe_script()))
    result: dict[str, Any] = page.evaluate(
        """async () => await axe.run(document, {
            runOnly: {type: 'tag',
                      values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice']}
        })"""
    )
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]]}
        for v in result["violations"]
        if v["impact"] in {"serious", "critical"}
    ]
