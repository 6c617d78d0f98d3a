"""The e-Kinerja series, published to InfluxDB on a schedule for Grafana.

Without it the Performance dashboard showed KPIs only after someone called
`POST /kpi/publish`. It runs as a background thread of the API process, because the
API already holds everything the KPIs need (incident store, InfluxDB for
availability, the KPI config and its cache) and is the one place that computes them;
a separate process would rebuild all of that for one query a few minutes. A write
replaces the same points (measurement `kpi`, tags scope/id/period, stamped at the
month's start), so two API replicas publishing the same month do no harm.

Each turn publishes the running month, and the previous one during the first days
of a month (incidents of last month still get acknowledged and resolved), for the
kota, every agency and kecamatan and every crew. `api.kpi_publish_every_s` (0: off).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from datetime import datetime, timedelta

from pantau.influx.query import InfluxQL

from .context import ApiContext
from .kpi_queries import Scope, ScopeKind, kpis_for, month_bounds, publish, report_scopes
from .principal import Principal, Role

log = logging.getLogger(__name__)

PERIOD = "month"
PREVIOUS_MONTH_DAYS = 7  # keep last month's series moving this long into a new month
PUBLISHER = Principal(subject="kpi-publisher", role=Role.OPERATOR)


def months_to_publish(now: datetime, ctx: ApiContext) -> list[str]:
    """'YYYY-MM' of the running month on the city's clock, and the previous one while
    the running month is young."""
    local = ctx.city.facts.local(now)
    months = [f"{local:%Y-%m}"]
    if local.day <= PREVIOUS_MONTH_DAYS:
        months.append(f"{local.replace(day=1) - timedelta(days=1):%Y-%m}")
    return months


def publish_now(ctx: ApiContext) -> int:
    """One turn: the points written."""
    scopes = report_scopes(ctx, PUBLISHER) + [Scope(ScopeKind.CREW, c.id) for c in ctx.roster.crews]
    written = 0
    for month in months_to_publish(ctx.clock.now(), ctx):
        begin, end = month_bounds(month, ctx.city.facts.time_zone)
        rows = [(s, PERIOD, kpis_for(ctx, PUBLISHER, s, begin, end)) for s in scopes]
        written += publish(ctx, rows)
    return written


class KpiPublisher:
    """Publishes every `every_s` seconds from start until stop; a failed turn (InfluxDB
    or the database away) is logged and the next turn tries again."""

    def __init__(self, ctx: ApiContext, every_s: float) -> None:
        # Its own InfluxDB reader: the request threads' one keeps a single connection,
        # and a turn beside them would make it open and discard connections.
        self._ctx = replace(ctx, influx=InfluxQL.from_settings(ctx.settings.influx))
        self._every_s = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kpi-publisher", daemon=True)
        self.turns = 0  # turns that wrote their points (for the operator and the tests)
        self.failures = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        if self._ctx.influx is not None:
            self._ctx.influx.close()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                points = publish_now(self._ctx)
            except Exception:
                self.failures += 1
                log.exception("kpi publish failed; next try in %.0f s", self._every_s)
            else:
                self.turns += 1
                log.debug("kpi publish: %d points", points)
            self._stop.wait(self._every_s)
