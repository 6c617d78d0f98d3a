"""The camera registry's strict loading, the FrameAnalysis wire form and its lines."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ingest.cameras import CameraLines
from pantau.cameras import Camera, CameraKind, load_cameras
from pantau.city import City
from pantau.devices import default_config_dir
from pantau.errors import ConfigErrors
from pantau.frame_analysis import (
    AnalysisDecodeError,
    CameraState,
    FrameAnalysis,
    Measure,
    decode_analysis,
    encode_analysis,
    encode_status,
)
from pantau.topics import Topics

WHEN = datetime(2026, 11, 27, 8, 0, 0, 123000, tzinfo=UTC)


def test_registry_places_cameras_in_the_city(city: City, cameras: dict[str, Camera]) -> None:
    assert len(cameras) == 10
    flood = [c for c in cameras.values() if c.kind is CameraKind.FLOOD]
    assert len(flood) == 4
    for c in flood:
        assert c.gauge is not None and c.station is not None
        station = city.devices[c.station]
        # A flood camera watches the channel of a nearby water-level station (< 300 m).
        assert abs(station.lon - c.lon) < 0.003 and abs(station.lat - c.lat) < 0.003
    assert cameras["cam-flood-babakan"].kelurahan_id == "kel-babakan"


@pytest.fixture
def config_copy(tmp_path: Path) -> Path:
    return Path(shutil.copytree(default_config_dir(), tmp_path / "config"))


def line_of(path: Path, needle: str) -> int:
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if needle in line:
            return number
    raise AssertionError(needle)


@pytest.mark.parametrize(
    ("old", "new", "marker", "message"),
    [
        ("    sample_fps: 2\n", "    sample_fps: 2\n    zoom: 3\n", "zoom: 3", "zoom: unknown key"),
        ("station: wl-babakan-002", "station: rg-babakan-001", "rg-babakan-001",
         "is not a water-level station"),
        ("location: [106.6378, -6.1866]", "location: [106.9, -6.1866]", "106.9,",
         "outside every kelurahan"),
        ("    gauge: {zero: [452, 340]", "    gaugex: {zero: [452, 340]", "gaugex",
         "unknown key"),
    ],
)  # fmt: skip
def test_config_errors_name_file_and_line(
    city: City, config_copy: Path, old: str, new: str, marker: str, message: str
) -> None:
    path = config_copy / "cameras.yaml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(ConfigErrors) as info:
        load_cameras(city, path)
    errors = [str(e) for e in info.value.errors]
    assert any(
        e.startswith(f"{path}:{line_of(path, marker)}: ") and message in e for e in errors
    ), errors


def analysis() -> FrameAnalysis:
    return FrameAnalysis(
        camera_id="cam-flood-babakan",
        time=WHEN,
        seq=7,
        width=640,
        height=360,
        measures=(
            Measure("water_depth", 63.5, "cm", 0.8),
            Measure("region_motion", 0.12, "/", 0.9, "channel"),
        ),
        faults=("blur",),
        evidence="run/evidence/cam-flood-babakan/x.jpg",
    )


def test_wire_form_round_trips() -> None:
    assert decode_analysis(encode_analysis(analysis())) == analysis()


@pytest.mark.parametrize(
    "payload",
    [
        b"{",
        b'{"camera": "x", "time": "2026-11-27T08:00:00", "seq": 1, "frame": [1, 1], '
        b'"measures": []}',  # naive time
        b'{"camera": "x", "time": "2026-11-27T08:00:00Z", "seq": 1, "frame": [1, 1], '
        b'"measures": [], "faults": ["melted"]}',
        b'{"camera": "x", "time": "2026-11-27T08:00:00Z", "seq": 1, "frame": [1, 1], '
        b'"measures": [{"name": "Bad Name", "value": 1, "unit": "/", "confidence": 1}]}',
    ],
)
def test_invalid_analyses_are_refused(payload: bytes) -> None:
    with pytest.raises(AnalysisDecodeError):
        decode_analysis(payload)


def test_ingest_lines_and_rejections(cameras: dict[str, Camera]) -> None:
    topics = Topics("t")
    lines = CameraLines(cameras, topics)
    out = lines.handle(topics.camera_analysis("cam-flood-babakan"), encode_analysis(analysis()))
    assert out.rejections == []
    tags = (
        ",agency=bpbd,camera=cam-flood-babakan,device=cam-flood-babakan,"
        "kecamatan=kec-tangerang,kelurahan=kel-babakan,kind=cctv_flood"
    )
    millis = 1795766400123
    assert out.lines == [
        f"water_depth{tags} value=63.5,confidence=0.8 {millis}",
        f"region_motion{tags},region=channel value=0.12,confidence=0.9 {millis}",
        f'camera_evidence{tags} faults="blur",path="run/evidence/cam-flood-babakan/x.jpg" {millis}',
    ]
    wrong = lines.handle(topics.camera_analysis("cam-flood-karawaci"), encode_analysis(analysis()))
    assert [r for r, _ in wrong.rejections] == ["device_mismatch"]
    unknown = lines.handle(topics.camera_analysis("cam-nope"), encode_analysis(analysis()))
    assert [r for r, _ in unknown.rejections] == ["unknown_camera"]
    status = lines.handle(
        topics.camera_status("cam-flood-babakan"),
        encode_status("cam-flood-babakan", CameraState.RECONNECTING, WHEN, "timeout"),
    )
    assert status.lines == [f'camera_state{tags} state="reconnecting",online=0i {millis}']
    assert not lines.handles(topics.sensor_up("wl-babakan-002"))
