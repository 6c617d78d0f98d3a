"""How long InfluxDB keeps what, and where each resolution lives (docs/operations.md#retention).

Three levels, each in its own retention policy (1.x) or bucket (2.x / 3.x):

| level  | where (InfluxQL)              | fields                          | kept (default) |
|--------|-------------------------------|---------------------------------|----------------|
| raw    | `db`.`autogen` (the default)  | `value` (and `seq`, ...)        | 90 days        |
| 5m     | `db`.`agg_5m`                 | `min, max, mean, count, sum`    | 2 years        |
| 1h     | `db`.`agg_1h`                 | `min, max, mean, count, sum`    | 10 years       |

An aggregate point has the raw series' measurement and tags and the start of its
window as time; `sum` is kept so coarser windows combine exactly (mean = sum / count).
On 2.x the aggregate buckets are mapped to the same database/RP pairs (DBRP), so the
InfluxQL of a dashboard or of the API reads the same on every InfluxDB line.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pantau.influx.query import InfluxQL, InfluxQLError, quote_ident
from pantau.settings import InfluxSettings, RetentionSettings

log = logging.getLogger(__name__)

RAW_RP = "autogen"  # InfluxDB 1.x's default RP: unqualified queries keep reading raw data
# Kept forever: the level table the dashboards pick their level from (level_table.py).
META_RP = "pantau_meta"
AGG_FIELDS = ("min", "max", "mean", "count", "sum")
# Measurements that are not readings: KPI series, Pantau's own metrics, camera
# states and evidence paths, data-quality records (they have no numeric `value`).
NOT_READINGS_PREFIXES = ("pantau_", "kpi")


@dataclass(frozen=True, slots=True)
class Level:
    name: str  # "raw", "5m", "1h"
    rp: str  # retention policy (1.x) / DBRP mapping (2.x) holding it
    seconds: int  # window of one point; 0 for raw

    @property
    def aggregated(self) -> bool:
        return self.seconds > 0


RAW = Level("raw", RAW_RP, 0)
AGG_5M = Level("5m", "agg_5m", 300)
AGG_1H = Level("1h", "agg_1h", 3600)
LEVELS = (RAW, AGG_5M, AGG_1H)


def raw_level(influx: InfluxSettings) -> Level:
    """The raw level: the configured write RP, or InfluxDB's default `autogen`."""
    return Level("raw", influx.retention_policy or RAW_RP, 0)


def kept(level: Level, retention: RetentionSettings) -> timedelta:
    days = {
        "raw": retention.raw_days,
        "5m": retention.agg_5m_days,
        "1h": retention.agg_1h_days,
    }[level.name]
    return timedelta(days=days)


def source(measurement: str, level: Level, database: str) -> str:
    """The InfluxQL FROM term of `measurement` at `level`: `"db"."rp"."measurement"`."""
    return f"{quote_ident(database)}.{quote_ident(level.rp)}.{quote_ident(measurement)}"


def level_for(
    start: datetime,
    end: datetime,
    now: datetime,
    retention: RetentionSettings,
    *,
    max_points: int = 2000,
) -> Level:
    """The level a panel or a query over [start, end) should read, as of `now`: the
    finest one that still holds `start` and draws at most `max_points` windows (raw
    counts as one point a minute). A year of one station reads hourly data."""
    span_s = max((end - start).total_seconds(), 1.0)
    for level in LEVELS:
        if start < now - kept(level, retention):
            continue
        if span_s / max(level.seconds, 60) <= max_points:
            return level
    return AGG_1H


def mean_expr(level: Level) -> str:
    """The InfluxQL of the mean of `value` at `level` (weighted by count for aggregates)."""
    return 'mean("value")' if not level.aggregated else 'sum("sum") / sum("count")'


def _duration(days: int) -> str:
    return f"{days}d"


def _shard_duration(days: int) -> str:
    # InfluxDB's own defaults: 1 day shards up to 6 months, 7 days beyond.
    return "1d" if days <= 180 else "7d"


def ensure_retention_v1(
    client: InfluxQL, database: str, retention: RetentionSettings, raw_rp: str = RAW_RP
) -> list[str]:
    """Create or alter the three retention policies of `database` to the configured
    durations, and the meta RP (kept forever); idempotent. Returns the statements it ran
    (nothing when all is in place). The raw RP stays the default, so every existing
    query keeps reading raw data."""
    client.query(f"CREATE DATABASE {quote_ident(database)}")
    existing = {
        str(r["name"]): r
        for r in client.rows(f"SHOW RETENTION POLICIES ON {quote_ident(database)}")
    }
    wanted = (
        (raw_rp, retention.raw_days, True),
        (AGG_5M.rp, retention.agg_5m_days, False),
        (AGG_1H.rp, retention.agg_1h_days, False),
    )
    ran: list[str] = []
    for rp, days, default in wanted:
        have = existing.get(rp)
        target = f"{days * 24}h0m0s"
        shard = _shard_duration(days)
        shard_text = {"1d": "24h0m0s", "7d": "168h0m0s"}[shard]
        in_place = (
            have is not None
            and have.get("duration") == target
            and have.get("shardGroupDuration") == shard_text
            and (not default or have.get("default") is True)
        )
        if in_place:
            continue
        verb = "ALTER" if have is not None else "CREATE"
        statement = (
            f"{verb} RETENTION POLICY {quote_ident(rp)} ON {quote_ident(database)} "
            f"DURATION {_duration(days)} "
            + ("REPLICATION 1 " if verb == "CREATE" else "")
            + f"SHARD DURATION {shard}"
            + (" DEFAULT" if default else "")
        )
        client.query(statement)
        ran.append(statement)
        log.info("retention: %s", statement)
    if META_RP not in existing:
        statement = (
            f"CREATE RETENTION POLICY {quote_ident(META_RP)} ON {quote_ident(database)} "
            "DURATION INF REPLICATION 1"
        )
        client.query(statement)
        ran.append(statement)
        log.info("retention: %s", statement)
    return ran


@dataclass(frozen=True, slots=True)
class BucketPlan:
    """A 2.x / 3.x bucket and the database/RP pair InfluxQL reads it by."""

    bucket: str
    retention_s: int
    database: str
    rp: str
    default: bool


def v2_buckets(database: str, retention: RetentionSettings) -> list[BucketPlan]:
    """The buckets a 2.x / 3.x deployment needs: `database` for raw data, one per
    aggregate level and the meta bucket (retention 0: forever), each mapped (DBRP) to
    the same database/RP names as on 1.x."""
    return [
        BucketPlan(database, retention.raw_days * 86400, database, RAW_RP, True),
        BucketPlan(
            f"{database}_{AGG_5M.rp}", retention.agg_5m_days * 86400, database, AGG_5M.rp, False
        ),
        BucketPlan(
            f"{database}_{AGG_1H.rp}", retention.agg_1h_days * 86400, database, AGG_1H.rp, False
        ),
        BucketPlan(f"{database}_{META_RP}", 0, database, META_RP, False),
    ]


def writer_settings(influx: InfluxSettings, level: Level) -> InfluxSettings:
    """Settings of a writer that writes into `level` (its RP on 1.x, its bucket on 2.x)."""
    return influx if not level.aggregated else meta_settings(influx, level.rp)


def meta_settings(influx: InfluxSettings, rp: str) -> InfluxSettings:
    """Settings of a writer into the non-default RP `rp` (its bucket on 2.x)."""
    if influx.api.value == "v2":
        return influx.model_copy(update={"database": f"{influx.database}_{rp}"})
    return influx.model_copy(update={"retention_policy": rp})


def bucket_expiry(rules: list[Any] | None) -> int:
    """Seconds a 2.x bucket keeps data; 0 for forever (no rule, or a rule of 0 s)."""
    return max((int(r.every_seconds or 0) for r in rules or ()), default=0)


def ensure_retention_v2(influx: InfluxSettings, retention: RetentionSettings) -> list[str]:
    """Create the buckets and DBRP mappings of `v2_buckets` that are missing and set
    the retention of those that exist; idempotent. Needs an all-access token."""
    # Imported here: influxdb-client is slow to import and only v2 deployments need it.
    from influxdb_client.client.influxdb_client import InfluxDBClient  # noqa: PLC0415
    from influxdb_client.domain.bucket_retention_rules import (  # noqa: PLC0415
        BucketRetentionRules,
    )
    from influxdb_client.domain.dbrp_create import DBRPCreate  # noqa: PLC0415
    from influxdb_client.service.dbr_ps_service import DBRPsService  # noqa: PLC0415

    assert influx.token is not None
    done: list[str] = []
    with InfluxDBClient(
        url=influx.url, token=influx.token.get_secret_value(), org=influx.org
    ) as client:
        buckets = client.buckets_api()
        org = client.organizations_api().find_organizations(org=influx.org)[0]
        dbrps = DBRPsService(client.api_client)  # type: ignore[no-untyped-call]
        mapped = {
            (m.database, m.retention_policy)
            for m in dbrps.get_dbr_ps(org_id=org.id).content  # type: ignore[no-untyped-call]
        }
        for plan in v2_buckets(influx.database, retention):
            rule = BucketRetentionRules(type="expire", every_seconds=plan.retention_s)  # type: ignore[no-untyped-call]
            bucket = buckets.find_bucket_by_name(plan.bucket)
            if bucket is None:
                bucket = buckets.create_bucket(
                    bucket_name=plan.bucket, retention_rules=rule, org_id=org.id
                )
                done.append(f"created bucket {plan.bucket}")
            elif bucket_expiry(bucket.retention_rules) != plan.retention_s:
                bucket.retention_rules = [rule]
                buckets.update_bucket(bucket)
                done.append(f"set retention of bucket {plan.bucket}")
            if (plan.database, plan.rp) not in mapped:
                dbrps.post_dbrp(  # type: ignore[no-untyped-call]
                    DBRPCreate(  # type: ignore[no-untyped-call]
                        org_id=org.id,
                        bucket_id=bucket.id,
                        database=plan.database,
                        retention_policy=plan.rp,
                        default=plan.default,
                    )
                )
                done.append(f"mapped {plan.database}/{plan.rp} -> {plan.bucket}")
    for line in done:
        log.info("retention: %s", line)
    return done


def ensure_retention(influx: InfluxSettings, retention: RetentionSettings) -> list[str]:
    """Set up retention on whichever InfluxDB line `influx` names; idempotent."""
    if influx.api.value == "v2":
        try:
            return ensure_retention_v2(influx, retention)
        except Exception as err:  # influxdb-client raises its own and urllib3's errors
            raise InfluxQLError("set up buckets", str(err)) from err
    with InfluxQL.from_settings(influx) as client:
        return ensure_retention_v1(
            client, influx.database, retention, influx.retention_policy or RAW_RP
        )


def _hours(duration: object) -> float | None:
    """Hours of an InfluxDB duration like "2160h0m0s"; None for "0s" (kept forever)."""
    text = str(duration)
    if not text or text in {"0", "0s"}:
        return None
    hours, _, rest = text.partition("h")
    minutes, _, _ = rest.partition("m")
    return float(hours or 0) + float(minutes or 0) / 60


def level_holding(
    client: InfluxQL,
    database: str,
    start: datetime,
    now: datetime,
    retention: RetentionSettings,
    *,
    raw_rp: str = RAW_RP,
) -> Level:
    """The finest level that still holds data from `start`: raw while the server's raw
    RP keeps it (read from the server, so data kept forever stays raw), then 5-minute,
    then hourly aggregates. Without an answer about RPs (2.x / 3.x), the settings say."""
    raw_kept: timedelta | None = kept(RAW, retention)
    try:
        for r in client.rows(f"SHOW RETENTION POLICIES ON {quote_ident(database)}"):
            if r.get("name") == raw_rp:
                hours = _hours(r.get("duration"))
                raw_kept = None if hours is None else timedelta(hours=hours)
    except InfluxQLError:
        pass
    if raw_kept is None or start >= now - raw_kept:
        return RAW
    return AGG_5M if start >= now - kept(AGG_5M, retention) else AGG_1H
