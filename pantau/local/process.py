"""A local service as a child process: start, readiness wait, stop, kill, restart.

Subclasses say how to write their config, what to exec and when they are ready; this
base does the process handling the same way for every service.
"""

from __future__ import annotations

import atexit
import logging
import shutil
import signal
import subprocess
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

from pantau.local.errors import ServiceError
from pantau.local.ports import accepts_connections

log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 10.0
READY_TIMEOUT_S = 30.0
_POLL_S = 0.05

# Services still running when the interpreter exits (a test run that crashed, a
# forgotten context manager) are stopped, so no broker outlives its owner.
_running: set[LocalService] = set()


def find_executable(name: str) -> str:
    """Path of a service binary; Debian puts some in /usr/sbin, off a user's PATH."""
    found = shutil.which(name) or shutil.which(name, path="/usr/local/sbin:/usr/sbin:/sbin")
    if found is None:
        raise ServiceError(f"{name} is not installed (run scripts/setup)")
    return found


class LocalService(ABC):
    """One service process with its config and data under `directory`."""

    name: str  # e.g. "mosquitto"; names the log file and error messages

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._process: subprocess.Popen[bytes] | None = None

    # --- what a subclass provides ------------------------------------------------

    @abstractmethod
    def write_config(self) -> None:
        """Create directories and write the config file; called before every start."""

    @abstractmethod
    def command(self) -> Sequence[str]:
        """argv of the service."""

    @abstractmethod
    def is_ready(self) -> bool:
        """One quick readiness probe (no waiting)."""

    @abstractmethod
    def addresses(self) -> Sequence[tuple[str, int]]:
        """(host, port) pairs the service listens on."""

    def log_files(self) -> Sequence[Path]:
        """Files worth showing when the service fails, besides its console output."""
        return ()

    # --- shared process handling -------------------------------------------------

    @property
    def console_log(self) -> Path:
        """stdout and stderr of the process."""
        return self.directory / f"{self.name}.console.log"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self.running and self._process else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, ready_timeout_s: float = READY_TIMEOUT_S) -> None:
        """Write the config, start the process and wait until it serves."""
        if self.running:
            raise ServiceError(f"{self.name} is already running (pid {self.pid})")
        for host, port in self.addresses():
            # Another server there would answer the readiness probe in our place.
            if accepts_connections(host, port):
                raise ServiceError(f"{self.name}: {host}:{port} is already in use")
        self.directory.mkdir(parents=True, exist_ok=True)
        self.write_config()
        argv = list(self.command())
        with self.console_log.open("ab") as console:
            try:
                # A session of its own: Ctrl-C in a terminal reaches only the owner,
                # which then stops the service cleanly instead of racing it.
                self._process = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=console,
                    stderr=subprocess.STDOUT,
                    cwd=self.directory,
                    start_new_session=True,
                )
            except OSError as err:
                raise ServiceError(f"cannot run {argv[0]}: {err} (run scripts/setup)") from err
        _running.add(self)
        log.info("%s started (pid %d), waiting until ready", self.name, self._process.pid)
        self._wait_ready(ready_timeout_s)

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM, so the service saves its state; SIGKILL if it takes too long."""
        process = self._process
        if process is None or process.poll() is not None:
            self._forget()
            return
        process.terminate()
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            log.warning("%s ignored SIGTERM for %.0f s, killing it", self.name, timeout_s)
            process.kill()
            process.wait()
        log.info("%s stopped (exit %s)", self.name, process.returncode)
        self._forget()

    def kill(self) -> None:
        """SIGKILL without any chance to save: what a crash or power cut looks like."""
        process = self._process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait()
            log.info("%s killed", self.name)
        self._forget()

    def restart(self, ready_timeout_s: float = READY_TIMEOUT_S) -> None:
        """Stop (if running) and start again on the same ports and data."""
        self.stop()
        self.start(ready_timeout_s)

    def log_tail(self, lines: int = 30) -> str:
        parts = []
        for path in (self.console_log, *self.log_files()):
            if path.exists():
                tail = path.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- {path} (last {len(tail)} lines)\n" + "\n".join(tail))
        return "\n".join(parts) or "(no log written)"

    def _wait_ready(self, timeout_s: float) -> None:
        assert self._process is not None
        deadline = time.monotonic() + timeout_s
        while True:
            code = self._process.poll()
            if code is not None:
                self._forget()
                raise ServiceError(f"{self.name} exited with {code}\n{self.log_tail()}")
            if self.is_ready():
                log.info("%s ready", self.name)
                return
            if time.monotonic() > deadline:
                self.kill()
                raise ServiceError(
                    f"{self.name} not ready after {timeout_s:.0f} s\n{self.log_tail()}"
                )
            time.sleep(_POLL_S)

    def _forget(self) -> None:
        _running.discard(self)


@atexit.register
def _stop_leftovers() -> None:
    for service in list(_running):
        service.stop(timeout_s=5.0)
