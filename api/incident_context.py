"""What a person acting on an incident needs besides its record: the exact place (a
station or camera, else the zone's centre, with a map link a phone opens), the newest
evidence reading against the station's levels, what to do (config/cap.yaml) and the
Grafana dashboards of its station, zone and camera."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from urllib.parse import urlencode

from pantau.store import Incident

from .context import ApiContext
from .schemas import EvidenceOut, IncidentContextOut, LatestReading, LinkOut, PlaceOut

logger = logging.getLogger(__name__)

# The generated dashboards (dashboards/generated/<name>.json): their uids are read from
# the files, so a renamed uid there is followed here.
DASHBOARDS = Path(__file__).resolve().parent.parent / "dashboards" / "generated"
OSM_ZOOM = 17


def dashboard_uids(folder: Path = DASHBOARDS) -> dict[str, str]:
    """File stem -> dashboard uid; a missing or broken file gives `pantau-<stem>`."""
    uids = {}
    for stem in ("city-overview", "drainage", "cameras", "traffic"):
        uid = f"pantau-{stem}"
        try:
            found = json.loads((folder / f"{stem}.json").read_text(encoding="utf-8")).get("uid")
            uid = found if isinstance(found, str) and found else uid
        except (OSError, ValueError) as err:
            logger.debug("dashboard %s: %s; using uid %s", stem, err, uid)
        uids[stem] = uid
    return uids


def incident_context(ctx: ApiContext, incident: Incident, ev: EvidenceOut) -> IncidentContextOut:
    geo = ctx.geo
    zone_id = incident.key.zone_id
    kecamatan = geo.kecamatan_of(zone_id)
    kelurahan = zone_id if incident.zone_level == "kelurahan" else None
    station = next((d for d in ev.devices if d.lon is not None and d.lat is not None), None)
    lon, lat = (station.lon, station.lat) if station else (geo.centre(zone_id) or (None, None))
    place = PlaceOut(
        kelurahan_id=kelurahan,
        kelurahan_name=geo.name(kelurahan) if kelurahan else None,
        kecamatan_id=kecamatan,
        kecamatan_name=geo.name(kecamatan) if kecamatan else None,
        station=station.name if station else None,
        lon=lon,
        lat=lat,
        geo_uri=f"geo:{lat},{lon}" if lat is not None else None,
        map_url=(
            f"https://www.openstreetmap.org/?mlat={lat}&mlon={lon}#map={OSM_ZOOM}/{lat}/{lon}"
            if lat is not None
            else None
        ),
    )
    advice = ctx.cap.hazards.get(incident.key.hazard)
    return IncidentContextOut(
        place=place,
        latest=_latest(ctx, ev),
        instruction=advice.instruction if advice else None,
        grafana=_links(ctx, incident, ev, kecamatan, kelurahan),
    )


def _latest(ctx: ApiContext, ev: EvidenceOut) -> LatestReading | None:
    if not ev.series:
        return None
    point = max(ev.series, key=lambda p: p.at)
    device = ctx.city.devices.get(point.device_id)
    levels = device.levels if device else None
    return LatestReading(
        device_id=point.device_id,
        metric=ev.metric,
        at=point.at,
        value=point.value,
        alert=levels.alert_cm if levels else None,
        danger=levels.danger_cm if levels else None,
        bankfull=levels.bankfull_cm if levels else None,
    )


def _links(
    ctx: ApiContext,
    incident: Incident,
    ev: EvidenceOut,
    kecamatan: str | None,
    kelurahan: str | None,
) -> list[LinkOut]:
    uids = ctx.caches.get("dashboard-uids")
    if not isinstance(uids, dict):
        uids = ctx.caches["dashboard-uids"] = dashboard_uids()
    base = ctx.settings.api.grafana_url.rstrip("/")

    def link(title: str, stem: str, **var: str) -> LinkOut:
        query = urlencode({f"var-{k}": v for k, v in var.items()})
        return LinkOut(title=title, url=f"{base}/d/{uids[stem]}/{stem}?{query}")

    zone = {"kecamatan": kecamatan} if kecamatan else {}
    if kelurahan:
        zone["kelurahan"] = kelurahan
    out = [link("Ringkasan wilayah", "city-overview", **zone)]
    for d in ev.devices:
        if d.kind == "water_level_station":
            out.append(link(f"Stasiun {d.name or d.id}", "drainage", station=d.id, **zone))
        elif d.kind.startswith("cctv_"):
            out.append(link(f"Kamera {d.name or d.id}", "cameras", **zone))
        elif d.kind == "traffic_counter":
            out.append(link(f"Lalu lintas {d.name or d.id}", "traffic", **zone))
    return out
