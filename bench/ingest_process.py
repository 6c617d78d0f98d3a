"""bench.ingest's processes: `pantau ingest` as a subprocess (this tree's, or another
commit's for a before / after comparison) and py-spy flame graphs of it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from pantau.local import LocalStack

RESULTS_DIR = Path(__file__).resolve().parent / "results"


class IngestProcess:
    """`python -m pantau.cli ingest` with its own topic root, database and client id: a
    process of its own, as deployed, so its GIL does not share this script's."""

    def __init__(
        self, stack: LocalStack, root: str, database: str, log: Path, source: Path | None = None
    ) -> None:
        """With `source`, the ingest of that source tree (another commit's, for a before /
        after comparison) runs instead of this one, in this environment."""
        self._env = {
            **os.environ,
            **stack.environment(),
            "PANTAU_MQTT__ROOT": root,
            "PANTAU_INFLUX__DATABASE": database,
            "PANTAU_INGEST__CLIENT_ID": f"bench-{root}",
        }
        if source is not None:  # `python -m` puts the working directory first on sys.path
            self._env["PYTHONPATH"] = str(source)
        self._cwd = source
        self.log = log
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def start(self) -> None:
        with self.log.open("ab") as sink:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "pantau.cli", "ingest"],
                env=self._env,
                cwd=self._cwd,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def peak_rss_mb(self) -> float | None:
        """The process's peak resident memory so far (VmHWM), in MB."""
        try:
            with open(f"/proc/{self.pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) / 1024
        except OSError:
            pass
        return None

    def stop(self) -> None:
        if self._proc is None or self._proc.poll() is not None:
            return
        self._proc.send_signal(signal.SIGTERM)
        try:
            self._proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()

    def log_tail(self, lines: int = 15) -> str:
        if not self.log.exists():
            return "(no log)"
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


class FlameGraph:
    """py-spy samples a running ingest for a `with` block: an SVG flame graph in
    bench/results/ingest-flame-<date>-<case>.svg (every thread, idle time left out)."""

    def __init__(self, pid: int, case: str) -> None:
        day = datetime.now(UTC).date().isoformat()
        self.path = RESULTS_DIR / f"ingest-flame-{day}-{case}.svg"
        self._argv = ["py-spy", "record", "--pid", str(pid), "--threads", "-r", "250"]
        self._argv += ["--format", "flamegraph", "-o", str(self.path)]
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> FlameGraph:
        RESULTS_DIR.mkdir(exist_ok=True)
        self._proc = subprocess.Popen(self._argv, stdout=subprocess.DEVNULL)
        time.sleep(0.5)  # attached before the publishers start
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._proc is not None
        self._proc.send_signal(signal.SIGINT)  # py-spy writes the SVG on SIGINT
        self._proc.wait(timeout=60)


def baseline_tree(ref: str, into: Path) -> Path:
    """The source of git commit `ref`, exported to `into` (its ingest runs in this
    environment: a dependency added since is simply not used by it)."""
    into.mkdir()
    archive = subprocess.run(["git", "archive", ref], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into
