"""Shared fixtures: one private mosquitto + influxd per test run, isolated per test.

Each test gets its own topic root and database, so tests share the services without
seeing each other's messages or points.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest

from pantau.local import LocalStack
from pantau.local.ports import free_port
from pantau.local.postgres import Postgres
from pantau.settings import Settings


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """mosquitto and influxd on free ports, started once for the session."""
    with LocalStack(tmp_path_factory.mktemp("stack")) as local:
        yield local


@pytest.fixture
def topic_root() -> str:
    """A topic root of this test's own, e.g. `t3f9c0a1b2c4d`."""
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
def influx_db(stack: LocalStack) -> Iterator[str]:
    """A fresh, empty InfluxDB database, dropped after the test."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    stack.create_database(name)
    yield name
    stack.drop_database(name)


@pytest.fixture
def settings(stack: LocalStack, topic_root: str, influx_db: str) -> Settings:
    """Pantau settings pointing at the stack with this test's root and database."""
    return stack.settings(database=influx_db, root=topic_root)


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Postgres]:
    """A private PostgreSQL cluster on a free port, started once for the session."""
    server = Postgres(tmp_path_factory.mktemp("postgres"), free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()
        server.remove_data()


@pytest.fixture
def postgres_url(postgres: Postgres) -> Iterator[str]:
    """SQLAlchemy URL of a fresh, empty PostgreSQL database, dropped after the test."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    admin = f"host={postgres.host} port={postgres.port} user=postgres dbname=postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield postgres.url_of(name)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
