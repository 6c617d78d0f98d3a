"""Ingest at the ends of a burst: the last batch goes without waiting out its linger
(group commit), and a burst larger than the inbox waits at the broker, not in memory,
without holding up the dead letters' acknowledgements."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from ingest.service import IngestService
from pantau.city import City, load_city
from pantau.influx.query import InfluxQL
from pantau.influx.writers import make_writer
from pantau.local import LocalStack
from pantau.settings import Settings
from pantau.topics import Topics
from testkit.mqtt import Collector, RssiStream, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def city() -> City:
    return load_city()


def with_ingest(settings: Settings, **ingest: object) -> Settings:
    return settings.model_copy(update={"ingest": settings.ingest.model_copy(update=ingest)})


# An inbox, a spool and batches small enough that, with InfluxDB down, the decoder stops
# and the inbox fills well before 12,000 messages (a 1 MiB spool and 5,000-point
# batches could take them all: flaky).
SMALL_INBOX = 64 * 1024


def small(settings: Settings) -> Settings:
    return with_ingest(
        settings, inbox_max_bytes=SMALL_INBOX, spool_max_bytes=128 * 1024, batch_max_points=500
    )


def stored(settings: Settings) -> int:
    with InfluxQL.from_settings(settings.influx) as influx:
        rows = influx.rows("SELECT count(value) FROM rssi")
    return sum(int(str(row["count"])) for row in rows)


@pytest.fixture
def publish(settings: Settings, city: City) -> Iterator[Callable[[int, int], None]]:
    stream = RssiStream(settings.mqtt, list(city.devices.values())[:50])
    yield stream.send
    stream.close()


def test_the_last_batch_goes_once_nothing_more_comes(
    settings: Settings, city: City, publish: Callable[[int, int], None]
) -> None:
    # A linger far longer than the wait below: only the quiet gap can end the batch.
    settings = with_ingest(settings, batch_max_delay_s=30.0, batch_quiet_s=0.01)
    service = IngestService(settings, city, make_writer(settings.influx))
    service.start()
    try:
        assert service.wait_subscribed(10)
        publish(0, 200)
        wait_for(lambda: stored(settings) == 200, 10, "the burst stored")
        assert service.stats.messages == 200  # acknowledged too, not only written
    finally:
        service.stop()


def test_a_paced_stream_keeps_its_batches(
    settings: Settings, city: City, publish: Callable[[int, int], None]
) -> None:
    # One message every 30 ms: longer than batch_quiet_s, but the usual gap, so batches
    # still gather up to their linger instead of one fsync and write per message.
    settings = with_ingest(settings, batch_max_delay_s=0.6, batch_quiet_s=0.01)
    service = IngestService(settings, city, make_writer(settings.influx))
    service.start()
    try:
        assert service.wait_subscribed(10)
        for i in range(60):
            publish(i, i + 1)
            time.sleep(0.03)
        wait_for(lambda: stored(settings) == 60, 10, "the stream stored")
        assert service.stats.batches <= 15, service.stats.batches
    finally:
        service.stop()


def test_a_burst_beyond_the_inbox_waits_at_the_broker(
    stack: LocalStack, settings: Settings, city: City, publish: Callable[[int, int], None]
) -> None:
    # InfluxDB down and a small spool: the decoder stops, and the inbox must stop at its
    # bound while the broker holds the rest; nothing is lost once InfluxDB is back.
    max_bytes = SMALL_INBOX
    settings = small(settings)
    service = IngestService(settings, city, make_writer(settings.influx))
    service.start()
    try:
        assert service.wait_subscribed(10)
        stack.influxd.stop()
        try:
            publish(0, 12_000)
            wait_for(lambda: service.inbox()[1] >= max_bytes, 30, "a full inbox")
            time.sleep(1.0)  # the network thread keeps not reading
            messages, held = service.inbox()
            # One read pass may overshoot: at most 200 messages of ~150 + 340 bytes.
            assert held < max_bytes + 200 * 500, (messages, held)
            assert service.stats.messages < 12_000  # the rest is unacknowledged
        finally:
            stack.influxd.start()
        wait_for(lambda: stored(settings) == 12_000, 90, "everything, once InfluxDB is back")
        assert service.inbox() == (0, 0)
    finally:
        service.stop()


def test_a_full_inbox_still_reads_the_dead_letters_acks(
    stack: LocalStack, settings: Settings, city: City
) -> None:
    # While the inbox is full the network thread leaves the socket unread, but a dead
    # letter's PUBACK is in it, behind the held publishes, and the spool thread waits
    # for it before it acknowledges its batch. Unread until the next keepalive PINGREQ,
    # that stalled ingest for a whole keepalive each time (the NATS failover test's
    # timeouts with a 4 MiB inbox). Every 40th message here is malformed.
    settings = small(settings)
    settings = settings.model_copy(
        update={"mqtt": settings.mqtt.model_copy(update={"keepalive_s": 120})}
    )
    devices = list(city.devices.values())[:50]
    stream = RssiStream(settings.mqtt, devices)
    topics = Topics(settings.mqtt.root)
    dead = Collector(settings.mqtt, topics.all_deadletter)
    service = IngestService(settings, city, make_writer(settings.influx))
    service.start()
    try:
        assert service.wait_subscribed(10)
        stack.influxd.stop()
        try:
            for i in range(0, 12_000, 40):
                stream.send(i, i + 39)
                stream.publish(topics.sensor_up(devices[i % 50].id), b"{not json")
            stream.flush()
            wait_for(lambda: service.inbox()[1] >= SMALL_INBOX, 30, "a full inbox")
        finally:
            stack.influxd.start()
        # Far less than the keepalive: a stall would wait the whole 120 s.
        wait_for(lambda: stored(settings) == 11_700, 60, "every valid reading stored")
        wait_for(lambda: len(dead.messages) >= 300, 10, "every dead letter published")
        assert service.stats.messages == 12_000
    finally:
        service.stop()
        stream.close()
        dead.close()
