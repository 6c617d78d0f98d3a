"""Vision-test fixtures: the real city and camera registry, loaded once."""

from __future__ import annotations

import pytest

from pantau.cameras import Camera, load_cameras
from pantau.city import City, load_city


@pytest.fixture(scope="session")
def city() -> City:
    return load_city()


@pytest.fixture(scope="session")
def cameras(city: City) -> dict[str, Camera]:
    return load_cameras(city)
