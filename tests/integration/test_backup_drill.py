"""The backup drill: play the storm (the small second city's, so the drill stays quick;
Tangerang's is the same code with 325 devices), let the crews answer, back everything
up with `pantau backup`, restore it into a fresh stack (a new PostgreSQL database and a
new influxd from pantau.local) with `pantau restore`, and find the same incidents,
timelines, audit log, every other table, KPI table and stored readings (raw and
aggregated)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from pydantic import SecretStr
from sqlalchemy import MetaData, create_engine, select

from api.context import build_context
from demo.apiserver import HttpApi, serve
from demo.ekinerja import FOLLOW, answer_and_evaluate, storm_kpis
from demo.run import play
from pantau.backup import read_manifest
from pantau.city import City, load_city
from pantau.cli import main as pantau
from pantau.clock import ManualClock
from pantau.influx.downsample import Downsampler
from pantau.influx.query import InfluxQL, quote_ident
from pantau.influx.retention import ensure_retention
from pantau.local.influxd import Influxd
from pantau.local.ports import free_port
from pantau.local.postgres import Postgres
from pantau.settings import ApiSettings, InfluxSettings, RulesSettings, Settings
from pantau.zoneindex import ZoneIndex
from simulators.scenario import load_scenario
from tests.integration.test_second_city import write_config

pytestmark = pytest.mark.integration


def _tables(url: str) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table, in a stable order."""
    engine = create_engine(url)
    try:
        meta = MetaData()
        meta.reflect(engine)
        with engine.connect() as conn:
            return {
                name: sorted((tuple(r) for r in conn.execute(select(t))), key=repr)
                for name, t in meta.tables.items()
            }
    finally:
        engine.dispose()


def _points(influx: InfluxSettings) -> dict[str, list[tuple[object, ...]]]:
    """Every point of every measurement in every retention policy."""
    db = influx.database
    out: dict[str, list[tuple[object, ...]]] = {}
    with InfluxQL.from_settings(influx) as client:
        rps = [str(r["name"]) for r in client.rows(f"SHOW RETENTION POLICIES ON {quote_ident(db)}")]
        for rp in rps:
            for s in client.query(
                f"SELECT * FROM {quote_ident(db)}.{quote_ident(rp)}./.*/", epoch="ms"
            ):
                out[f"{rp}.{s.name}"] = sorted(s.values, key=repr)
    return out


def _kpis(
    settings: Settings, city: City, zones: ZoneIndex, start: datetime, end: datetime
) -> list[object]:
    ctx = build_context(
        settings, clock=ManualClock(end + FOLLOW + timedelta(days=1)), city=city, zones=zones
    )
    try:
        with serve(ctx) as url:
            return [(r.name, r.kpi) for r in storm_kpis(HttpApi(url), ctx, start, end)]
    finally:
        ctx.close()


@pytest.fixture
def fresh_influxd(tmp_path: Path) -> Iterator[Influxd]:
    server = Influxd(tmp_path / "influxd-restored", free_port(), free_port())
    server.directory.mkdir(parents=True)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def second_postgres_db(postgres: Postgres) -> Iterator[str]:
    name = f"restored_{uuid.uuid4().hex[:12]}"
    admin = f"host={postgres.host} port={postgres.port} user=postgres dbname=postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield postgres.url_of(name)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.mark.timeout(900)
def test_backup_restores_the_storm_into_a_fresh_stack(
    settings: Settings,
    postgres_url: str,
    second_postgres_db: str,
    fresh_influxd: Influxd,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    api = ApiSettings(
        jwt_secret=SecretStr("backup-drill-" + "0123456789abcdefghijklmnopqrstuv"),
        argon2_memory_kib=1024,
        argon2_time_cost=1,
    )
    evidence = tmp_path / "evidence"
    (evidence / "cam-1").mkdir(parents=True)
    (evidence / "cam-1" / "frame-1.jpg").write_bytes(b"\xff\xd8 a frame \xff\xd9")
    scenario = write_config(tmp_path / "config")
    source = settings.model_copy(
        update={
            "config_dir": tmp_path / "config",
            "database_url": postgres_url,
            "api": api,
            "evidence_dir": evidence,
            "rules": RulesSettings(tick_interval_s=0),  # the storm's time is past
        }
    )
    city = load_city(source.config_dir)
    zones = ZoneIndex.for_city(city)
    ensure_retention(source.influx, source.retention)
    played = play(source, city, zones, load_scenario(scenario, city))
    assert played is not None and played.judged
    played.store.close()
    start, end = played.report.start, played.report.end
    answer_and_evaluate(source, city, zones, start, end)
    ds = Downsampler.from_settings(source)
    try:
        ds.run(start, end)
    finally:
        ds.close()
    kpis_before = _kpis(source, city, zones, start, end)
    tables_before = _tables(postgres_url)
    points_before = _points(source.influx)
    assert len(tables_before["incidents"]) >= 3
    assert tables_before["audit_log"], "the crews' answers are audited"
    assert {"autogen.water_level", "agg_5m.water_level", "agg_1h.water_level"} <= set(points_before)

    out = tmp_path / "backup"
    for name, value in _env(source).items():
        monkeypatch.setenv(name, value)
    assert pantau(["backup", str(out)]) == 0
    assert read_manifest(out).store_dialect == "postgresql"

    target = source.model_copy(
        update={
            "database_url": second_postgres_db,
            "evidence_dir": tmp_path / "evidence-restored",
            "influx": InfluxSettings(
                url=fresh_influxd.url,
                database=source.influx.database,
                backup_address=f"{fresh_influxd.host}:{fresh_influxd.rpc_port}",
            ),
        }
    )
    for name, value in _env(target).items():
        monkeypatch.setenv(name, value)
    assert pantau(["restore", str(out)]) == 0
    # Never over live data: a second restore into the now full store is refused.
    assert pantau(["restore", str(out)]) == 2

    assert _tables(second_postgres_db) == tables_before
    assert _points(target.influx) == points_before
    assert (target.evidence_dir / "cam-1" / "frame-1.jpg").read_bytes().startswith(b"\xff\xd8")
    assert _kpis(target, city, zones, start, end) == kpis_before


def _env(s: Settings) -> dict[str, str]:
    return {
        "PANTAU_DATABASE_URL": s.database_url,
        "PANTAU_CONFIG_DIR": str(s.config_dir),
        "PANTAU_EVIDENCE_DIR": str(s.evidence_dir),
        "PANTAU_INFLUX__URL": s.influx.url,
        "PANTAU_INFLUX__DATABASE": s.influx.database,
        "PANTAU_INFLUX__BACKUP_ADDRESS": s.influx.backup_address,
    }
