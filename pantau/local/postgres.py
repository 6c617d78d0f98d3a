"""A private PostgreSQL cluster (Debian's `postgresql` server binaries) on a free port.

Tests and the demo get a server of their own, with a generated config, instead of
whatever runs on 5432. PostgreSQL refuses to run as root, so when we are root the
cluster runs as the `postgres` system user (via `setpriv`, which execs in place so
signals reach the server itself) and its data lives in a directory that user owns.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from pantau.local.errors import ServiceError
from pantau.local.ports import LOOPBACK, accepts_connections
from pantau.local.process import LocalService

SERVICE_USER = "postgres"

# A throwaway test cluster: durability settings off for speed (nothing here must
# survive a power cut; the reliability of the incident store is PostgreSQL's own).
FAST_UNSAFE = ("fsync=off", "synchronous_commit=off", "full_page_writes=off")


def server_binaries() -> Path:
    """The newest installed server's bin directory (Debian: /usr/lib/postgresql/N/bin)."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/postgres"),
        key=lambda p: int(Path(p).parent.parent.name),
    )
    if not found:
        binary = shutil.which("postgres")
        if binary is None:
            raise ServiceError("PostgreSQL server is not installed (run scripts/setup)")
        return Path(binary).parent
    return Path(found[-1]).parent


class Postgres(LocalService):
    """postgres listening on `host:port`, trust auth for the `postgres` role."""

    name = "postgres"

    def __init__(self, directory: Path, port: int, *, host: str = LOOPBACK) -> None:
        super().__init__(directory.resolve())
        self.host = host
        self.port = port
        self._bin = server_binaries()
        self._as_root = os.geteuid() == 0
        self._data: Path | None = None

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the `postgres` database (psycopg 3 driver)."""
        return self.url_of("postgres")

    def url_of(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@{self.host}:{self.port}/{database}"

    @property
    def data_dir(self) -> Path:
        if self._data is None:
            if self._as_root:
                # Outside the (root-only) run dir, owned by the service user.
                self._data = Path(tempfile.mkdtemp(prefix="pantau-pg-"))
                user = pwd.getpwnam(SERVICE_USER)
                os.chown(self._data, user.pw_uid, user.pw_gid)
            else:
                self._data = self.directory / "data"
        return self._data

    def _as_service_user(self, argv: Sequence[str]) -> list[str]:
        if not self._as_root:
            return list(argv)
        return [
            "setpriv",
            f"--reuid={SERVICE_USER}",
            f"--regid={SERVICE_USER}",
            "--init-groups",
            "--",
            *argv,
        ]

    def write_config(self) -> None:
        if (self.data_dir / "PG_VERSION").exists():
            return
        result = subprocess.run(
            self._as_service_user(
                [
                    str(self._bin / "initdb"),
                    "--pgdata",
                    str(self.data_dir),
                    "--username=postgres",
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--no-sync",
                ]
            ),
            capture_output=True,
            text=True,
            check=False,
            cwd="/",
        )
        if result.returncode != 0:
            raise ServiceError(f"initdb failed ({result.returncode}):\n{result.stderr[-2000:]}")

    def command(self) -> Sequence[str]:
        options = [f"listen_addresses={self.host}", f"port={self.port}"]
        options += ["unix_socket_directories=", *FAST_UNSAFE]
        argv = [str(self._bin / "postgres"), "-D", str(self.data_dir)]
        for option in options:
            argv += ["-c", option]
        return self._as_service_user(argv)

    def is_ready(self) -> bool:
        if not accepts_connections(self.host, self.port):
            return False
        result = subprocess.run(
            [str(self._bin / "pg_isready"), "-h", self.host, "-p", str(self.port), "-q"],
            check=False,
        )
        return result.returncode == 0

    def addresses(self) -> Sequence[tuple[str, int]]:
        return [(self.host, self.port)]

    def remove_data(self) -> None:
        """Delete the cluster (after stop); the run dir's own cleanup cannot reach it as root."""
        if self._data is not None and self._as_root:
            shutil.rmtree(self._data, ignore_errors=True)
            self._data = None
