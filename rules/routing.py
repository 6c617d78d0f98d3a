"""Who gets an incident: the responsible agency's crew on shift for the zone, else its
supervisor (the roster is `pantau.roster`, config/crews.yaml).

    roster = load_roster(city)
    router = Router(roster, ZoneIndex.for_city(city))
    router.route("kel-cimone", Hazard.FLOOD, at)  # -> "bpbd-barat-siang"
"""

from __future__ import annotations

from datetime import datetime

from pantau.incidents import Hazard
from pantau.roster import Roster
from pantau.zoneindex import ZoneIndex
from pantau.zones import ZoneLevel


class Router:
    """Routes an incident to one crew id (an `{root}/alerts/crews/{crew_id}` address)."""

    def __init__(self, roster: Roster, zones: ZoneIndex) -> None:
        self.roster = roster
        self._zones = zones

    def agency_of(self, hazard: Hazard) -> str:
        return self.roster.hazard_agency[hazard]

    def kecamatan_of(self, zone_id: str) -> str | None:
        """The kecamatan a zone lies in (itself for a kecamatan); None for the kota and
        for catchments or corridors that no kecamatan contains."""
        for zone in self._zones.ancestors(zone_id):
            if zone.level == ZoneLevel.KECAMATAN:
                return zone.id
        return None

    def route(self, zone_id: str, hazard: Hazard, at: datetime) -> str:
        """The crew of the hazard's agency covering the zone and on shift at `at` (event
        time, tz-aware, on the city's clock), else that agency's supervisor."""
        if at.tzinfo is None:
            raise ValueError("route() needs a tz-aware time")
        agency = self.agency_of(hazard)
        kecamatan = self.kecamatan_of(zone_id)
        local = self.roster.local_time(at)
        if kecamatan is not None:
            for crew in self.roster.crews:
                if (
                    crew.agency == agency
                    and kecamatan in crew.kecamatan
                    and crew.shift.covers(local)
                ):
                    return crew.id
        return self.roster.supervisors[agency]
