"""Every Pantau dashboard, by file name: what `pantau dashboards build` generates."""

from __future__ import annotations

from collections.abc import Callable

from dashboards import cameras, city_overview, drainage, performance, pipeline, traffic
from dashboards.model import Dashboard
from pantau.city import City

DASHBOARDS: dict[str, Callable[[City], Dashboard]] = {
    "city-overview": city_overview.build,
    "drainage": drainage.build,
    "traffic": traffic.build,
    "cameras": cameras.build,
    "performance": performance.build,
    "pipeline": pipeline.build,
}


def build_all(city: City) -> dict[str, Dashboard]:
    return {name: build(city) for name, build in DASHBOARDS.items()}
