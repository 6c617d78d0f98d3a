"""Pantau's own downsampler: raw readings -> 5-minute aggregates -> hourly aggregates.

Why not InfluxDB 1.x continuous queries: a CQ only ever aggregates the windows just
behind the server's wall clock, so readings that arrive late (a spool drained after an
outage, a gateway's backlog, a replay of past device time) never reach the aggregates;
and 2.x has tasks, 3.x neither. This reads with InfluxQL (every line answers it) and
writes line protocol through Pantau's writers, so it works the same everywhere, and a
window can be recomputed at any time: an aggregate point's identity is measurement +
tags + window start, so a recomputation overwrites it.

Each pass recomputes the windows of the last `downsample_lookback_s`; `reconcile`
compares, hour by hour over the last days, the raw count with the aggregated count
and recomputes the hours that differ.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from pantau.influx import level_table
from pantau.influx.lineprotocol import tag_value
from pantau.influx.query import InfluxQL, InfluxQLError, Series, quote_ident
from pantau.influx.retention import (
    AGG_1H,
    AGG_5M,
    NOT_READINGS_PREFIXES,
    Level,
    raw_level,
    source,
    writer_settings,
)
from pantau.influx.writers import InfluxWriter, WriteRejected, WriteUnavailable, make_writer
from pantau.settings import Settings

log = logging.getLogger(__name__)

CHUNK = timedelta(hours=6)  # one query's span: bounds the rows a query returns
_MEASUREMENT_ESCAPES = str.maketrans({",": r"\,", " ": r"\ "})


def floor(t: datetime, seconds: int) -> datetime:
    epoch = int(t.timestamp())
    return datetime.fromtimestamp(epoch - epoch % seconds, UTC)


def ceil(t: datetime, seconds: int) -> datetime:
    f = floor(t, seconds)
    return f if f == t else f + timedelta(seconds=seconds)


@dataclass(slots=True)
class PassStats:
    points_5m: int = 0
    points_1h: int = 0
    measurements: int = 0
    recomputed_hours: list[datetime] = field(default_factory=list)


def _line(measurement: str, tags: dict[str, str], fields: dict[str, float], ms: int) -> str:
    tag_text = "".join(f",{k}={tag_value(v)}" for k, v in sorted(tags.items()) if v)
    body = ",".join(
        f"{k}={int(v)}i" if k == "count" else f"{k}={float(v)!r}" for k, v in fields.items()
    )
    return f"{measurement.translate(_MEASUREMENT_ESCAPES)}{tag_text} {body} {ms}"


def _lines(measurement: str, series: Iterable[Series]) -> list[str]:
    out = []
    for s in series:
        for row in s.values:
            values = dict(zip(s.columns, row, strict=True))
            count = values.get("count")
            if not isinstance(count, int) or count <= 0:
                continue
            total = float(values["sum"])  # type: ignore[arg-type]
            fields = {
                "min": float(values["min"]),  # type: ignore[arg-type]
                "max": float(values["max"]),  # type: ignore[arg-type]
                "mean": total / count,
                "count": count,
                "sum": total,
            }
            out.append(_line(measurement, dict(s.tags), fields, int(values["time"])))  # type: ignore[call-overload]
    return out


class Downsampler:
    """Aggregates one database's readings into its 5-minute and hourly levels."""

    def __init__(
        self,
        client: InfluxQL,
        database: str,
        write_5m: InfluxWriter,
        write_1h: InfluxWriter,
        raw: Level,
    ) -> None:
        self.client = client
        self.database = database
        self.raw = raw
        self._writers = {AGG_5M.name: write_5m, AGG_1H.name: write_1h}

    @classmethod
    def from_settings(cls, settings: Settings) -> Downsampler:
        influx = settings.influx
        return cls(
            InfluxQL.from_settings(influx),
            influx.database,
            make_writer(writer_settings(influx, AGG_5M)),
            make_writer(writer_settings(influx, AGG_1H)),
            raw_level(influx),
        )

    def close(self) -> None:
        self.client.close()
        for w in self._writers.values():
            w.close()

    def measurements(self) -> list[str]:
        """Raw measurements with a numeric `value` field: readings and camera measures."""
        q = f"SHOW FIELD KEYS ON {quote_ident(self.database)}"
        out = set()
        for s in self.client.query(q):
            if s.name.startswith(NOT_READINGS_PREFIXES):
                continue
            for row in s.rows():
                if row.get("fieldKey") == "value" and row.get("fieldType") in {"float", "integer"}:
                    out.add(s.name)
        return sorted(out)

    def run(self, start: datetime, end: datetime) -> PassStats:
        """(Re)compute every 5-minute window in [start, end) (widened to whole windows)
        and every hour that touches it."""
        stats = PassStats()
        start5, end5 = floor(start, 300), ceil(end, 300)
        start1, end1 = floor(start, 3600), ceil(end, 3600)
        names = self.measurements()
        stats.measurements = len(names)
        for m in names:
            stats.points_5m += self._level(m, self.raw, AGG_5M, start5, end5)
            stats.points_1h += self._level(m, AGG_5M, AGG_1H, start1, end1)
        return stats

    def _level(self, m: str, src: Level, dst: Level, start: datetime, end: datetime) -> int:
        if src.aggregated:
            select = (
                'min("min") AS "min", max("max") AS "max", '
                'sum("sum") AS "sum", sum("count") AS "count"'
            )
        else:
            select = (
                'min("value") AS "min", max("value") AS "max", '
                'sum("value") AS "sum", count("value") AS "count"'
            )
        written = 0
        t = start
        while t < end:
            chunk_end = min(t + CHUNK, end)
            q = (
                f"SELECT {select} FROM {source(m, src, self.database)} "  # noqa: S608
                f"WHERE time >= $start AND time < $end "
                f"GROUP BY time({dst.seconds}s), * fill(none)"
            )
            series = self.client.query(
                q, params={"start": t.isoformat(), "end": chunk_end.isoformat()}, epoch="ms"
            )
            lines = _lines(m, series)
            if lines:
                self._write(dst, lines)
            written += len(lines)
            t = chunk_end
        return written

    def _write(self, dst: Level, lines: Sequence[str]) -> None:
        writer = self._writers[dst.name]
        for i in range(0, len(lines), 5000):
            writer.write(lines[i : i + 5000])

    def stale_hours(self, start: datetime, end: datetime) -> list[datetime]:
        """Hours in [start, end) whose raw count differs from their 5-minute aggregates'
        (readings stored after their window was aggregated)."""
        start, end = floor(start, 3600), ceil(end, 3600)
        stale: set[datetime] = set()
        params: dict[str, str | int | float | bool] = {
            "start": start.isoformat(),
            "end": end.isoformat(),
        }
        for m in self.measurements():
            counts: list[dict[int, int | float]] = []
            for lvl, field_ in ((self.raw, 'count("value")'), (AGG_5M, 'sum("count")')):
                # Both named "n": one column to read whichever level it comes from.
                q = (
                    f"SELECT {field_} AS n FROM {source(m, lvl, self.database)} "  # noqa: S608
                    "WHERE time >= $start AND time < $end GROUP BY time(1h) fill(none)"
                )
                rows = self.client.rows(q, params=params, epoch="s")
                counts.append(
                    {
                        int(str(r["time"])): n
                        for r in rows
                        if isinstance(n := r.get("n"), int | float)
                    }
                )
            raw, agg = counts
            for hour, n in raw.items():
                if agg.get(hour) != n:
                    stale.add(datetime.fromtimestamp(hour, UTC))
        return sorted(stale)

    def reconcile(self, start: datetime, end: datetime) -> PassStats:
        """Recompute the hours `stale_hours` finds; the stats name them."""
        stats = PassStats()
        for hour in self.stale_hours(start, end):
            s = self.run(hour, hour + timedelta(hours=1))
            stats.points_5m += s.points_5m
            stats.points_1h += s.points_1h
            stats.recomputed_hours.append(hour)
        return stats


class DownsampleLoop:
    """Runs the downsampler every `downsample_interval_s` in a thread (in ingest), and
    a reconcile over the last `reconcile_days` at start and every 6 hours; each pass
    rewrites the level table the dashboards read (level_table.py)."""

    RECONCILE_EVERY = timedelta(hours=6)

    def __init__(self, settings: Settings, now: Callable[[], datetime] | None = None) -> None:
        self._settings = settings
        self._now = now or (lambda: datetime.now(UTC))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="downsample", daemon=True)
        self.passes = 0

    def start(self) -> None:
        if self._settings.retention.downsample_interval_s > 0:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def _loop(self) -> None:
        r = self._settings.retention
        last_reconcile: datetime | None = None
        downsampler = Downsampler.from_settings(self._settings)
        try:
            while not self._stop.is_set():
                now = self._now()
                try:
                    if last_reconcile is None or now - last_reconcile >= self.RECONCILE_EVERY:
                        if r.reconcile_days > 0:
                            s = downsampler.reconcile(now - timedelta(days=r.reconcile_days), now)
                            if s.recomputed_hours:
                                log.info("downsample: recomputed %d hours", len(s.recomputed_hours))
                        last_reconcile = now
                    downsampler.run(now - timedelta(seconds=r.downsample_lookback_s), now)
                    # What the dashboards' level variables read moves with the clock.
                    level_table.write(self._settings.influx, r, now)
                    self.passes += 1
                except (InfluxQLError, WriteRejected, WriteUnavailable) as err:
                    log.warning("downsample pass failed, retrying next interval: %s", err)
                self._stop.wait(r.downsample_interval_s)
        finally:
            downsampler.close()
