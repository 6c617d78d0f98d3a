"""What each ingest partition runs as: its own session name, spool and bounded stop."""

from __future__ import annotations

from pathlib import Path

from ingest.partitions import partition_names, partition_settings
from pantau.settings import IngestSettings, LeaseSettings, MetricsSettings, Settings


def test_each_partition_has_its_session_and_spool_and_stops_within_a_period() -> None:
    settings = Settings(
        ingest=IngestSettings(client_id="pantau-ingest", partitions=4, spool_dir=Path("/s")),
        leases=LeaseSettings(ttl_s=10, period_s=2),
        metrics=MetricsSettings(port=9100),
    )
    assert partition_names(4) == ["p0", "p1", "p2", "p3"]
    p2 = partition_settings(settings, "p2")
    assert p2.ingest.client_id == "pantau-ingest-p2"
    assert p2.ingest.spool_dir == Path("/s/p2")
    assert p2.ingest.partitions == 0  # the partition's service is one plain session
    assert p2.ingest.stop_drain_s == 2  # not the default 10: renewals must go on
    assert p2.metrics.port is None  # several partitions in one process
    assert settings.ingest.client_id == "pantau-ingest"  # the original is untouched


def test_a_default_spool_is_per_partition_and_shared_by_the_replicas() -> None:
    settings = Settings(ingest=IngestSettings(partitions=2))
    paths = {
        partition_settings(settings, p).ingest.spool_path("root", "db") for p in partition_names(2)
    }
    assert len(paths) == 2  # two spools; the same two for every replica on the host
    again = {
        partition_settings(Settings(ingest=IngestSettings(partitions=2)), p).ingest.spool_path(
            "root", "db"
        )
        for p in partition_names(2)
    }
    assert paths == again
