"""Pipeline health, from Pantau's own metrics (pantau/metrics.py): ingest rate, rejects
by reason, backlog, InfluxDB write latency, rule latency."""

from __future__ import annotations

from dashboards.model import Dashboard, InfluxQuery, Panel
from dashboards.queries import incident_annotations
from pantau.city import City


def counter_rate(service: str, metric: str, by: str = "metric") -> InfluxQuery:
    return InfluxQuery(
        query='SELECT mean("per_s") FROM "pantau_counter" WHERE $timeFilter '
        f"AND \"service\" = '{service}' AND \"metric\" = '{metric}' "
        f'GROUP BY time($__interval), "{by}" fill(none)',
        alias=f"$tag_{by}",
    )


def latency(service: str, metric: str) -> InfluxQuery:
    return InfluxQuery(
        query='SELECT mean("p50_s") AS "p50", mean("p95_s") AS "p95", max("p99_s") AS "p99" '
        f'FROM "pantau_latency" WHERE $timeFilter AND "service" = \'{service}\' '
        f"AND \"metric\" = '{metric}' GROUP BY time($__interval) fill(none)",
    )


def build(city: City) -> Dashboard:
    rate = Panel(
        title="Ingest: bacaan dan pesan per detik",
        type="timeseries",
        targets=(
            counter_rate("ingest", "readings_written"),
            InfluxQuery(
                ref_id="B",
                query='SELECT mean("per_s") FROM "pantau_counter" WHERE $timeFilter '
                "AND \"service\" = 'ingest' AND \"metric\" = 'messages' "
                'GROUP BY time($__interval), "metric" fill(none)',
                alias="$tag_metric",
            ),
        ),
        unit="reqps",
    )
    rejects = Panel(
        title="Ditolak menurut alasan (dead letter per detik)",
        type="timeseries",
        targets=(counter_rate("ingest", "rejected", by="reason"),),
        unit="reqps",
        custom={"drawStyle": "bars", "fillOpacity": 60, "stacking": {"mode": "normal"}},
    )
    backlog = Panel(
        title="Antrean di tangan (diterima, belum di-ack)",
        type="timeseries",
        targets=(
            InfluxQuery(
                query='SELECT max("current") FROM "pantau_gauge" WHERE $timeFilter '
                "AND \"metric\" = 'backlog_messages' "
                'GROUP BY time($__interval), "service" fill(none)',
                alias="$tag_service",
            ),
        ),
        unit="short",
        description="Messages each service holds unacknowledged; the rest of a backlog "
        "waits in the broker's persistent session.",
    )
    write = Panel(
        title="Latensi tulis InfluxDB per batch",
        type="timeseries",
        targets=(latency("ingest", "influx_write"),),
        unit="s",
    )
    rule = Panel(
        title="Latensi aturan: pesan tiba sampai ack (insiden dan peringatan terkirim)",
        type="timeseries",
        targets=(latency("rules", "message_to_ack"),),
        unit="s",
        thresholds=((None, "green"), (0.25, "orange"), (2.0, "red")),
        custom={"thresholdsStyle": {"mode": "dashed"}},
    )
    rules_rate = Panel(
        title="Aturan: bacaan dinilai per detik",
        type="timeseries",
        targets=(counter_rate("rules", "readings"),),
        unit="reqps",
    )
    totals = Panel(
        title="Sejak mulai",
        type="stat",
        targets=(
            InfluxQuery(
                query='SELECT last("total") FROM "pantau_counter" WHERE $timeFilter '
                'AND "metric" =~ /^(readings_written|incidents_opened|alerts_published)$/ '
                'GROUP BY "service", "metric"',
                alias="$tag_service $tag_metric",
            ),
        ),
        width=24,
        height=4,
    )
    return Dashboard(
        uid="pantau-pipeline",
        title="Pantau · Kesehatan pipeline",
        description="Ingest rate, rejects by reason, backlog, InfluxDB write latency and "
        "rule latency, from Pantau's own metrics.",
        panels=(totals, rate, rejects, backlog, write, rule, rules_rate),
        timezone=city.facts.time_zone.key,
        # every incident of the city: did a pipeline hiccup go with one?
        annotations=(
            incident_annotations(city, zones="TRUE"),
        ),  # Pantau's own metrics carry no zones
        tags=("pantau", "pipeline"),
        time_from="now-1h",
        refresh="10s",
    )
