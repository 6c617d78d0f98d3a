"""What Pantau sets up in InfluxDB before it stores anything: the database (1.x), the
retention policies or buckets (pantau.influx.retention) and the level table the
dashboards pick a resolution from (pantau.influx.level_table). Idempotent; `pantau
ingest` runs it at every start and the demo before it plays, so a Grafana pointed at
either finds the same shape."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from pantau.influx import level_table
from pantau.influx.query import InfluxQLError
from pantau.influx.retention import ensure_retention
from pantau.influx.writers import V1Writer, WriteRejected, WriteUnavailable, make_writer
from pantau.settings import Settings

log = logging.getLogger(__name__)


def prepare_storage(settings: Settings) -> None:
    """Not fatal when InfluxDB is away: writes retry until it is back, and the next
    start sets up what is missing."""
    writer = make_writer(settings.influx)
    try:
        if isinstance(writer, V1Writer):
            try:
                writer.ensure_database()
            except WriteUnavailable as err:
                log.warning("could not create database %r yet: %s", settings.influx.database, err)
    finally:
        writer.close()
    try:
        ensure_retention(settings.influx, settings.retention)
        # Also rewritten by the downsampler, which may be off.
        level_table.write(settings.influx, settings.retention, datetime.now(UTC))
    except (InfluxQLError, WriteRejected, WriteUnavailable) as err:
        log.warning("could not set up retention yet (next start will): %s", err)
