"""Cameras as the rules see them: devices at their camera's location, analyses as readings.

Why pseudo-devices derived from the camera registry, and only in the rules' view of the
city (`rules_city`): the engine, its evaluators, zone keys, routing and the incident
evidence all work on `City.devices`; a camera placed like a device (kelurahan and
kecamatan from its location, resolved once by `load_cameras` through the zone index)
with a device kind (`cctv_flood`, `cctv_traffic` from the catalogue) needs none of them
changed. The cameras are *not* added to the device registry itself: a camera sends no
sensor readings, has no broker account, counts in no sensor availability and must never
be accepted on a sensor topic, so ingest, the broker config, the API and the simulators
keep the honest registry (`config/devices.yaml`) and only the rule engine and rule-file
validation see the cameras. A separate reader feeding a second engine was the other
choice; it would have split zone keys and the watermark in two for no gain.

Readings (`CameraReadings`): a vision worker analyses 2-5 frames a second; the rules take
one analysis per camera per report interval of its kind (`report_every_s` in the
catalogue, 5 s): the first whose frame time falls into a new interval. Holds are minutes,
so nothing is lost but load, and the rebuild can read the same rate back from InfluxDB
cheaply (`read_camera_history`, one aggregate per interval). Each catalogue metric of the
kind becomes one reading in the catalogue's unit (`region_occupancy` 0..1 -> %); a region
measure (occupancy, motion, stopped traffic) becomes the camera's worst region (its
maximum), so `stopped_traffic` is "the lane that has stood still longest". Measures with
a confidence below `MIN_CONFIDENCE` are left out: the worker lowers the confidence of
region and gauge measures while a camera fault is raised, and a covered gauge must not
read as a flood (the flood rule then sees silence, not water).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pantau.cameras import Camera
from pantau.catalogue import Catalogue
from pantau.city import City
from pantau.devices import Device
from pantau.frame_analysis import (
    MEASURE_UNITS,
    AnalysisDecodeError,
    FrameAnalysis,
    decode_analysis,
)
from pantau.influx.query import InfluxQL, quote_ident
from pantau.readings import Reading
from pantau.topics import Topics

MIN_CONFIDENCE = 0.5
CAMERA_KINDS = {"flood": "cctv_flood", "traffic": "cctv_traffic"}


@dataclass(frozen=True, slots=True, kw_only=True)
class CameraDevice(Device):
    """A camera as a device: what the flood and cross-check rules need of its registry
    entry besides the location."""

    flood_depth_cm: float | None  # flood cameras: depth that counts as a flood
    station: str | None  # flood cameras: the water-level station beside the gauge
    station_offset_cm: float  # station water level when the gauge reads 0 cm
    gauge_top_cm: float | None  # the gauge cannot read above its top mark


def camera_devices(cameras: Mapping[str, Camera], catalogue: Catalogue) -> dict[str, CameraDevice]:
    out: dict[str, CameraDevice] = {}
    for c in cameras.values():
        kind = CAMERA_KINDS[c.kind.value]
        flood = c.kind.value == "flood"
        out[c.id] = CameraDevice(
            id=c.id,
            kind=kind,
            agency=c.agency,
            lon=c.lon,
            lat=c.lat,
            name=c.name,
            kelurahan_id=c.kelurahan_id,
            kecamatan_id=c.kecamatan_id,
            metrics=catalogue.kinds[kind].metrics,
            levels=None,
            flood_depth_cm=c.flood_depth_cm if flood else None,
            station=c.station,
            station_offset_cm=c.station_offset_cm,
            gauge_top_cm=c.gauge.top_cm if c.gauge is not None else None,
        )
    return out


def rules_city(city: City, cameras: Mapping[str, Camera]) -> City:
    """The city the rule engine sees: the device registry plus one device per camera."""
    if not cameras:
        return city
    clash = sorted(set(cameras) & set(city.devices))
    if clash:
        raise ValueError(f"camera ids {clash} are also device ids")
    devices: dict[str, Device] = {**city.devices, **camera_devices(cameras, city.catalogue)}
    return dataclasses.replace(city, devices=devices)


@dataclass(slots=True)
class CameraRead:
    readings: list[Reading]
    rejected: int = 0  # not a registered camera, a bad payload (ingest dead-letters them)
    skipped: bool = False  # a valid analysis inside an interval already taken


class CameraReadings:
    """Analyses on `{root}/cameras/{camera}/analysis` -> readings for the rule engine."""

    def __init__(self, cameras: Mapping[str, Camera], catalogue: Catalogue, topics: Topics):
        self._topics = topics
        self._catalogue = catalogue
        self._kinds = {cid: CAMERA_KINDS[c.kind.value] for cid, c in cameras.items()}
        self._steps = {
            cid: catalogue.kinds[kind].report_every_s for cid, kind in self._kinds.items()
        }
        self._last_slot: dict[str, int] = {}

    def handles(self, topic: str) -> bool:
        return self._topics.camera_of_analysis_topic(topic) is not None

    def read(self, topic: str, payload: bytes, *, take: bool = True) -> CameraRead:
        """`take=False`: a peek, the interval is not marked as taken."""
        camera_id = self._topics.camera_of_analysis_topic(topic)
        if camera_id is None or camera_id not in self._kinds:
            return CameraRead([], rejected=1)
        try:
            analysis = decode_analysis(payload)
        except AnalysisDecodeError:
            return CameraRead([], rejected=1)
        if analysis.camera_id != camera_id:
            return CameraRead([], rejected=1)
        slot = int(analysis.time.timestamp() // self._steps[camera_id])
        last = self._last_slot.get(camera_id)
        if last is not None and slot <= last:
            return CameraRead([], skipped=True)
        if take:
            self._last_slot[camera_id] = slot
        return CameraRead(self.readings(analysis))

    def readings(self, analysis: FrameAnalysis) -> list[Reading]:
        """Every catalogue metric of the camera's kind that the analysis carries."""
        kind = self._catalogue.kinds[self._kinds[analysis.camera_id]]
        worst: dict[str, float] = {}
        for m in analysis.measures:
            spec = self._catalogue.metrics.get(m.name)
            if m.name not in kind.metrics or spec is None or m.confidence < MIN_CONFIDENCE:
                continue
            value = spec.to_canonical(m.value, m.unit)
            if value is None or not spec.valid_min <= value <= spec.valid_max:
                continue
            worst[m.name] = max(value, worst.get(m.name, value))
        return [
            Reading(
                device_id=analysis.camera_id,
                metric=name,
                value=value,
                unit=self._catalogue.metrics[name].unit,
                time=analysis.time,
                seq=analysis.seq,
            )
            for name, value in sorted(worst.items())
        ]


def read_camera_history(
    influx: InfluxQL,
    cameras: Mapping[str, Camera],
    catalogue: Catalogue,
    start: datetime,
    end: datetime | None = None,
) -> list[Reading]:
    """Camera readings with `start <= time < end` (no end: up to now) from what ingest
    stored, at the rules' rate: per camera, metric and report interval the largest
    confident value over its frames and regions, timed at the interval's start (which
    may lie before `start`). Unsorted. Raises InfluxQLError."""
    kinds = {CAMERA_KINDS[c.kind.value] for c in cameras.values()}
    if not kinds:
        return []
    metrics = sorted({m for k in kinds for m in catalogue.kinds[k].metrics})
    step = min(catalogue.kinds[k].report_every_s for k in kinds)
    source = ",".join(quote_ident(m) for m in metrics)
    params = {"start": start.isoformat()}
    until = ""
    if end is not None:
        params["end"] = end.isoformat()
        until = " AND time < $end"
    query = (
        f"SELECT max(value) FROM {source} WHERE time >= $start{until}"  # noqa: S608 - quoted
        f' AND confidence >= {MIN_CONFIDENCE} GROUP BY time({int(step * 1000)}ms), "device"'
        " fill(none)"
    )
    out: list[Reading] = []
    for s in influx.query(query, params=params, epoch="ms"):
        device_id = s.tags.get("device")
        spec = catalogue.metrics.get(s.name)
        if spec is None or device_id is None or device_id not in cameras:
            continue
        for ms, value in s.values:
            if not isinstance(ms, int) or not isinstance(value, int | float):
                continue
            canonical = spec.to_canonical(float(value), MEASURE_UNITS.get(s.name, spec.unit))
            if canonical is None:
                continue
            out.append(
                Reading(
                    device_id=device_id,
                    metric=s.name,
                    value=canonical,
                    unit=spec.unit,
                    time=datetime.fromtimestamp(ms / 1000, UTC),
                )
            )
    return out


def iter_camera_history(
    influx: InfluxQL,
    cameras: Mapping[str, Camera],
    catalogue: Catalogue,
    start: datetime,
    end: datetime,
    *,
    chunk: timedelta,
) -> Iterator[Reading]:
    """`read_camera_history` in event-time order, one query per `chunk` of time (the
    backtest's paging, as `rules.history.iter_readings`)."""
    at = start
    while at < end:
        upto = min(at + chunk, end)
        page = read_camera_history(influx, cameras, catalogue, at, upto)
        page.sort(key=lambda r: (r.time, r.device_id, r.metric))
        yield from page
        at = upto


def cameras_heard(influx: InfluxQL, start: datetime, end: datetime) -> set[str]:
    """Cameras with at least one stored analysis in [start, end) (every analysis carries
    `camera_fault`). Raises InfluxQLError."""
    rows = influx.rows(
        'SELECT count(value) FROM "camera_fault" WHERE time >= $start AND time < $end'
        ' GROUP BY "device"',
        params={"start": start.isoformat(), "end": end.isoformat()},
    )
    return {str(r["device"]) for r in rows if r.get("count")}
