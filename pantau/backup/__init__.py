"""Back up and restore what Pantau keeps: the incident store (incidents, timelines,
outbox, users, API keys, audit log, citizen reports and their photos), InfluxDB
(readings, their aggregates, KPI series) and the camera evidence JPEGs.

| part        | PostgreSQL / InfluxDB 1.x                 | SQLite                       |
|-------------|-------------------------------------------|------------------------------|
| store       | `pg_dump -Fc` / `pg_restore` (empty db)   | SQLite's online backup API   |
| influx      | `influxd backup -portable` / `restore`    | (same)                       |
| evidence    | a copy of the evidence directory          | (same)                       |

A backup directory holds `manifest.json` (what is in it, the store's Alembic revision)
beside the parts. A restore goes into an empty store and an InfluxDB without the
database, never over live data, then migrates the store to this Pantau's head: a
backup of an older Pantau restores into a newer one.
InfluxDB 2.x / 3.x: `influx backup` / `influx restore` (docs/operations.md#backup).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
import subprocess
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import inspect
from sqlalchemy.engine import make_url

from pantau.errors import UserError
from pantau.settings import InfluxApi, Settings
from pantau.store.migrate import VERSION_TABLE, make_engine, migrate

log = logging.getLogger(__name__)

FORMAT = 1
MANIFEST = "manifest.json"


@dataclass(frozen=True, slots=True)
class Manifest:
    format: int
    created: str
    store_dialect: str
    store_file: str
    store_revision: str | None
    influx_database: str
    influx_dir: str
    evidence_dir: str | None


def _tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/local/sbin:/usr/sbin:/sbin")
    if found is None:
        raise UserError(f"{name} is not installed (run scripts/setup)")
    return found


def _run(argv: list[str], env: dict[str, str] | None = None) -> None:
    log.info("backup: %s", " ".join(argv))
    done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise UserError(f"{Path(argv[0]).name} failed ({done.returncode}): {' | '.join(tail)}")


def _pg_args(url: str) -> tuple[list[str], dict[str, str]]:
    """libpq connection options of a SQLAlchemy URL; the password goes in the environment."""
    u = make_url(url)
    args = ["-h", u.host or "127.0.0.1", "-p", str(u.port or 5432), "-U", u.username or "postgres"]
    env = dict(os.environ)
    if u.password:
        env["PGPASSWORD"] = str(u.password)
    return [*args, "-d", u.database or "postgres"], env


def _revision(url: str) -> str | None:
    engine = make_engine(url)
    try:
        if not inspect(engine).has_table(VERSION_TABLE):
            return None
        with engine.connect() as conn:
            return conn.exec_driver_sql(f"SELECT version_num FROM {VERSION_TABLE}").scalar()  # noqa: S608
    finally:
        engine.dispose()


def _sqlite_path(url: str) -> Path:
    database = make_url(url).database
    if not database or database == ":memory:":
        raise UserError(f"cannot back up an in-memory SQLite store ({url})")
    return Path(database)


def _sqlite_copy(src: Path, dst: Path) -> None:
    """A consistent copy while writers may be running (SQLite's online backup API)."""
    with sqlite3.connect(src) as source, sqlite3.connect(dst) as target:
        source.backup(target)
    source.close()
    target.close()


def backup(settings: Settings, out: Path) -> Manifest:
    """Write a backup of everything Pantau keeps into the empty or new directory `out`."""
    if out.exists() and any(out.iterdir()):
        raise UserError(f"{out} is not empty: back up into a new directory")
    if settings.influx.api is InfluxApi.V2:
        raise UserError(
            "InfluxDB 2.x/3.x: back up with `influx backup` (docs/operations.md#backup)"
        )
    out.mkdir(parents=True, exist_ok=True)
    url = settings.database_url
    dialect = make_url(url).get_backend_name()
    revision = _revision(url)
    if dialect == "postgresql":
        store_file = "store.pgdump"
        args, env = _pg_args(url)
        _run([_tool("pg_dump"), "--format=custom", "--file", str(out / store_file), *args], env)
    elif dialect == "sqlite":
        store_file = "store.sqlite"
        _sqlite_copy(_sqlite_path(url), out / store_file)
    else:
        raise UserError(f"no backup for a {dialect} store (PostgreSQL or SQLite)")
    influx_dir = "influx"
    _run(
        [
            _tool("influxd"),
            "backup",
            "-portable",
            "-database",
            settings.influx.database,
            "-host",
            settings.influx.backup_address,
            str(out / influx_dir),
        ]
    )
    evidence: str | None = None
    if settings.evidence_dir.is_dir():
        evidence = "evidence"
        shutil.copytree(settings.evidence_dir, out / evidence)
    manifest = Manifest(
        format=FORMAT,
        created=datetime.now(UTC).isoformat(),
        store_dialect=dialect,
        store_file=store_file,
        store_revision=revision,
        influx_database=settings.influx.database,
        influx_dir=influx_dir,
        evidence_dir=evidence,
    )
    (out / MANIFEST).write_text(json.dumps(asdict(manifest), indent=2) + "\n")
    return manifest


def read_manifest(src: Path) -> Manifest:
    path = src / MANIFEST
    if not path.is_file():
        raise UserError(f"{src} holds no Pantau backup ({MANIFEST} missing)")
    data = json.loads(path.read_text())
    if data.get("format") != FORMAT:
        raise UserError(f"{path}: backup format {data.get('format')!r}, this Pantau reads {FORMAT}")
    return Manifest(**data)


def restore(settings: Settings, src: Path) -> Manifest:
    """Restore the backup in `src` into the (empty) store and InfluxDB that `settings`
    name, then migrate the store to this Pantau's newest schema."""
    m = read_manifest(src)
    if settings.influx.api is InfluxApi.V2:
        raise UserError(
            "InfluxDB 2.x/3.x: restore with `influx restore` (docs/operations.md#backup)"
        )
    url = settings.database_url
    dialect = make_url(url).get_backend_name()
    if dialect != m.store_dialect:
        raise UserError(f"the backup holds a {m.store_dialect} store, the settings name {dialect}")
    engine = make_engine(url)
    try:
        if inspect(engine).get_table_names():
            raise UserError(
                f"{engine.url.render_as_string()} is not empty: restore into a new database"
            )
    finally:
        engine.dispose()
    if dialect == "postgresql":
        args, env = _pg_args(url)
        _run(
            [_tool("pg_restore"), "--no-owner", "--exit-on-error", *args, str(src / m.store_file)],
            env,
        )
    else:
        _sqlite_copy(src / m.store_file, _sqlite_path(url))
    restore_cmd = [_tool("influxd"), "restore", "-portable", "-db", m.influx_database]
    if settings.influx.database != m.influx_database:
        restore_cmd += ["-newdb", settings.influx.database]
    _run([*restore_cmd, "-host", settings.influx.backup_address, str(src / m.influx_dir)])
    if m.evidence_dir is not None:
        shutil.copytree(src / m.evidence_dir, settings.evidence_dir, dirs_exist_ok=True)
    migrate(url)  # a backup of an older Pantau: bring its schema up to this one's
    return m
