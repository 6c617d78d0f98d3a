"""Layout rules a reviewer would otherwise have to remember (issue 14)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAX_LINES = 600
OWN_CODE = (
    "pantau",
    "ingest",
    "bridges",
    "vision",
    "rules",
    "api",
    "dashboards",
    "simulators",
    "demo",
)
NOT_OURS = {"node_modules", ".venv"}  # packages a benchmark installs (bench/nodered)
SUPPORT = ("testkit", "bench")


def test_no_module_outside_tests_is_over_600_lines() -> None:
    long = {
        str(path.relative_to(ROOT)): n
        for top in (*OWN_CODE, *SUPPORT)
        for path in (ROOT / top).rglob("*.py")
        if not NOT_OURS.intersection(path.parts)
        and (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not long, f"split these modules (over {MAX_LINES} lines): {long}"


def test_every_package_in_the_layout_is_type_checked_and_shipped() -> None:
    """A new top-level package must be added to mypy's list (and the wheel's, for
    Pantau's own code), or it silently escapes the checks."""
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    checked = text.split("[tool.mypy]", 1)[1].split("packages = ", 1)[1].split("\n", 1)[0]
    shipped = text.split("[tool.hatch.build.targets.wheel]", 1)[1].split("\n", 2)[1]
    for top in (*OWN_CODE, *SUPPORT, "tests"):
        assert f'"{top}"' in checked, top
    for top in OWN_CODE:
        assert f'"{top}"' in shipped, top
