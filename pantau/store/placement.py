"""Placement: which zone level and agency an incident gets, from its dedup key."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from pantau.incidents import ConditionChange, Hazard
from pantau.zones import ZoneLevel

from .types import Placement

_ZONE_PREFIXES: tuple[tuple[str, ZoneLevel], ...] = (
    ("kel-", ZoneLevel.KELURAHAN),
    ("kec-", ZoneLevel.KECAMATAN),
    ("kota-", ZoneLevel.KOTA),
)


def zone_level_by_prefix(zone_id: str) -> str:
    """The level of a pantau.zones id from its prefix (kel-, kec-, kota-)."""
    for prefix, level in _ZONE_PREFIXES:
        if zone_id.startswith(prefix):
            return level
    raise ValueError(
        f"zone id {zone_id!r} has no kel-/kec-/kota- prefix: "
        "pass IncidentStore(place=placement_by_zone(...)) to place incidents in such zones"
    )


def placement_by_zone(
    level_of: Callable[[str], str], hazard_agency: Mapping[Hazard, str]
) -> Callable[[ConditionChange], Placement]:
    """A `place` function from a zone-level lookup (e.g. the city's ZoneIndex) and the
    city's hazard -> agency table (`City.hazard_agency`, config/agencies.yaml)."""

    def place(change: ConditionChange) -> Placement:
        return Placement(
            zone_level=str(level_of(change.key.zone_id)),
            agency=hazard_agency.get(change.key.hazard),
        )

    return place


# Without the city's table the store cannot know who answers: services pass
# placement_by_zone(..., city.hazard_agency).
default_placement = placement_by_zone(zone_level_by_prefix, {})
