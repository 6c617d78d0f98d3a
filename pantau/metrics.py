"""Pantau's own metrics: counters, gauges and latency histograms of one service, exposed
in Prometheus text format on an HTTP port and written to InfluxDB for the
pipeline-health dashboard (dashboards/pipeline.py).

Both views come from one prometheus-client registry, so what Prometheus scrapes is what
Grafana shows. Every `metrics.influx_interval_s` a reporter thread turns the registry
into line protocol:

| measurement      | tags                     | fields                                    |
|------------------|--------------------------|-------------------------------------------|
| `pantau_counter` | service, metric, labels  | total, per_s (rate since the last report) |
| `pantau_gauge`   | service, metric          | current                                   |
| `pantau_latency` | service, metric          | count, mean_s, p50_s, p95_s, p99_s        |

(latency fields are of the observations in the interval since the last report.)

No field is called `value`, so queries over every reading measurement (`SELECT value
FROM /.*/`, the rules' rebuild) never see these points. Metrics are best effort: a
failed write is logged and dropped, never retried in the pipeline's way.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.samples import Sample

from pantau.settings import MetricsSettings

log = logging.getLogger(__name__)

Sink = Callable[[Sequence[str]], None]  # writes line protocol (ms precision)

LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    math.inf,
)
QUANTILES = (("p50_s", 0.5), ("p95_s", 0.95), ("p99_s", 0.99))


@dataclass(frozen=True, slots=True)
class _HistogramSnapshot:
    buckets: tuple[tuple[float, float], ...]  # (upper bound, cumulative count)
    count: float
    total: float


class ServiceMetrics:
    """The metrics of one service (`ingest`, `rules`, ...): Prometheus names are
    `pantau_<service>_<metric>`; InfluxDB points are tagged service and metric."""

    def __init__(self, service: str, settings: MetricsSettings) -> None:
        self.service = service
        self.settings = settings
        self.registry = CollectorRegistry(auto_describe=True)
        self._prefix = f"pantau_{service}_"
        self._server: WSGIServer | None = None
        self._reporter: threading.Thread | None = None
        self._stop = threading.Event()
        self._last_counters: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self._last_histograms: dict[str, _HistogramSnapshot] = {}
        self._last_report = time.monotonic()

    # --- instruments ----------------------------------------------------------------
    def counter(self, name: str, help_: str, labels: Sequence[str] = ()) -> Counter:
        return Counter(self._prefix + name, help_, labels, registry=self.registry)

    def gauge(self, name: str, help_: str, read: Callable[[], float]) -> Gauge:
        """A gauge read when collected (queue lengths and the like)."""
        gauge = Gauge(self._prefix + name, help_, registry=self.registry)
        gauge.set_function(read)
        return gauge

    def latency(
        self, name: str, help_: str, buckets: Sequence[float] = LATENCY_BUCKETS
    ) -> Histogram:
        return Histogram(
            self._prefix + name + "_seconds", help_, registry=self.registry, buckets=buckets
        )

    # --- exposure -------------------------------------------------------------------
    def start(self, sink: Sink | None) -> None:
        """Serve /metrics if `metrics.port` is set; report to `sink` every interval."""
        if self.settings.port is not None:
            self._server, _ = start_http_server(
                self.settings.port, addr=self.settings.host, registry=self.registry
            )
            log.info("%s metrics on http://%s:%d/metrics", self.service, *self.address())
        if sink is not None and self.settings.influx_interval_s > 0:
            self.lines()  # the baseline the first interval's rates are taken against
            self._reporter = threading.Thread(
                target=self._report, args=(sink,), name=f"{self.service}-metrics", daemon=True
            )
            self._reporter.start()

    def address(self) -> tuple[str, int]:
        if self._server is None:
            raise RuntimeError("the metrics endpoint is not serving")
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def stop(self, sink: Sink | None = None) -> None:
        """Stop serving and reporting; a last report goes to `sink` if given."""
        self._stop.set()
        stuck = False
        if self._reporter is not None:
            self._reporter.join(timeout=2)
            # a write hanging on an unresponsive InfluxDB must not hold up the stop
            stuck = self._reporter.is_alive()
        if sink is not None and self.settings.influx_interval_s > 0 and not stuck:
            self._write(sink)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def _report(self, sink: Sink) -> None:
        while not self._stop.wait(self.settings.influx_interval_s):
            self._write(sink)

    def _write(self, sink: Sink) -> None:
        lines = self.lines()
        if not lines:
            return
        try:
            sink(lines)
        except Exception as err:  # telemetry must never take the service down
            log.warning("%s metrics not written to InfluxDB: %s", self.service, err)

    # --- line protocol ----------------------------------------------------------------
    def lines(self, now_ms: int | None = None) -> list[str]:
        """The registry as line protocol since the previous call (rates and latency
        quantiles are of that interval)."""
        now = time.monotonic()
        elapsed = max(now - self._last_report, 1e-9)
        self._last_report = now
        stamp = now_ms if now_ms is not None else time.time_ns() // 1_000_000
        out: list[str] = []
        for family in self.registry.collect():
            metric = family.name.removeprefix(self._prefix)
            if family.type == "counter":
                for s in family.samples:
                    if not s.name.endswith("_total"):
                        continue  # the _created sample
                    key = (metric, tuple(sorted(s.labels.items())))
                    before = self._last_counters.get(key, 0.0)
                    self._last_counters[key] = s.value
                    rate = max(s.value - before, 0.0) / elapsed
                    tags = self._tags(metric, s.labels)
                    out.append(f"pantau_counter{tags} total={s.value!r},per_s={rate!r} {stamp}")
            elif family.type == "gauge":
                for s in family.samples:
                    out.append(f"pantau_gauge{self._tags(metric, {})} current={s.value!r} {stamp}")
            elif family.type == "histogram":
                name = metric.removesuffix("_seconds")
                snap = _snapshot(family.samples)
                fields = interval_latency(self._last_histograms.get(name), snap)
                self._last_histograms[name] = snap
                if fields:
                    body = ",".join(f"{k}={v!r}" for k, v in fields.items())
                    out.append(f"pantau_latency{self._tags(name, {})} {body} {stamp}")
        return out

    def _tags(self, metric: str, labels: Mapping[str, str]) -> str:
        tags = {"service": self.service, "metric": metric, **labels}
        return "".join(f",{k}={_escape(v)}" for k, v in sorted(tags.items()))


def _snapshot(samples: Sequence[Sample]) -> _HistogramSnapshot:
    buckets: list[tuple[float, float]] = []
    count = total = 0.0
    for s in samples:
        if s.name.endswith("_bucket"):
            buckets.append((float(s.labels["le"]), s.value))
        elif s.name.endswith("_count"):
            count = s.value
        elif s.name.endswith("_sum"):
            total = s.value
    return _HistogramSnapshot(tuple(sorted(buckets)), count, total)


def interval_latency(
    before: _HistogramSnapshot | None, after: _HistogramSnapshot
) -> dict[str, float]:
    """count, mean and quantiles of the observations between two snapshots (empty if
    none). Quantiles interpolate linearly inside a bucket, as PromQL's
    histogram_quantile does."""
    count = after.count - (before.count if before else 0.0)
    if count <= 0:
        return {}
    total = after.total - (before.total if before else 0.0)
    prior = dict(before.buckets) if before else {}
    cumulative = [(le, c - prior.get(le, 0.0)) for le, c in after.buckets]
    out = {"count": count, "mean_s": total / count}
    for field, q in QUANTILES:
        out[field] = bucket_quantile(q, cumulative)
    return out


def bucket_quantile(q: float, cumulative: Sequence[tuple[float, float]]) -> float:
    """The q-quantile of a histogram given as (upper bound, cumulative count), sorted."""
    total = cumulative[-1][1]
    rank = q * total
    lower, below = 0.0, 0.0
    for upper, count in cumulative:
        if count >= rank:
            if math.isinf(upper):
                return lower  # beyond the last finite bound: that bound is all we know
            inside = count - below
            share = (rank - below) / inside if inside > 0 else 1.0
            return lower + (upper - lower) * share
        lower, below = upper, count
    return lower


def _escape(value: str) -> str:
    return value.replace(",", r"\,").replace("=", r"\=").replace(" ", r"\ ")
