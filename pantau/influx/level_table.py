"""The level table: which resolution a Grafana panel reads for its time range.

InfluxQL cannot choose a retention policy by itself, and Grafana's InfluxDB data source
has no such option, so Pantau writes a three-row table (one row per level, finest
first) into `pantau_meta.pantau_rp` and the generated dashboards hold hidden variables
that query it with the dashboard's range (`${__from}`, `${__to}`, epoch ms):

    SELECT first("rp") AS "value" FROM "pantau_meta"."pantau_rp"
    WHERE "max_range_ms" >= ${__to} - ${__from} AND "holds_from_ms" <= ${__from}

`first` returns the finest level that both fits the range and still holds its start:
the same choice as `retention.level_for`. The panels read `FROM "$rp"."<measurement>"`
and use `$rp_window` as their minimum interval, so a bucket is never finer than the
level's window (an hourly level never draws 5-minute gaps).

`holds_from_ms` moves with the clock, so ingest rewrites the table at start and on
every downsampling pass; the rows sit at fixed times in an RP kept forever, so a
rewrite overwrites them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from pantau.influx.retention import (
    AGG_1H,
    AGG_5M,
    META_RP,
    RAW,
    Level,
    kept,
    meta_settings,
    raw_level,
)
from pantau.influx.writers import make_writer
from pantau.settings import InfluxSettings, RetentionSettings

MEASUREMENT = "pantau_rp"
FROM = f'"{META_RP}"."{MEASUREMENT}"'
CONDITION = '"max_range_ms" >= ${__to} - ${__from} AND "holds_from_ms" <= ${__from}'
# Row i sits at BASE + i seconds: `first` then means "finest eligible level".
BASE_MS = int(datetime(2000, 1, 1, tzinfo=UTC).timestamp() * 1000)
MAX_POINTS = 2000  # retention.level_for's default: a level draws at most this many windows
# Raw panels keep the data source's own lower bound (timeInterval in
# deploy/grafana/provisioning/datasources): the fastest devices report every 10 s.
RAW_WINDOW = "10s"


@dataclass(frozen=True, slots=True)
class Row:
    """One level as the dashboards' variables see it."""

    rp: str  # $rp: the retention policy the panels read
    window: str  # $rp_window: minimum interval (the level's own window)
    bucket: str  # $rp_bucket: the window of "no data" timelines (5 minutes or coarser)
    max_range_ms: int  # the widest range this level serves
    holds_from_ms: int  # the oldest time it still holds (0: anything)


# Dashboard variable name -> table field.
VARIABLES = {
    "rp": "rp",
    "rp_window": "window",
    "rp_bucket": "bucket",
}


def _text(seconds: int) -> str:
    """A Grafana interval: "5m", "1h"."""
    return f"{seconds // 3600}h" if seconds % 3600 == 0 else f"{seconds // 60}m"


def _window(level: Level) -> str:
    return RAW_WINDOW if not level.aggregated else _text(level.seconds)


def rows(now: datetime, retention: RetentionSettings, raw: Level = RAW) -> list[Row]:
    """The table as of `now`, finest level first (see retention.level_for)."""
    out = []
    now_ms = int(now.timestamp() * 1000)
    for level in (raw, AGG_5M, AGG_1H):
        coarsest = level.seconds == AGG_1H.seconds
        out.append(
            Row(
                rp=level.rp,
                window=_window(level),
                bucket=_text(max(level.seconds, 300)),
                # The coarsest level is the fallback: any range, any start.
                max_range_ms=2**62 if coarsest else MAX_POINTS * max(level.seconds, 60) * 1000,
                holds_from_ms=0
                if coarsest
                else now_ms - int(kept(level, retention).total_seconds() * 1000),
            )
        )
    return out


def lines(table: list[Row]) -> list[str]:
    out = []
    for i, r in enumerate(table):
        fields = (
            f'rp="{r.rp}",window="{r.window}",bucket="{r.bucket}",'
            f"max_range_ms={r.max_range_ms}i,"
            f"holds_from_ms={r.holds_from_ms}i"
        )
        out.append(f"{MEASUREMENT} {fields} {BASE_MS + 1000 * i}")
    return out


def write(influx: InfluxSettings, retention: RetentionSettings, now: datetime) -> None:
    """(Re)write the table; raises the writers' WriteRejected / WriteUnavailable."""
    writer = make_writer(meta_settings(influx, META_RP))
    try:
        writer.write(lines(rows(now, retention, raw_level(influx))))
    finally:
        writer.close()


def variable_query(name: str) -> str:
    """The InfluxQL of dashboard variable `name` (a key of VARIABLES)."""
    field = VARIABLES[name]  # a fixed name: nothing from outside reaches the query
    return f'SELECT first("{field}") AS "value" FROM {FROM} WHERE {CONDITION}'  # noqa: S608
