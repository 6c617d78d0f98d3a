"""Alembic environment for the incident store, configured in code by pantau.store.migrate.

`migrate(url)` hands over an open connection in `config.attributes["connection"]`; there
is no alembic.ini.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from pantau.store.migrate import VERSION_TABLE
from pantau.store.models import Base


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        version_table=VERSION_TABLE,
        render_as_batch=connection.dialect.name == "sqlite",  # ALTER on SQLite
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through pantau.store.migrate(), which passes a connection")
_run(connection)
