"""ingest's own metrics (pantau/metrics.py): messages, readings written, rejects by
reason, the backlog in hand and the InfluxDB write latency per batch."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from pantau.influx.writers import InfluxWriter
from pantau.metrics import ServiceMetrics, Sink
from pantau.settings import Settings


class IngestMetrics:
    def __init__(
        self,
        settings: Settings,
        backlog: Callable[[], int],
        service: str = "ingest",
        *,
        spool_bytes: Callable[[], int],
    ) -> None:
        self.service = ServiceMetrics(service, settings.metrics)
        m = self.service
        self.messages = m.counter("messages", "MQTT messages processed and acknowledged")
        self.readings_written = m.counter("readings_written", "readings written to InfluxDB")
        self.rejected = m.counter("rejected", "inputs dead-lettered, by reason", ["reason"])
        self.write_latency = m.latency(
            "influx_write", "one batch written to InfluxDB, retries included"
        )
        m.gauge("backlog_messages", "messages received, not yet written and acknowledged", backlog)
        # The spool's disk use and its bound: at the bound ingest stops acknowledging.
        m.gauge("spool_bytes", "bytes of the durable spool on disk", spool_bytes)
        bound = float(settings.ingest.spool_max_bytes)
        m.gauge("spool_max_bytes", "the spool's bound (ingest.spool_max_bytes)", lambda: bound)
        self._sink: Sink | None = None

    def start(self, writer: InfluxWriter) -> None:
        """Report through the pipeline's `writer`: the reporter thread writes beside the
        drain thread, which both writers allow (urllib3's pools are thread-safe; the
        v2 client, on a token, keeps no state a write reads)."""
        self._sink = writer.write
        self.service.start(self._sink)

    def stop(self) -> None:
        """Before the writer closes: the last report goes through it."""
        sink, self._sink = self._sink, None
        self.service.stop(sink)

    def batch(self, messages: int, readings: int, rejected: Iterable[str], write_s: float) -> None:
        self.messages.inc(messages)
        self.readings_written.inc(readings)
        for reason in rejected:
            self.rejected.labels(reason).inc()
        self.write_latency.observe(write_s)
