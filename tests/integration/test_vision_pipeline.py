"""Vision end to end: the camera simulator served over HTTP (an MJPEG stream and a
snapshot URL) -> vision workers -> the real Mosquitto -> ingest -> the real InfluxDB."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from ingest.service import IngestService
from pantau.cameras import load_cameras
from pantau.city import City, load_city
from pantau.influx.query import InfluxQL
from pantau.influx.writers import make_writer
from pantau.settings import MqttProtocol, Settings
from pantau.topics import Topics
from simulators.camera.server import CameraServer
from testkit.mqtt import Collector, wait_for
from tests.integration.camera_scenes import FLOOD, ROAD, flood_and_covered_road, served_cameras
from vision.service import VisionService

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def city() -> City:
    return load_city()


@pytest.fixture
def server() -> Iterator[CameraServer]:
    with flood_and_covered_road(covered_at_s=6.0) as srv:  # the lens covered 6 s in
        yield srv


def values(settings: Settings, measurement: str, camera: str) -> list[float]:
    with InfluxQL.from_settings(settings.influx) as influx:
        rows = influx.rows(
            f"SELECT value FROM {measurement} WHERE camera = $c ORDER BY time",
            params={"c": camera},
        )
    return [float(str(r["value"])) for r in rows]


@pytest.mark.parametrize("protocol", list(MqttProtocol))
def test_simulated_cameras_to_influxdb(
    settings: Settings, city: City, server: CameraServer, tmp_path: Path, protocol: MqttProtocol
) -> None:
    # MQTT 3.1.1 too: no content type, no v5 properties on analyses and camera states.
    settings = settings.model_copy(
        update={"mqtt": settings.mqtt.model_copy(update={"protocol": protocol})}
    )
    registry = load_cameras(city)
    cameras = served_cameras(registry, server)
    ingest = IngestService(settings, city, make_writer(settings.influx), cameras=registry)
    ingest.start()
    assert ingest.wait_subscribed(10)
    vision = VisionService(settings.mqtt, cameras, evidence_dir=tmp_path / "evidence")
    vision.start()
    try:
        wait_for(lambda: len(values(settings, "water_depth", FLOOD)) >= 30, 40, "depth readings")
        wait_for(lambda: 1.0 in values(settings, "camera_fault", ROAD), 30, "the covered camera")
        topics = Topics(settings.mqtt.root)
        states = Collector(settings.mqtt, topics.all_camera_status)  # retained: arrive at once
        wait_for(lambda: len(states.snapshot()) == 2, 10, "retained camera states")
        assert {json.loads(m.payload)["state"] for m in states.snapshot()} == {"online"}
        states.close()
    finally:
        vision.stop()

    depths = values(settings, "water_depth", FLOOD)
    assert 45 <= depths[0] <= 60 and depths[-1] >= depths[0] + 10  # the water rose
    assert all(0 <= d <= 120 for d in depths)
    occupancy = values(settings, "region_occupancy", ROAD)
    assert max(occupancy) > 0.05  # traffic seen before the lens was covered
    assert values(settings, "camera_fault", FLOOD) and set(
        values(settings, "camera_fault", FLOOD)
    ) == {0.0}

    with InfluxQL.from_settings(settings.influx) as influx:
        evidence = influx.rows("SELECT camera, faults, path FROM camera_evidence")
        wait_for(
            lambda: (
                "offline"
                in [str(r["state"]) for r in influx.rows("SELECT state FROM camera_state")]
            ),
            10,
            "offline state stored",
        )
        tags = influx.rows(
            "SELECT last(value) FROM water_depth GROUP BY device, kecamatan, kelurahan, agency"
        )
    reasons = {(str(r["camera"]), Path(str(r["path"])).stem.split("Z-")[1]) for r in evidence}
    assert reasons == {(FLOOD, "flood"), (ROAD, "occluded")}
    for row in evidence:
        assert Path(str(row["path"])).is_file()
    assert [(t["device"], t["kelurahan"], t["kecamatan"], t["agency"]) for t in tags] == [
        (FLOOD, "kel-babakan", "kec-tangerang", "bpbd")
    ]
    ingest.stop()
