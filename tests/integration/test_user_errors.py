"""Errors a user can cause end in one line that says what to do, never a traceback:
each is provoked for real against the `pantau` command in a subprocess."""

from __future__ import annotations

import fcntl
import os
import secrets
import socket
import subprocess
import sys
from pathlib import Path

from ingest.spool import Spool
from pantau.settings import Settings


def pantau(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # No PANTAU_* of the caller's environment leaks in: only what the test gives.
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PANTAU_")}
    return subprocess.run(
        [sys.executable, "-m", "pantau.cli", *args],
        check=False,
        cwd=cwd,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def last_line(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines, "no message at all"
    return lines[-1]


def test_second_demo_in_the_same_run_dir(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with (run_dir / "demo.lock").open("a+") as held:  # the first demo
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        result = pantau(["demo", "--run-dir", str(run_dir)], tmp_path, {})
    assert result.returncode == 2
    assert last_line(result) == (
        f"pantau demo: another pantau demo is running in {run_dir}: stop it (Ctrl-C), "
        "or give this one another --run-dir"
    )


def test_spool_in_use_by_another_ingest(tmp_path: Path, settings: Settings) -> None:
    spool_dir = tmp_path / "spool"
    first = Spool(spool_dir, max_bytes=1 << 20, segment_bytes=1 << 16).open()
    try:
        env = {
            "PANTAU_INGEST__SPOOL_DIR": str(spool_dir),
            "PANTAU_MQTT__HOST": settings.mqtt.host,
            "PANTAU_MQTT__PORT": str(settings.mqtt.port),
            "PANTAU_MQTT__ROOT": settings.mqtt.root,
        }
        result = pantau(["ingest"], tmp_path, env)
    finally:
        first.close()
    assert result.returncode == 2
    line = last_line(result)
    assert line.startswith(f"pantau ingest: the spool {spool_dir} is in use by another"), line
    assert "stop that one first" in line


def test_api_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {
            "PANTAU_API__JWT_SECRET": secrets.token_urlsafe(32),
            "PANTAU_DATABASE_URL": f"sqlite:///{tmp_path}/pantau.db",
        }
        result = pantau(["api", "serve", "--host", "127.0.0.1", "--port", str(port)], tmp_path, env)
    assert result.returncode == 2
    assert last_line(result) == (
        f"pantau api: port {port} on 127.0.0.1 is already in use (another pantau api "
        "running?): stop that process, or choose a free port with --port"
    )


def test_api_without_a_signing_key(tmp_path: Path) -> None:
    env = {"PANTAU_DATABASE_URL": f"sqlite:///{tmp_path}/pantau.db"}
    result = pantau(["api"], tmp_path, env)
    assert result.returncode == 2
    line = last_line(result)
    assert line.startswith("pantau api: refusing to start: no signing key: set PANTAU_API__JWT"), (
        line
    )


def test_weak_secret_in_production(tmp_path: Path) -> None:
    env = {"PANTAU_ENVIRONMENT": "production", "PANTAU_API__JWT_SECRET": "short"}
    result = pantau(["api"], tmp_path, env)
    assert result.returncode == 2
    line = last_line(result)
    assert line.startswith("pantau api: settings refused:") and "jwt_secret" in line, line
