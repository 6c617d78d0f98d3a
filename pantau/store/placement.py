"""Placement: which zone level and agency an incident gets, from its dedup key."""

from __future__ import annotations

from collections.abc import Callable

from pantau.incidents import ConditionChange, Hazard
from pantau.zones import ZoneLevel

from .types import Placement

# Which agency answers for a hazard when the caller does not say (Pantau defaults,
# agency ids from config/agencies.yaml).
DEFAULT_AGENCY: dict[Hazard, str] = {
    Hazard.FLOOD: "bpbd",
    Hazard.HEAVY_RAIN: "bpbd",
    Hazard.PUMP_FAILURE: "pupr",
    Hazard.ROAD_DAMAGE: "pupr",
    Hazard.TRAFFIC_JAM: "dishub",
    Hazard.SENSOR_OFFLINE: "diskominfo",
    Hazard.SENSOR_STUCK: "diskominfo",
    Hazard.BATTERY_LOW: "diskominfo",
    Hazard.DATA_QUALITY: "diskominfo",
    Hazard.CAMERA_FAULT: "diskominfo",
}

_ZONE_PREFIXES: tuple[tuple[str, ZoneLevel], ...] = (
    ("kel-", ZoneLevel.KELURAHAN),
    ("kec-", ZoneLevel.KECAMATAN),
    ("kota-", ZoneLevel.KOTA),
)


def default_placement(change: ConditionChange) -> Placement:
    """Zone level from the zone id's prefix (pantau.zones ids), agency by hazard.

    Catchments and corridors have free-form ids: give the store
    `place=placement_by_zone(lambda z: zone_index.zone(z).level)` to place those."""
    for prefix, level in _ZONE_PREFIXES:
        if change.key.zone_id.startswith(prefix):
            return Placement(zone_level=level, agency=DEFAULT_AGENCY.get(change.key.hazard))
    raise ValueError(
        f"zone id {change.key.zone_id!r} has no kel-/kec-/kota- prefix: "
        "pass IncidentStore(place=placement_by_zone(...)) to place incidents in such zones"
    )


def placement_by_zone(
    level_of: Callable[[str], str],
    agency_of: Callable[[ConditionChange], str | None] = lambda c: DEFAULT_AGENCY.get(c.key.hazard),
) -> Callable[[ConditionChange], Placement]:
    """A `place` function from a zone-level lookup (e.g. the rule engine's ZoneIndex)."""

    def place(change: ConditionChange) -> Placement:
        return Placement(zone_level=str(level_of(change.key.zone_id)), agency=agency_of(change))

    return place
