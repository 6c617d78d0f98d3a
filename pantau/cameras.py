"""The camera registry (`config/cameras.yaml`): where each CCTV camera is, how to reach it,
how often to analyse it, and what to look at in its picture.

Image coordinates (regions, the staff gauge) are pixels of `frame_size`; a stream of
another size is analysed with them scaled, so a camera can change resolution without
a config change.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator
from shapely.geometry import Polygon

from pantau.city import City
from pantau.devices import Commissioned, in_service_from
from pantau.errors import ConfigError, ConfigErrors
from pantau.topics import DEVICE_ID_PATTERN
from pantau.yamlconf import load_model

Point = tuple[float, float]


class CameraKind(StrEnum):
    TRAFFIC = "traffic"  # road: motion, occupancy, stopped traffic
    FLOOD = "flood"  # channel or flood-prone road with a staff gauge: water depth


class SourceKind(StrEnum):
    RTSP = "rtsp"  # rtsp:// through OpenCV's FFMPEG backend
    MJPEG = "mjpeg"  # an HTTP multipart JPEG stream, also through FFMPEG
    SNAPSHOT = "snapshot"  # an HTTP URL returning one JPEG per request
    FILE = "file"  # a recorded video file (replays, tests)


class RegionKind(StrEnum):
    LANE = "lane"  # one direction of traffic: stopped-traffic detection
    ROAD = "road"  # a road stretch: motion, occupancy, water on the road
    DRAIN = "drain"  # a channel or drain


class SourceModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: SourceKind
    url: str = Field(min_length=1, description="stream / snapshot URL or file path")


class RegionModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=DEVICE_ID_PATTERN, description="tag value in InfluxDB")
    kind: RegionKind
    polygon: list[tuple[float, float]] = Field(
        min_length=3, description="[x, y] pixels of frame_size"
    )

    @model_validator(mode="after")
    def _simple(self) -> RegionModel:
        poly = Polygon(self.polygon)
        if not poly.is_valid or poly.area <= 0:
            raise ValueError("polygon must be simple (no self-crossing) with a non-zero area")
        return self


class GaugeModel(BaseModel):
    """A painted staff gauge (peilschaal): where its 0 and its top mark are in the image."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    zero: tuple[float, float] = Field(description="[x, y] of the 0 cm mark (channel bed)")
    top: tuple[float, float] = Field(description="[x, y] of the top mark")
    top_cm: float = Field(gt=0, description="reading at `top`, cm")
    width_px: float = Field(gt=2, description="board width in pixels of frame_size")

    @model_validator(mode="after")
    def _upright(self) -> GaugeModel:
        if self.top[1] >= self.zero[1]:
            raise ValueError("`top` must lie above `zero` in the image (smaller y)")
        return self


class CameraModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=DEVICE_ID_PATTERN)
    name: str = Field(min_length=1)
    kind: CameraKind
    agency: str = Field(description="agency id from agencies.yaml")
    location: tuple[float, float] = Field(description="[lon, lat] in WGS 84")
    source: SourceModel
    sample_fps: float = Field(default=5.0, gt=0, le=30, description="frames analysed per s")
    frame_size: tuple[int, int] = Field(description="[width, height] the pixels refer to")
    regions: list[RegionModel] = Field(default_factory=list)
    gauge: GaugeModel | None = None
    flood_depth_cm: float = Field(
        default=20.0, gt=0, description="water depth that counts as a flood (evidence saved)"
    )
    station: str | None = Field(
        default=None, description="nearby water-level station, for the sensor cross-check"
    )
    station_offset_cm: float = Field(
        default=0.0,
        description="the station's water level (cm above its datum) when the gauge reads 0:"
        " the gauge zero's height above the station's datum, from a survey; 0 when both"
        " stand on the same channel bed",
    )

    commissioned: Commissioned = None

    @model_validator(mode="after")
    def _gauge_for_flood(self) -> CameraModel:
        if self.kind is CameraKind.FLOOD and self.gauge is None:
            raise ValueError("a flood camera needs `gauge`")
        return self


class CamerasFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    cameras: list[CameraModel] = Field(min_length=1)


@dataclass(frozen=True, slots=True, kw_only=True)
class Region:
    id: str
    kind: RegionKind
    polygon: tuple[Point, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Gauge:
    zero: Point
    top: Point
    top_cm: float
    width_px: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Camera:
    """A registered camera with its zones resolved once, at load."""

    id: str
    name: str
    kind: CameraKind
    agency: str
    lon: float
    lat: float
    kelurahan_id: str
    kecamatan_id: str
    source_kind: SourceKind
    url: str
    sample_fps: float
    frame_size: tuple[int, int]
    regions: tuple[Region, ...]
    gauge: Gauge | None
    flood_depth_cm: float
    station: str | None
    station_offset_cm: float = 0.0
    in_service_from: datetime | None = None  # None: in service before any period asked about


def load_cameras(city: City, path: Path | None = None) -> dict[str, Camera]:
    """Cameras of `path` (default `<config_dir>/cameras.yaml`), checked against the city."""
    path = path or city.config_dir / "cameras.yaml"
    file, doc = load_model(path, CamerasFile)
    errors: list[ConfigError] = []
    cameras: dict[str, Camera] = {}
    for i, m in enumerate(file.cameras):
        here = ("cameras", i)
        if m.id in cameras:
            errors.append(doc.error((*here, "id"), f"duplicate camera id {m.id!r}"))
        if m.agency not in city.agencies:
            known = ", ".join(sorted(city.agencies))
            errors.append(
                doc.error((*here, "agency"), f"unknown agency {m.agency!r} (known: {known})")
            )
        if m.station is not None:
            device = city.devices.get(m.station)
            if device is None or device.levels is None:
                errors.append(
                    doc.error((*here, "station"), f"{m.station!r} is not a water-level station")
                )
        w, h = m.frame_size
        for j, r in enumerate(m.regions):
            if any(not (0 <= x <= w and 0 <= y <= h) for x, y in r.polygon):
                errors.append(
                    doc.error((*here, "regions", j, "polygon"), f"points outside {w}x{h}")
                )
        if len({r.id for r in m.regions}) != len(m.regions):
            errors.append(doc.error((*here, "regions"), "region ids must be unique"))
        kel = city.index.kelurahan_at(*m.location)
        if kel is None or kel.parent_id is None:
            errors.append(
                doc.error(
                    (*here, "location"),
                    f"camera {m.id!r} at {list(m.location)} lies outside every kelurahan",
                )
            )
            continue
        g = m.gauge
        cameras[m.id] = Camera(
            id=m.id,
            name=m.name,
            kind=m.kind,
            agency=m.agency,
            lon=m.location[0],
            lat=m.location[1],
            kelurahan_id=kel.id,
            kecamatan_id=kel.parent_id,
            source_kind=m.source.kind,
            url=m.source.url,
            sample_fps=m.sample_fps,
            frame_size=m.frame_size,
            regions=tuple(
                Region(id=r.id, kind=r.kind, polygon=tuple(r.polygon)) for r in m.regions
            ),
            gauge=None
            if g is None
            else Gauge(zero=g.zero, top=g.top, top_cm=g.top_cm, width_px=g.width_px),
            flood_depth_cm=m.flood_depth_cm,
            in_service_from=in_service_from(m.commissioned),
            station=m.station,
            station_offset_cm=m.station_offset_cm,
        )
    if errors:
        raise ConfigErrors(errors)
    return cameras
