"""The 2.x / 3.x side of retention, as far as it can be checked without such a server
(none installs here: Debian has InfluxDB 1.6 only, PyPI and npm only clients): the
bucket plan, that every level the dashboards can pick has a bucket and a DBRP mapping,
that the writers write into the planned buckets, the retention rule read back from
influxdb-client's own model, and the by-hand commands (docs/operations.md holds them)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

from influxdb_client.domain.bucket_retention_rules import BucketRetentionRules
from pydantic import SecretStr

from pantau.influx import level_table
from pantau.influx.bucket_setup import v2_commands, v3_commands, v3_databases
from pantau.influx.retention import (
    AGG_1H,
    AGG_5M,
    META_RP,
    RAW_RP,
    bucket_expiry,
    meta_settings,
    v2_buckets,
    writer_settings,
)
from pantau.settings import InfluxApi, InfluxSettings, RetentionSettings

DOCS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"


def test_the_bucket_plan_maps_every_level_the_dashboards_pick() -> None:
    retention = RetentionSettings()
    plans = v2_buckets("pantau", retention)
    assert [(p.bucket, p.retention_s, p.rp) for p in plans] == [
        ("pantau", 90 * 86400, RAW_RP),
        ("pantau_agg_5m", 730 * 86400, AGG_5M.rp),
        ("pantau_agg_1h", 3650 * 86400, AGG_1H.rp),
        ("pantau_pantau_meta", 0, META_RP),  # the level table: kept forever
    ]
    assert [p.default for p in plans] == [True, False, False, False]
    assert {p.database for p in plans} == {"pantau"}
    mapped = {p.rp for p in plans}
    # `"$rp".measurement` of every panel, and the variables' `"pantau_meta".pantau_rp`
    assert {r.rp for r in level_table.rows(datetime.now(UTC), retention)} <= mapped
    assert META_RP in level_table.FROM


def test_the_writers_write_into_the_planned_buckets() -> None:
    v2 = InfluxSettings(api=InfluxApi.V2, database="pantau", token=SecretStr("t"))
    buckets = {p.rp: p.bucket for p in v2_buckets("pantau", RetentionSettings())}
    assert writer_settings(v2, AGG_5M).database == buckets[AGG_5M.rp]
    assert writer_settings(v2, AGG_1H).database == buckets[AGG_1H.rp]
    assert meta_settings(v2, META_RP).database == buckets[META_RP]
    v1 = InfluxSettings(database="pantau")  # 1.x: same database, another RP
    assert (meta_settings(v1, META_RP).database, meta_settings(v1, META_RP).retention_policy) == (
        "pantau",
        META_RP,
    )


def test_a_bucket_kept_forever_is_left_alone_on_the_next_start() -> None:
    """2.x gives a bucket kept forever no rule, or a rule of 0 s: both are retention 0,
    so ensure_retention_v2 does not rewrite it at every start."""
    assert bucket_expiry(None) == 0 and bucket_expiry([]) == 0
    assert bucket_expiry([BucketRetentionRules(type="expire", every_seconds=0)]) == 0  # type: ignore[no-untyped-call]
    rule = BucketRetentionRules(type="expire", every_seconds=86400)  # type: ignore[no-untyped-call]
    assert bucket_expiry([rule]) == 86400


def test_the_by_hand_commands_are_the_plan_and_the_docs_hold_them() -> None:
    retention = RetentionSettings()
    v2 = v2_commands("pantau", retention)
    assert "influx bucket create -n pantau_agg_1h -r 3650d" in v2
    assert "influx bucket create -n pantau_pantau_meta -r 0" in v2
    assert (
        "influx v1 dbrp create --db pantau --rp autogen --bucket-id <id of pantau> --default" in v2
    )
    v3 = v3_commands("pantau", retention)
    assert v3 == [
        "influxdb3 create database --retention-period 90d pantau",
        "influxdb3 create database --retention-period 730d pantau/agg_5m",
        "influxdb3 create database --retention-period 3650d pantau/agg_1h",
        "influxdb3 create database pantau/pantau_meta",
    ]
    # InfluxDB 3's database names: letters, digits, _ and -, at most one "/" (db/rp),
    # not first or last; 64 characters at most on Clustered.
    for name, _ in v3_databases("pantau", retention):
        assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*(/[A-Za-z0-9_-]+)?", name), name
        assert len(name) <= 64
    docs = DOCS.read_text(encoding="utf-8")
    for line in (*v2, *v3):
        assert line in docs, line
