"""Camera analyses and camera states as InfluxDB line protocol.

Schema: each measure of a `FrameAnalysis` is a point like a reading: measurement =
measure name (`water_depth`, `region_occupancy`, ...), tags `agency, camera, device,
kecamatan, kelurahan, kind` from the camera registry (`device` = the camera id, so
dashboards and the rules' history reader treat a camera like any device) plus
`region` for per-region measures; fields `value` (float) and `confidence`. Time is the
frame's capture time (ms), so point identity = measurement + tags + frame time and a
redelivered analysis overwrites itself. Faults and evidence go to `camera_evidence`
(fields `faults`, `path`) on the frames that carry an evidence JPEG; camera states
(`{root}/cameras/{id}/status`) to `camera_state` (fields `state`, `online`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from pantau.cameras import Camera
from pantau.frame_analysis import AnalysisDecodeError, CameraState, FrameAnalysis, decode_analysis
from pantau.influx.lineprotocol import EPOCH, MILLISECOND, tag_value
from pantau.topics import Topics

MAX_BYTES = 256 * 1024
_FIELD_STRING_ESCAPES = str.maketrans({'"': r"\"", "\\": "\\\\"})


@dataclass(slots=True)
class CameraOutcome:
    lines: list[str] = field(default_factory=list)
    rejections: list[tuple[str, str]] = field(default_factory=list)  # (reason, detail)


def camera_tags(camera: Camera) -> str:
    tags = {
        "agency": camera.agency,
        "camera": camera.id,
        "device": camera.id,
        "kecamatan": camera.kecamatan_id,
        "kelurahan": camera.kelurahan_id,
        "kind": f"cctv_{camera.kind.value}",
    }
    return "".join(f",{k}={tag_value(v)}" for k, v in sorted(tags.items()))


class CameraLines:
    def __init__(self, cameras: Mapping[str, Camera], topics: Topics) -> None:
        self._cameras = cameras
        self._topics = topics
        self._tags = {cid: camera_tags(c) for cid, c in cameras.items()}

    def handles(self, topic: str) -> bool:
        return (
            self._topics.camera_of_analysis_topic(topic) is not None
            or self._status_camera(topic) is not None
        )

    def handle(self, topic: str, payload: bytes) -> CameraOutcome:
        out = CameraOutcome()
        if len(payload) > MAX_BYTES:
            out.rejections.append(("too_large", f"{len(payload)} bytes, limit {MAX_BYTES}"))
            return out
        camera_id = self._topics.camera_of_analysis_topic(topic)
        if camera_id is not None:
            self._analysis(camera_id, payload, out)
            return out
        camera_id = self._status_camera(topic)
        if camera_id is not None:
            self._status(camera_id, payload, out)
        return out

    def _analysis(self, camera_id: str, payload: bytes, out: CameraOutcome) -> None:
        if camera_id not in self._cameras:
            out.rejections.append(("unknown_camera", f"camera {camera_id!r} is not registered"))
            return
        try:
            analysis = decode_analysis(payload)
        except AnalysisDecodeError as err:
            out.rejections.append(("invalid_payload", str(err)))
            return
        if analysis.camera_id != camera_id:
            detail = f"payload camera {analysis.camera_id!r} on the topic of {camera_id!r}"
            out.rejections.append(("device_mismatch", detail))
            return
        out.lines.extend(analysis_lines(analysis, self._tags[camera_id]))

    def _status(self, camera_id: str, payload: bytes, out: CameraOutcome) -> None:
        if camera_id not in self._cameras:
            out.rejections.append(("unknown_camera", f"camera {camera_id!r} is not registered"))
            return
        try:
            body = json.loads(payload)
            state = CameraState(body["state"])
            time = datetime.fromisoformat(str(body["time"]).replace("Z", "+00:00"))
            if time.tzinfo is None:
                raise ValueError("time needs a UTC offset")
        except (ValueError, KeyError, TypeError) as err:
            out.rejections.append(("invalid_payload", f"camera status: {err}"))
            return
        online = 1 if state is CameraState.ONLINE else 0
        out.lines.append(
            f'camera_state{self._tags[camera_id]} state="{state.value}",online={online}i '
            f"{(time - EPOCH) // MILLISECOND}"
        )

    def _status_camera(self, topic: str) -> str | None:
        prefix, suffix = f"{self._topics.root}/cameras/", "/status"
        if topic.startswith(prefix) and topic.endswith(suffix):
            camera_id = topic[len(prefix) : -len(suffix)]
            return camera_id if "/" not in camera_id else None
        return None


def analysis_lines(analysis: FrameAnalysis, tags: str) -> list[str]:
    millis = (analysis.time - EPOCH) // MILLISECOND
    lines = []
    for m in analysis.measures:
        region = f",region={tag_value(m.region)}" if m.region is not None else ""
        lines.append(
            f"{m.name}{tags}{region} value={float(m.value)!r},confidence={float(m.confidence)!r}"
            f" {millis}"
        )
    if analysis.evidence is not None:
        faults = ",".join(analysis.faults).translate(_FIELD_STRING_ESCAPES)
        path = analysis.evidence.translate(_FIELD_STRING_ESCAPES)
        lines.append(f'camera_evidence{tags} faults="{faults}",path="{path}" {millis}')
    return lines
