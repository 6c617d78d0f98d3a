"""The rules service's own metrics (pantau/metrics.py): messages and readings judged,
incidents opened, alerts published, the backlog, and the rule latency: from a message's
arrival until every incident change and alert it led to is stored and published (its
acknowledgement follows within rules.service.ACK_EVERY_S)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from pantau.influx.writers import InfluxWriter, make_writer
from pantau.metrics import ServiceMetrics
from pantau.mqtt_session import Inbound
from pantau.settings import Settings

if TYPE_CHECKING:
    from rules.stats import RulesStats


# Seconds: in order an alert leaves within a second; a logger's batch or a gateway's
# backlog is minutes late.
DETECTION_BUCKETS = (1.0, 5.0, 30.0, 60.0, 180.0, 600.0, 1800.0, 3600.0, 21600.0, math.inf)


class RulesMetrics:
    def __init__(
        self,
        settings: Settings,
        backlog: Callable[[], int],
        sources_idle: Callable[[], int] = lambda: 0,
    ) -> None:
        self.service = ServiceMetrics("rules", settings.metrics)
        m = self.service
        self.messages = m.counter("messages", "MQTT messages judged and acknowledged")
        self.readings = m.counter("readings", "readings fed to the rule engine")
        self.opened = m.counter("incidents_opened", "incidents opened")
        self.alerts = m.counter("alerts_published", "crew alerts published")
        self.latency = m.latency(
            "message_to_ack",
            "oldest message of a batch: arrival to done (its incidents and alerts stored "
            "and published; acknowledged together with others right after)",
        )
        m.gauge("backlog_messages", "messages received, not yet judged", backlog)
        m.gauge("sources_idle", "sources silent past their interval + idle_after", sources_idle)
        self.late = m.counter("readings_late", "readings behind their kecamatan, still judged")
        self.too_old = m.counter("readings_too_old", "readings past the horizon: reported only")
        self.stale = m.counter("readings_stale", "readings behind their own series: reported only")
        self.detection = m.latency(
            "detection_delay",
            "device time of the reading that opened an incident to its opening (a late "
            "reading's delay shows here)",
            buckets=DETECTION_BUCKETS,
        )
        self._influx = settings.influx
        self._writer: InfluxWriter | None = None
        self._seen: dict[str, int] = {}

    def start(self) -> None:
        self._writer = make_writer(self._influx)
        self.service.start(self._writer.write)

    def stop(self) -> None:
        writer, self._writer = self._writer, None
        self.service.stop(writer.write if writer is not None else None)
        if writer is not None:
            writer.close()

    def done(self, batch: Sequence[Inbound], now: datetime) -> None:
        """A batch is judged, stored and published: one latency observation (its oldest
        message), so a busy worker pays for one histogram update, not thousands."""
        if batch:
            self.latency.observe(max((now - batch[0].received_at).total_seconds(), 0.0))

    def acked(self, batch: Sequence[Inbound], now: datetime, stats: RulesStats) -> None:
        """After each acknowledgement (and idle turn): counters follow the service's
        stats."""
        for counter, key, value in (
            (self.readings, "readings", stats.readings),
            (self.opened, "opened", stats.opened),
            (self.alerts, "alerts", stats.alerts_published),
            (self.late, "late", stats.late),
            (self.too_old, "too_old", stats.too_old),
            (self.stale, "stale", stats.stale),
        ):
            counter.inc(max(value - self._seen.get(key, 0), 0))
            self._seen[key] = value
        if batch:
            self.messages.inc(len(batch))
