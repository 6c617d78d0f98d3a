"""Stored readings read back from InfluxDB (InfluxQL) for the rule engine.

Ingest writes one measurement per catalogue metric with the device as a tag, so a
reading comes back as (measurement, device tag, time, value). Series of metrics the
catalogue does not know and devices the registry does not hold are skipped.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Collection, Iterator, Mapping
from datetime import UTC, datetime, timedelta

from pantau.cameras import Camera
from pantau.catalogue import Catalogue
from pantau.city import City
from pantau.influx.query import InfluxQL, InfluxQLError, Series
from pantau.readings import Reading
from rules.cameras import read_camera_history

log = logging.getLogger(__name__)

DEFAULT_CHUNK = timedelta(hours=1)
_SINCE = "SELECT value FROM /.*/ WHERE time >= $start GROUP BY device"
_BETWEEN = "SELECT value FROM /.*/ WHERE time >= $start AND time < $end GROUP BY device"


def read_readings(
    influx: InfluxQL,
    city: City,
    start: datetime,
    end: datetime | None = None,
    *,
    devices: Collection[str] | None = None,
) -> list[Reading]:
    """Readings with `start <= time < end` (no end: up to the latest), grouped by series,
    not sorted; only of `devices` if given (a rules partition's). Raises InfluxQLError
    when the server refuses or cannot be reached."""
    params = {"start": start.isoformat()}
    query = _SINCE
    if end is not None:
        query = _BETWEEN
        params["end"] = end.isoformat()
    if devices is not None:
        if not devices:
            return []
        # Device ids are [A-Za-z0-9_.-] (pantau.topics); escaped all the same.
        alternatives = "|".join(re.escape(d) for d in sorted(devices))
        query = query.replace(" GROUP BY", f" AND device =~ /^(?:{alternatives})$/ GROUP BY")
    out: list[Reading] = []
    for s in influx.query(query, params=params, epoch="ms"):
        device_id = s.tags.get("device")
        if device_id in city.devices:
            out.extend(_series_readings(s, city.catalogue, device_id))
    return out


def _series_readings(
    s: Series, catalogue: Catalogue, device_id: str, seqs: tuple[int, int] | None = None
) -> Iterator[Reading]:
    """The rows of `s` (columns time in ms, value, and seq if queried) as the device's
    Readings, none when `s` is no catalogue metric's; rows without an integer time or a
    number are skipped. With `seqs` (after, next), so is a row whose seq is not strictly
    between them; one without seq (SenML) is kept."""
    spec = catalogue.metrics.get(s.name)
    if spec is None:  # data_quality points and the like share the device tag
        return
    at, val = s.columns.index("time"), s.columns.index("value")
    sq = s.columns.index("seq") if "seq" in s.columns else None
    for row in s.values:
        ms, value = row[at], row[val]
        seq = None if sq is None else row[sq]
        if not isinstance(ms, int) or not isinstance(value, int | float):
            continue
        if seqs is not None and seq is not None:
            after_seq, next_seq = seqs
            if not (isinstance(seq, int) and after_seq < seq < next_seq):
                continue
        yield Reading(
            device_id=device_id,
            metric=s.name,
            value=float(value),
            unit=spec.unit,
            time=_from_ms(ms),
            seq=seq if isinstance(seq, int) else None,
        )


_LATEST = "SELECT last(value) FROM /.*/ WHERE time >= $start"


def rebuild_history(
    influx: InfluxQL, city: City, cameras: Mapping[str, Camera], since: datetime
) -> list[Reading]:
    """`read_history` for a rebuild: nothing (logged) when InfluxDB does not answer."""
    try:
        return read_history(influx, city, cameras, since)
    except InfluxQLError as err:
        log.warning("no rebuild, InfluxDB did not answer: %s", err)
        return []


def latest_time(influx: InfluxQL, start: datetime) -> datetime | None:
    """The newest stored reading's time since `start`, any metric (None: nothing)."""
    series = influx.query(_LATEST, params={"start": start.isoformat()}, epoch="ms")
    times = [ms for s in series for ms, *_ in s.values if isinstance(ms, int)]
    return _from_ms(max(times)) if times else None


def await_stored(influx: InfluxQL, first: datetime, *, window_s: float, wait_s: float) -> None:
    """Wait (at most `wait_s`) until InfluxDB holds readings up to `first`, the earliest
    redelivered one, looking back `window_s`; log and give up when it does not answer or
    does not get there in time (the rebuild goes on with what is stored)."""
    since = first - timedelta(seconds=window_s)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            stored = latest_time(influx, since)
        except InfluxQLError as err:
            log.warning("InfluxDB did not answer while waiting for history: %s", err)
            return
        if stored is not None and stored >= first:
            return
        if time.monotonic() >= deadline:
            log.warning(
                "rebuilding without history up to %s: InfluxDB holds readings up to %s",
                first,
                stored,
            )
            return
        time.sleep(0.2)


_UPLINKS = "SELECT value, seq FROM /.*/ WHERE device = $device AND time >= $start AND time <= $end"


def read_uplinks(
    influx: InfluxQL,
    city: City,
    device_id: str,
    *,
    after_seq: int,
    next_seq: int,
    start: datetime,
    end: datetime,
) -> list[Reading]:
    """The device's stored readings with device time `start <= time <= end` (the readings
    on either side of a seq gap, rules.gaps) whose uplink counter is strictly between
    `after_seq` and `next_seq`, or that carry none (SenML), with their seq. Ingest
    stores `seq` with every reading of a native-form message. Raises InfluxQLError when
    the server refuses or cannot be reached."""
    params = {"device": device_id, "start": start.isoformat(), "end": end.isoformat()}
    seqs = (after_seq, next_seq)
    out = [
        reading
        for s in influx.query(_UPLINKS, params=params, epoch="ms")
        for reading in _series_readings(s, city.catalogue, device_id, seqs)
    ]
    out.sort(key=lambda r: (r.time, r.metric))
    return out


def iter_readings(
    influx: InfluxQL,
    city: City,
    start: datetime,
    end: datetime,
    chunk: timedelta = DEFAULT_CHUNK,
) -> Iterator[Reading]:
    """Readings with `start <= time < end` in event-time order (time, device, metric),
    one query per `chunk` of time so only one chunk is held in memory."""
    if chunk <= timedelta(0):
        raise ValueError("chunk must be positive")
    at = start
    while at < end:
        upto = min(at + chunk, end)
        page = read_readings(influx, city, at, upto)
        page.sort(key=lambda r: (r.time, r.device_id, r.metric))
        yield from page
        at = upto


def _from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def read_history(
    influx: InfluxQL,
    city: City,
    cameras: Mapping[str, Camera],
    since: datetime,
    devices: Collection[str] | None = None,
) -> list[Reading]:
    """What a rebuild replays: the devices' readings and the cameras' analyses since
    `since` (all devices when `devices` is None)."""
    readings = read_readings(influx, city, since, devices=devices)
    return readings + read_camera_history(influx, cameras, city.catalogue, since)
