"""Public feeds of active incidents: GeoJSON and CAP 1.2. No authentication, no device
data, no camera images, no personal data; device-health incidents and unverified
citizen reports are left out (api.public_alerts)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from fastapi import APIRouter, HTTPException, Response

from api import cap
from api.deps import Ctx, IncidentId
from api.incident_queries import origin_of, severity_name
from api.public_alerts import public_alerts
from api.schemas import GeoJson, Message

router = APIRouter(prefix="/feeds", tags=["public feeds"])
XML = "application/cap+xml"


@router.get("/incidents.geojson", response_model=GeoJson)
def incidents_geojson(ctx: Ctx) -> GeoJson:
    """Active public incidents as points (a point inside the zone) with their zone."""
    features = []
    for alert in public_alerts(ctx, ctx.clock.now()):
        i = alert.incident
        centre = ctx.geo.centre(i.key.zone_id)
        features.append(
            {
                "type": "Feature",
                "id": i.id,
                "geometry": None
                if centre is None
                else {"type": "Point", "coordinates": list(centre)},
                "properties": {
                    "id": i.id,
                    "hazard": i.key.hazard.value,
                    "severity": severity_name(i.severity_current),
                    "zone_id": i.key.zone_id,
                    "zone_name": ctx.geo.name(i.key.zone_id),
                    "kecamatan_id": ctx.geo.kecamatan_of(i.key.zone_id),
                    "workflow_state": i.workflow_state.value,
                    "origin": origin_of(i.key.rule_id),
                    "opened_at": i.opened_at.isoformat(),
                    "verified_by": alert.verified_by,
                },
            }
        )
    return GeoJson(type="FeatureCollection", features=features)


@router.get(
    "/cap.xml",
    response_class=Response,
    responses={
        200: {
            "content": {"application/atom+xml": {}},
            "description": "Atom feed of CAP 1.2 alerts",
        }
    },
)
def cap_feed(ctx: Ctx) -> Response:
    now = ctx.clock.now()
    body = cap.alerts_document(public_alerts(ctx, now), ctx.geo, ctx.cap, now, ctx.city.facts)
    return Response(body, media_type="application/atom+xml")


@router.get(
    "/cap/{incident_id}.xml",
    response_class=Response,
    responses={
        200: {"content": {XML: {}}, "description": "one CAP 1.2 alert"},
        404: {"model": Message},
    },
)
def cap_alert(ctx: Ctx, incident_id: IncidentId) -> Response:
    alerts = public_alerts(ctx, ctx.clock.now())
    public = next((a for a in alerts if a.incident.id == incident_id), None)
    if public is None:
        raise HTTPException(404, f"no public active incident {incident_id}")
    root = cap.alert(public, ctx.geo, ctx.cap, ctx.city.facts)
    return Response(ET.tostring(root, encoding="utf-8", xml_declaration=True), media_type=XML)
