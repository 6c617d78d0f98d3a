"""Pantau's own metrics: the Prometheus endpoint and the line protocol the
pipeline-health dashboard reads, from one registry."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Sequence

import pytest

from pantau.metrics import ServiceMetrics, bucket_quantile
from pantau.settings import MetricsSettings


def test_bucket_quantile_interpolates_inside_the_bucket() -> None:
    # 10 observations <= 0.1 s, 10 more in (0.1, 0.2], none beyond
    buckets = [(0.1, 10.0), (0.2, 20.0), (float("inf"), 20.0)]
    assert bucket_quantile(0.5, buckets) == pytest.approx(0.1)
    assert bucket_quantile(0.75, buckets) == pytest.approx(0.15)
    assert bucket_quantile(0.25, buckets) == pytest.approx(0.05)
    # beyond the last finite bound, that bound is all a histogram knows
    assert bucket_quantile(0.99, [(0.1, 1.0), (float("inf"), 100.0)]) == pytest.approx(0.1)


def test_lines_carry_rates_gauges_and_the_intervals_latency() -> None:
    metrics = ServiceMetrics("ingest", MetricsSettings())
    messages = metrics.counter("messages", "m")
    rejected = metrics.counter("rejected", "r", ["reason"])
    backlog = [7]
    metrics.gauge("backlog_messages", "b", lambda: backlog[0])
    write = metrics.latency("influx_write", "w")
    metrics.lines(now_ms=0)  # baseline

    messages.inc(30)
    rejected.labels("unknown_device").inc(2)
    for seconds in (0.004, 0.004, 0.004, 0.2):
        write.observe(seconds)
    lines = metrics.lines(now_ms=1000)
    by_metric = {line.split(" ")[0]: line for line in lines}
    assert "pantau_counter,metric=messages,service=ingest" in by_metric
    assert " total=30.0," in by_metric["pantau_counter,metric=messages,service=ingest"]
    reject = by_metric["pantau_counter,metric=rejected,reason=unknown_device,service=ingest"]
    assert reject.startswith("pantau_counter,metric=rejected,reason=unknown_device")
    assert "pantau_gauge,metric=backlog_messages,service=ingest" in by_metric
    latency = by_metric["pantau_latency,metric=influx_write,service=ingest"]
    fields = dict(f.split("=") for f in latency.split(" ")[1].split(","))
    assert float(fields["count"]) == 4
    assert float(fields["mean_s"]) == pytest.approx(0.053)
    assert 0.0025 < float(fields["p50_s"]) <= 0.005
    assert 0.1 < float(fields["p99_s"]) <= 0.25
    assert all(line.endswith(" 1000") for line in lines)
    # never a `value` field: queries over every reading measurement must not see these
    assert not any(" value=" in line or ",value=" in line for line in lines)

    # the next interval: no new observation, so no latency point; the counter's rate is 0
    again = metrics.lines(now_ms=2000)
    assert not any(line.startswith("pantau_latency") for line in again)
    msg = next(line for line in again if ",metric=messages," in line)
    assert "per_s=0.0" in msg and "total=30.0" in msg


def test_prometheus_endpoint_serves_the_same_registry() -> None:
    metrics = ServiceMetrics("rules", MetricsSettings(port=0))
    metrics.counter("messages", "judged").inc(3)
    metrics.start(sink=None)
    try:
        host, port = metrics.address()
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    finally:
        metrics.stop()
    assert "pantau_rules_messages_total 3.0" in text


def test_reporter_writes_to_the_sink_and_survives_a_failing_one() -> None:
    written: list[list[str]] = []
    failures = 0

    def sink(lines: Sequence[str]) -> None:
        nonlocal failures
        if failures == 0:
            failures += 1
            raise OSError("InfluxDB down")
        written.append(list(lines))

    metrics = ServiceMetrics("ingest", MetricsSettings(influx_interval_s=0.05))
    metrics.counter("messages", "m").inc()
    metrics.start(sink)
    try:
        deadline = time.monotonic() + 5
        while not written and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        metrics.stop()
    assert failures == 1 and written
    assert any(line.startswith("pantau_counter,metric=messages") for line in written[0])
