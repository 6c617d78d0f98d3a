"""Fault tests share the session's mosquitto and influxd (tests/conftest.py) and stop,
kill and restart them: each test leaves them running as it found them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pantau.city import City, load_city
from pantau.devices import Device
from pantau.local import LocalStack


@pytest.fixture(scope="session")
def city() -> City:
    return load_city()


@pytest.fixture
def devices(city: City) -> list[Device]:
    """200 devices that all report `rssi`, spread over the city."""
    found = sorted((d for d in city.devices.values() if "rssi" in d.metrics), key=lambda d: d.id)
    assert len(found) >= 200
    return found[:200]


@pytest.fixture(autouse=True)
def services_back_up(stack: LocalStack) -> Iterator[None]:
    """Whatever a test did to the services, the next one finds them serving."""
    yield
    for service in (stack.mosquitto, stack.influxd):
        if not service.running:
            service.start()


@pytest.fixture
def probe(city: City) -> Device:
    """A device that reports `battery`, the metric of the subscription probes."""
    return min((d for d in city.devices.values() if "battery" in d.metrics), key=lambda d: d.id)
