"""Motion, occupancy and stopped traffic on the simulated road."""

from __future__ import annotations

import numpy as np
import pytest

from pantau.cameras import Camera
from simulators.camera.scene import Lighting, RoadScene, Vehicle
from tests.vision.sequences import run


def traffic(per_lane: int, seed: int = 5) -> list[Vehicle]:
    rng = np.random.default_rng(seed)
    out = []
    for lane in (0, 1):
        for i in range(per_lane):
            # Spread along the road so they do not overlap; colours away from asphalt grey.
            out.append(
                Vehicle(
                    lane,
                    x0=-60.0 + i * 860.0 / max(per_lane, 1) + float(rng.uniform(0, 30)),
                    speed=float(rng.uniform(70, 110)),
                    length=float(rng.uniform(60, 100)),
                    color=((30, 30, 170), (200, 200, 200), (150, 60, 20), (30, 140, 40))[i % 4],
                )
            )
    return out


@pytest.mark.parametrize(
    ("lighting", "rain"), [(Lighting.DAY, False), (Lighting.DUSK, False), (Lighting.DAY, True)]
)
def test_occupancy_rises_with_the_number_of_vehicles(
    lighting: Lighting, rain: bool, cameras: dict[str, Camera]
) -> None:
    camera = cameras["cam-traffic-sudirman"]
    means = []
    for n in (0, 2, 4, 8):
        scene = RoadScene(lighting=lighting, rain=rain, vehicles=traffic(n))
        occupancy, cover = [], []
        for analysis, truth in run(camera, scene, seconds=6):
            if truth.t >= 2.0:  # after the background's bootstrap
                for lane, region in enumerate(("lane-east", "lane-west")):
                    value = analysis.value("region_occupancy", region)
                    assert value is not None
                    occupancy.append(value)
                    cover.append(truth.lane_cover[lane])
        means.append(float(np.mean(occupancy)))
        # Within 0.12 of the share the vehicles' boxes cover (bodies are not boxes).
        assert abs(means[-1] - float(np.mean(cover))) <= 0.12, (n, means[-1], np.mean(cover))
    assert means[0] < 0.01
    assert means == sorted(means) and means[-1] > means[1] + 0.1, means


def test_a_queue_that_stops_is_stopped_traffic_and_flowing_lanes_are_not(
    cameras: dict[str, Camera],
) -> None:
    camera = cameras["cam-traffic-sudirman"]
    # Eastbound cars queue from t = 3 s (a breakdown ahead); westbound keeps flowing.
    queue = [Vehicle(0, 700 - i * 95, 80, 75, (40, 40, 180), stop_at_s=3.0) for i in range(8)]
    flowing = [Vehicle(1, 300, 90, 80, (180, 180, 180)), Vehicle(1, 700, 80, 80, (20, 90, 20))]
    scene = RoadScene(vehicles=queue + flowing)
    last = None
    for analysis, truth in run(camera, scene, seconds=25):
        if truth.t < 3.0:
            assert analysis.value("stopped_traffic", "lane-east") == 0.0
        west = analysis.value("stopped_traffic", "lane-west")
        assert west == 0.0, f"flowing lane reported stopped at {truth.t}s"
        last = analysis
    assert last is not None
    stopped = last.value("stopped_traffic", "lane-east")
    assert stopped is not None and stopped >= 18.0  # stopped at 3 s, seen from ~4 s on
    occupancy = last.value("region_occupancy", "lane-east")
    assert occupancy is not None and occupancy > 0.3  # the queue is still seen 22 s later
