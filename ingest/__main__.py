"""`pantau ingest`: run the ingest service until SIGTERM / Ctrl-C."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

from ingest.service import IngestService
from pantau.cameras import load_cameras
from pantau.city import load_city
from pantau.influx.writers import V1Writer, WriteUnavailable, make_writer
from pantau.lifecycle import run_until_signalled
from pantau.settings import Settings

log = logging.getLogger("ingest")


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="pantau ingest",
        description="Consume {root}/sensors/+/up and {root}/cameras/+/analysis|status, "
        "validate, write to InfluxDB. "
        "Settings come from PANTAU_* environment variables (see README).",
    )
    parser.parse_args(argv)
    settings = Settings()
    city = load_city(settings.config_dir)
    cameras = load_cameras(city)
    writer = make_writer(settings.influx)
    if isinstance(writer, V1Writer):
        try:
            writer.ensure_database()
        except WriteUnavailable as err:
            # Not fatal: writes retry until InfluxDB is back; the database is created then
            # by whoever provisions it, or on our next start.
            log.warning("could not create database %r yet: %s", settings.influx.database, err)
    service = IngestService(settings, city, writer, cameras=cameras)

    def started() -> None:
        log.info(
            "ingest: %d devices, MQTT %s:%d root %r -> InfluxDB %s (%s) db %r",
            len(city.devices),
            settings.mqtt.host,
            settings.mqtt.port,
            settings.mqtt.root,
            settings.influx.url,
            settings.influx.api.value,
            settings.influx.database,
        )

    run_until_signalled(service, started=started)
    stats = service.stats
    log.info(
        "stopped: %d messages, %d readings written, rejected %s",
        stats.messages,
        stats.readings_written,
        dict(stats.rejected),
    )
    return 0
