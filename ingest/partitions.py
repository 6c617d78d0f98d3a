"""Ingest as N replicas: partition sessions in one shared subscription, leased.

With `ingest.partitions` = N > 0 there are N persistent MQTT sessions named for the
partition, not the process (`{client_id}-p0` ... `-p{N-1}`), all in the shared
subscription `$share/{client_id}/...`: the broker hands each message to one of them.
Each partition is leased (pantau.store.leases, kind `ingest`) to one live replica at a
time, which runs that session with its own spool (ingest.service, one per partition).

A replica that dies leaves its partitions' sessions on the broker: Mosquitto goes on
queueing their round-robin share of messages for them while they are offline, and keeps
the messages it had sent them unacknowledged (docs/architecture.md#scaling-out). When
its leases expire (ttl), a survivor takes them at its next balance, resumes those
sessions by their names and gets all of it; it also opens the partition's spool (a
directory the replicas share) and writes to InfluxDB what the dead one had acknowledged
but not yet written. A message redelivered after a crash is stored again under the same
point identity (measurement + tags + device time), so it overwrites, never duplicates.

A replica that cannot renew its leases for a whole ttl stops its partitions: by then
another may hold them. Were two processes ever to run one partition at once, the broker
would still give its session to one connection at a time (a second CONNECT with the
same client id takes the session over) and the spool's lock admits one process.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping

from ingest.service import IngestService
from ingest.spool import SpoolLocked
from pantau.cameras import Camera
from pantau.city import City
from pantau.influx.writers import make_writer
from pantau.settings import Settings
from pantau.store import make_engine, migrate
from pantau.store.leases import Leases

log = logging.getLogger(__name__)

KIND = "ingest"


def partition_names(count: int) -> list[str]:
    return [f"p{i}" for i in range(count)]


def partition_settings(settings: Settings, partition: str) -> Settings:
    """One partition's service settings: its session name and spool; no metrics port
    (one process runs several partitions); a stop writes the spool out for at most one
    lease period, so handing a partition over never holds up the renewal of the others
    (whoever takes the partition writes the rest)."""
    ingest = settings.ingest
    spool_dir = None if ingest.spool_dir is None else ingest.spool_dir / partition
    return settings.model_copy(
        update={
            "ingest": ingest.model_copy(
                update={
                    "client_id": f"{ingest.client_id}-{partition}",
                    "spool_dir": spool_dir,
                    "partitions": 0,
                    "stop_drain_s": min(ingest.stop_drain_s, settings.leases.period_s),
                }
            ),
            "metrics": settings.metrics.model_copy(update={"port": None}),
        }
    )


class PartitionedIngest:
    """The partitions this replica holds, re-balanced every `leases.period_s`."""

    def __init__(
        self, settings: Settings, city: City, cameras: Mapping[str, Camera] | None = None
    ) -> None:
        if settings.ingest.partitions < 1:
            raise ValueError("PartitionedIngest needs ingest.partitions >= 1")
        self._settings = settings
        self._city = city
        self._cameras = cameras
        self.partitions = partition_names(settings.ingest.partitions)
        engine = make_engine(settings.database_url)
        migrate(engine)
        self._engine = engine
        self.leases = Leases(engine, KIND, settings.replica, settings.leases.ttl_s)
        self.running: dict[str, IngestService] = {}
        self._stop = threading.Event()
        self._last_ok = time.monotonic()
        self._thread = threading.Thread(target=self._loop, name="ingest-leases", daemon=True)

    def start(self) -> None:
        self._balance()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        for partition in list(self.running):
            self._stop_partition(partition)
        try:
            self.leases.release_all()  # the others take them at once, not after a ttl
        except Exception as err:
            log.warning("could not give back the ingest leases: %s", err)
        self._engine.dispose()

    def _loop(self) -> None:
        while not self._stop.wait(self._settings.leases.period_s):
            self._balance()

    def _balance(self) -> None:
        try:
            held, lost = self.leases.balance(self.partitions)
        except Exception as err:
            log.warning("cannot renew the ingest leases: %s", err)
            if time.monotonic() - self._last_ok >= self._settings.leases.ttl_s:
                for partition in list(self.running):  # another replica may hold them now
                    log.warning("stopping partition %s: its lease may have expired", partition)
                    self._stop_partition(partition)
            return
        self._last_ok = time.monotonic()
        for partition in lost:
            if partition in self.running:
                self._stop_partition(partition)
        for lease in held:
            if lease.key not in self.running:
                self._start_partition(lease.key, lease.epoch)

    def _start_partition(self, partition: str, epoch: int) -> None:
        settings = partition_settings(self._settings, partition)
        service = IngestService(
            settings,
            self._city,
            make_writer(settings.influx, connections=settings.ingest.write_concurrency + 1),
            cameras=self._cameras,
            share_group=self._settings.ingest.client_id,
            metrics_name=f"ingest_{partition}",
        )
        try:
            service.start()
        except SpoolLocked as err:  # its previous owner is still stopping
            log.warning("partition %s not started yet: %s", partition, err)
            lease = self.leases.held.get(partition)
            if lease is not None:
                self.leases.release(lease)
            return
        self.running[partition] = service
        log.info(
            "%s runs ingest partition %s (lease epoch %d): session %s",
            self._settings.replica,
            partition,
            epoch,
            settings.ingest.client_id,
        )

    def _stop_partition(self, partition: str) -> None:
        service = self.running.pop(partition)
        service.stop()
        log.info("%s stopped ingest partition %s", self._settings.replica, partition)
