"""`pantau ingest`: run the ingest service until SIGTERM / Ctrl-C.

pantau ingest                  # MQTT in; with PANTAU_INGEST__HTTP_PORT also HTTP in
pantau ingest token DEVICE     # a new HTTP token for DEVICE (printed once; rotates)
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Mapping, Sequence

from ingest.service import IngestService
from ingest.tokens import DeviceTokens
from pantau.cameras import Camera, load_cameras
from pantau.city import City, load_city
from pantau.influx.downsample import DownsampleLoop
from pantau.influx.prepare import prepare_storage
from pantau.influx.writers import make_writer
from pantau.lifecycle import Service, run_until_signalled
from pantau.settings import Settings

log = logging.getLogger("ingest")


def main(argv: Sequence[str]) -> int:
    if argv[:1] == ["token"]:
        return token(argv[1:])
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
    prepare_storage(settings)
    port = settings.ingest.http_port
    if settings.ingest.partitions:
        if port is not None:
            print(
                "pantau ingest: the HTTP intake runs in an ingest without partitions: "
                "unset PANTAU_INGEST__HTTP_PORT here, or PANTAU_INGEST__PARTITIONS there",
                file=sys.stderr,
            )
            return 2
        return run_partitioned(settings, city, cameras)  # a writer per partition
    writer = make_writer(settings.influx, connections=settings.ingest.write_concurrency + 1)
    service = IngestService(settings, city, writer, cameras=cameras)
    intake: Service = service
    if port is not None:
        # Imported only here: FastAPI and uvicorn are ~9 MB of an ingest's memory.
        from ingest.http import HttpIntake, WithHttpIntake  # noqa: PLC0415

        intake = WithHttpIntake(service, HttpIntake(service, settings.ingest, port))
    runner: Service = WithDownsampler(intake, DownsampleLoop(settings))

    def started() -> None:
        log.info(
            "ingest: %d devices, MQTT %s root %r -> InfluxDB %s (%s) db %r",
            len(city.devices),
            settings.mqtt.describe(),
            settings.mqtt.root,
            settings.influx.url,
            settings.influx.api.value,
            settings.influx.database,
        )
        if port is not None:
            log.info("HTTP intake on http://%s:%d/ingest/{device}", settings.ingest.http_host, port)

    run_until_signalled(runner, started=started)
    stats = service.stats
    log.info(
        "stopped: %d messages, %d readings written, rejected %s",
        stats.messages,
        stats.readings_written,
        dict(stats.rejected),
    )
    return 0


def run_partitioned(settings: Settings, city: City, cameras: Mapping[str, Camera]) -> int:
    """One replica of several (ingest.partitions): the partitions it leases."""
    # Imported here: the SQL store (SQLAlchemy, Alembic) is not loaded by a lone ingest.
    from ingest.partitions import PartitionedIngest  # noqa: PLC0415

    replica = PartitionedIngest(settings, city, cameras)

    def started() -> None:
        log.info(
            "ingest replica %s: %d partitions shared over the live replicas, MQTT %s:%d "
            "root %r -> InfluxDB %s db %r",
            settings.replica,
            len(replica.partitions),
            settings.mqtt.host,
            settings.mqtt.port,
            settings.mqtt.root,
            settings.influx.url,
            settings.influx.database,
        )

    # Every replica downsamples: the passes write the same points, so copies are harmless.
    run_until_signalled(WithDownsampler(replica, DownsampleLoop(settings)), started=started)
    return 0


class WithDownsampler:
    """Ingest and the downsampler that turns what it stored into aggregates."""

    def __init__(self, service: Service, downsampler: DownsampleLoop) -> None:
        self.service = service
        self.downsampler = downsampler

    def start(self) -> None:
        self.service.start()
        self.downsampler.start()

    def stop(self) -> None:
        self.downsampler.stop()
        self.service.stop()


def token(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="pantau ingest token",
        description="Make a new HTTP intake token for a device and print it once; the "
        "device's previous token stops working (only hashes are stored).",
    )
    parser.add_argument("device", help="a device id of config/devices.yaml")
    args = parser.parse_args(argv)
    settings = Settings()
    city = load_city(settings.config_dir)
    if args.device not in city.devices:
        print(
            f"pantau ingest token: {args.device!r} is not in the device registry", file=sys.stderr
        )
        return 2
    print(DeviceTokens(settings.ingest.http_tokens).rotate(args.device))
    return 0
