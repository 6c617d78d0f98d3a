"""An incident's evidence: the devices behind it and their readings around it."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Literal

from pantau.influxql import InfluxQL, InfluxQLError, quote_ident
from rules.store import Incident

from .context import ApiContext
from .schemas import EvidenceDevice, EvidenceOut, SeriesPoint

logger = logging.getLogger(__name__)

MARGIN = timedelta(minutes=30)  # readings shown before the first and after the last
MAX_POINTS = 2000


def evidence_of(ctx: ApiContext, incident: Incident) -> EvidenceOut:
    ev = incident.evidence
    devices = []
    for device_id in ev.device_ids:
        d = ctx.city.devices.get(device_id)
        devices.append(
            EvidenceDevice(
                id=device_id,
                name=d.name if d else "",
                kind=d.kind if d else "unknown",
                kelurahan_id=d.kelurahan_id if d else None,
                lon=d.lon if d else None,
                lat=d.lat if d else None,
            )
        )
    series: list[SeriesPoint] = []
    source: Literal["influxdb", "unavailable", "none"] = "none"
    if ev.device_ids and ctx.influx is not None:
        try:
            series = _series(ctx.influx, ev.metric, ev.device_ids, ev.first_at, ev.last_at)
            source = "influxdb"
        except InfluxQLError as err:
            logger.warning("evidence series of incident %d unavailable: %s", incident.id, err)
            source = "unavailable"
    return EvidenceOut(
        metric=ev.metric,
        peak_value=ev.peak_value,
        first_at=ev.first_at,
        last_at=ev.last_at,
        devices=devices,
        series=series,
        series_source=source,
    )


def _series(
    influx: InfluxQL, metric: str, devices: tuple[str, ...], first: datetime, last: datetime
) -> list[SeriesPoint]:
    params: dict[str, str | int | float | bool] = {
        "start": (first - MARGIN).isoformat(),
        "end": (last + MARGIN).isoformat(),
    }
    ors = []
    for i, d in enumerate(devices):
        params[f"d{i}"] = d
        ors.append(f'"device" = $d{i}')
    # Only the quoted metric name is formatted in; values are bind parameters.
    source = quote_ident(metric)
    where = f"({' OR '.join(ors)}) AND time >= $start AND time <= $end"
    q = f'SELECT value FROM {source} WHERE {where} GROUP BY "device" LIMIT {MAX_POINTS}'  # noqa: S608
    points = []
    for row in influx.rows(q, params=params, epoch="ms"):
        value = row.get("value")
        t = row.get("time")
        if not isinstance(value, int | float) or not isinstance(t, int):
            continue
        points.append(
            SeriesPoint(
                device_id=str(row.get("device", "")),
                at=datetime.fromtimestamp(t / 1000, UTC),
                value=float(value),
            )
        )
    points.sort(key=lambda p: (p.at, p.device_id))
    return points
