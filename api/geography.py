"""Zone lookups the API needs: a zone's kecamatan (for scope checks), the zone ids inside
a set of kecamatan (for SQL filters), and simplified outlines for GeoJSON and CAP."""

from __future__ import annotations

from collections.abc import Iterable
from functools import cached_property
from typing import Any

import shapely
from shapely.geometry import mapping

from pantau.zoneindex import AnyZone, ZoneIndex
from pantau.zones import ZoneLevel

# ~20 m near the equator: small payloads, outlines still recognisable.
SIMPLIFY_DEG = 0.0002


class Geography:
    def __init__(self, zones: ZoneIndex) -> None:
        self.index = zones
        self._kecamatan_of: dict[str, str | None] = {}
        for zone_id in (*(z.id for z in zones.zones.all()), *(z.id for z in zones.extras)):
            self._kecamatan_of[zone_id] = next(
                (z.id for z in zones.ancestors(zone_id) if z.level == ZoneLevel.KECAMATAN), None
            )

    def known(self, zone_id: str) -> bool:
        return zone_id in self._kecamatan_of

    def kecamatan_of(self, zone_id: str) -> str | None:
        """The zone's kecamatan (itself for a kecamatan); None for the kota, for zones no
        kecamatan contains and for unknown ids."""
        return self._kecamatan_of.get(zone_id)

    def zone_ids_in(self, kecamatan: Iterable[str]) -> list[str]:
        wanted = set(kecamatan)
        return sorted(z for z, k in self._kecamatan_of.items() if k in wanted)

    def name(self, zone_id: str) -> str:
        try:
            return self.index.zone(zone_id).name
        except KeyError:
            return zone_id

    def outline(self, zone_id: str) -> dict[str, Any] | None:
        """Simplified GeoJSON geometry of a zone; None for unknown ids."""
        return self._outlines.get(zone_id)

    def centre(self, zone_id: str) -> tuple[float, float] | None:
        """A point inside the zone (lon, lat)."""
        return self._centres.get(zone_id)

    def _all(self) -> tuple[AnyZone, ...]:
        return (*self.index.zones.all(), *self.index.extras)

    @cached_property
    def _outlines(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for zone in self._all():
            simple = shapely.simplify(zone.geometry, SIMPLIFY_DEG, preserve_topology=True)
            out[zone.id] = _rounded(mapping(simple))
        return out

    @cached_property
    def _centres(self) -> dict[str, tuple[float, float]]:
        out: dict[str, tuple[float, float]] = {}
        for zone in self._all():
            p = zone.geometry.representative_point()
            out[zone.id] = (round(p.x, 6), round(p.y, 6))
        return out


def _rounded(geometry: Any) -> Any:
    """Coordinates to 6 decimals (~0.1 m), tuples to lists: smaller, plain JSON."""
    if isinstance(geometry, dict):
        return {k: _rounded(v) for k, v in geometry.items()}
    if isinstance(geometry, (list, tuple)):
        if geometry and isinstance(geometry[0], float):
            return [round(c, 6) for c in geometry]
        return [_rounded(v) for v in geometry]
    return geometry
