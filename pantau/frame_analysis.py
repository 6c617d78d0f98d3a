"""`FrameAnalysis`: what a vision worker read from one camera frame, and its wire form.

An analysis is a list of measures, each a number with a unit and a confidence (0..1),
so turning one into readings is a loop: measure `name` -> metric, `value` in `unit`,
`region` (if any) as a tag. Measure names and units (SenML units, as the catalogue):

| name                | unit | region | meaning |
|---------------------|------|--------|---------|
| `camera_brightness` | `/`  | -   | mean luma of the frame, 0 (black) .. 1 (white) |
| `camera_sharpness`  | `/`  | -   | Laplacian variance / the reference frame's (1 = as sharp) |
| `camera_frozen`     | `s`  | -   | seconds the picture has not changed at all |
| `camera_occlusion`  | `/`  | -   | share of textured cells that went flat (covered lens) |
| `camera_shift`      | `/`  | -   | view offset against the reference, share of the width |
| `camera_fault`      | `/`  | -   | 1 while any fault below is raised, else 0 |
| `region_motion`     | `/`  | yes | share of the region changed since the last analysed frame |
| `region_occupancy`  | `/`  | yes | share of the region unlike the learned empty background |
| `stopped_traffic`   | `s`  | yes | seconds a lane has been occupied without motion (0: flowing) |
| `water_depth`       | `cm` | -   | depth read on the staff gauge (flood cameras only) |

`faults` names the camera faults raised on this frame, from `CAMERA_FAULTS`: `blur`,
`dark`, `overexposed`, `frozen`, `occluded`, `shifted`. `evidence` is the path of the
JPEG saved for this frame when a fault or a flood was first raised, else None.
`time` is the frame's capture time (tz-aware UTC): point identity in InfluxDB.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from pantau.topics import DEVICE_ID_PATTERN
from pantau.wire import rfc3339

ANALYSIS_CONTENT_TYPE = "application/json"

CAMERA_FAULTS = ("blur", "dark", "overexposed", "frozen", "occluded", "shifted")
CameraFault = Literal["blur", "dark", "overexposed", "frozen", "occluded", "shifted"]

# measure name -> unit; the table in the docstring, as data.
MEASURE_UNITS: dict[str, str] = {
    "camera_brightness": "/",
    "camera_sharpness": "/",
    "camera_frozen": "s",
    "camera_occlusion": "/",
    "camera_shift": "/",
    "camera_fault": "/",
    "region_motion": "/",
    "region_occupancy": "/",
    "stopped_traffic": "s",
    "water_depth": "cm",
}


class CameraState(StrEnum):
    """The frame source's own state, published retained on `{root}/cameras/{id}/status`."""

    ONLINE = "online"
    RECONNECTING = "reconnecting"
    OFFLINE = "offline"


@dataclass(frozen=True, slots=True)
class Measure:
    name: str
    value: float
    unit: str
    confidence: float
    region: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class FrameAnalysis:
    camera_id: str
    time: datetime
    seq: int
    width: int
    height: int
    measures: tuple[Measure, ...]
    faults: tuple[str, ...] = ()
    evidence: str | None = None

    def value(self, name: str, region: str | None = None) -> float | None:
        """The value of one measure, or None if this analysis does not carry it."""
        for m in self.measures:
            if m.name == name and m.region == region:
                return m.value
        return None


class AnalysisDecodeError(ValueError):
    """A payload on an analysis topic that is not a valid FrameAnalysis."""


# --- wire form (JSON) ---------------------------------------------------------------------


class _MeasureModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    value: float = Field(allow_inf_nan=False)
    unit: str = Field(max_length=16)
    confidence: float = Field(ge=0, le=1)
    region: str | None = Field(default=None, pattern=DEVICE_ID_PATTERN)


class _AnalysisModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    camera: str = Field(pattern=DEVICE_ID_PATTERN)
    time: AwareDatetime
    seq: int = Field(ge=0)
    frame: tuple[int, int]
    measures: list[_MeasureModel] = Field(max_length=1000)
    faults: list[CameraFault] = []
    evidence: str | None = None


def encode_analysis(a: FrameAnalysis) -> bytes:
    body = {
        "camera": a.camera_id,
        "time": rfc3339(a.time),
        "seq": a.seq,
        "frame": [a.width, a.height],
        "measures": [
            {"name": m.name, "value": round(m.value, 4), "unit": m.unit}
            | {"confidence": round(m.confidence, 3)}
            | ({"region": m.region} if m.region is not None else {})
            for m in a.measures
        ],
        "faults": list(a.faults),
        "evidence": a.evidence,
    }
    return json.dumps(body, separators=(",", ":")).encode("utf-8")


def decode_analysis(payload: bytes) -> FrameAnalysis:
    try:
        m = _AnalysisModel.model_validate_json(payload)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(document)"
        raise AnalysisDecodeError(f"{where}: {first['msg']}") from err
    return FrameAnalysis(
        camera_id=m.camera,
        time=m.time,
        seq=m.seq,
        width=m.frame[0],
        height=m.frame[1],
        measures=tuple(
            Measure(x.name, x.value, x.unit, x.confidence, x.region) for x in m.measures
        ),
        faults=tuple(m.faults),
        evidence=m.evidence,
    )


def encode_status(camera_id: str, state: CameraState, time: datetime, detail: str = "") -> bytes:
    body = {"camera": camera_id, "state": state.value, "time": rfc3339(time), "detail": detail}
    return json.dumps(body).encode("utf-8")
