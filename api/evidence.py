"""An incident's evidence: the devices behind it, their readings around it and the
camera frames saved for it.

Camera frames: a vision worker saves the JPEG of the frame on which it first sees a
camera fault or a flood as `<evidence_dir>/<camera>/<frame time>-<reason>.jpg` and
ingest records it in InfluxDB (`camera_evidence`, field `path`, tags of the camera).
An incident names its cameras among its evidence devices (the cameras are devices to
the rules, rules.cameras), so its frames are those records of its cameras from
`FRAME_LOOKBACK` before its first breaching reading (the rule's hold starts at or after
the frame that raised the fault or flood) to its latest one. Nothing new is stored with
the incident. A frame is served only through the incident it belongs to, to a caller
that may read that incident, and only from `settings.evidence_dir`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePath
from typing import Literal

from pantau.cameras import Camera, load_cameras
from pantau.errors import ConfigError, ConfigErrors
from pantau.influx.query import InfluxQL, InfluxQLError, quote_ident
from pantau.store import Incident

from .context import ApiContext
from .schemas import CameraFrame, EvidenceDevice, EvidenceOut, SeriesPoint

logger = logging.getLogger(__name__)

MARGIN = timedelta(minutes=30)  # readings shown before the first and after the last
MAX_POINTS = 2000
FRAME_LOOKBACK = timedelta(minutes=10)
MAX_FRAMES = 50
FRAME_NAME = re.compile(r"^[0-9]{8}T[0-9]{6}\.[0-9]{3}Z-[a-z-]+\.jpg$")  # vision.analyzer


def evidence_of(ctx: ApiContext, incident: Incident) -> EvidenceOut:
    ev = incident.evidence
    devices = []
    cameras = _cameras(ctx)
    for device_id in ev.device_ids:
        d = ctx.city.devices.get(device_id)
        camera = cameras.get(device_id)
        if d is None and camera is not None:
            devices.append(
                EvidenceDevice(
                    id=camera.id,
                    name=camera.name,
                    kind=f"cctv_{camera.kind.value}",
                    kelurahan_id=camera.kelurahan_id,
                    lon=camera.lon,
                    lat=camera.lat,
                )
            )
            continue
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
        camera_frames=camera_frames(ctx, incident),
    )


def _cameras(ctx: ApiContext) -> Mapping[str, Camera]:
    cached = ctx.caches.get("cameras")
    if cached is None:
        try:
            cached = load_cameras(ctx.city)
        except (ConfigError, ConfigErrors, FileNotFoundError) as err:
            logger.warning("no camera registry, incidents show no camera frames: %s", err)
            cached = {}
        ctx.caches["cameras"] = cached
    assert isinstance(cached, dict)
    return cached


def camera_frames(ctx: ApiContext, incident: Incident) -> list[CameraFrame]:
    """The saved frames of the incident's cameras around it (oldest first)."""
    ev = incident.evidence
    cameras = [d for d in ev.device_ids if d in _cameras(ctx)]
    if not cameras or ctx.influx is None:
        return []
    params: dict[str, str | int | float | bool] = {
        "start": (ev.first_at - FRAME_LOOKBACK).isoformat(),
        "end": ev.last_at.isoformat(),
    }
    ors = []
    for i, camera_id in enumerate(cameras):
        params[f"c{i}"] = camera_id
        ors.append(f'"device" = $c{i}')
    where = f"({' OR '.join(ors)}) AND time >= $start AND time <= $end"
    q = f'SELECT faults, path FROM camera_evidence WHERE {where} GROUP BY "device"'  # noqa: S608
    try:
        rows = ctx.influx.rows(f"{q} LIMIT {MAX_FRAMES}", params=params, epoch="ms")
    except InfluxQLError as err:
        logger.warning("camera frames of incident %d unavailable: %s", incident.id, err)
        return []
    frames = []
    for row in rows:
        cid, stored, t = row.get("device"), row.get("path"), row.get("time")
        if not isinstance(cid, str) or not isinstance(stored, str) or not isinstance(t, int):
            continue
        name = PurePath(stored).name
        if not FRAME_NAME.match(name):
            continue
        faults = row.get("faults")
        frames.append(
            CameraFrame(
                camera_id=cid,
                at=datetime.fromtimestamp(t / 1000, UTC),
                faults=[f for f in str(faults or "").split(",") if f],
                url=f"/incidents/{incident.id}/frames/{cid}/{name}",
            )
        )
    frames.sort(key=lambda f: (f.at, f.camera_id))
    return frames


def frame_file(ctx: ApiContext, incident: Incident, camera_id: str, name: str) -> Path | None:
    """The JPEG of one of the incident's frames, or None: a name the incident does not
    link, or a file no longer under `settings.evidence_dir`."""
    if not FRAME_NAME.match(name):
        return None
    url = f"/incidents/{incident.id}/frames/{camera_id}/{name}"
    if not any(f.url == url for f in camera_frames(ctx, incident)):
        return None
    root = ctx.settings.evidence_dir.resolve()
    path = (root / camera_id / name).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        return None
    return path


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
