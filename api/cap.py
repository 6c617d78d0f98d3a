"""CAP 1.2 (OASIS Common Alerting Protocol) for active incidents, for public warning
systems and aggregators. Public: zone outlines, hazard, severity; no devices' data,
camera images or people."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import datetime
from typing import Any

from pantau.cityfacts import CityFacts
from pantau.incidents import Hazard, Severity, WorkflowState
from pantau.store import Incident

from .geography import Geography

CAP_NS = "urn:oasis:names:tc:emergency:cap:1.2"

CAP_SEVERITY = {
    Severity.AWAS: "Extreme",
    Severity.SIAGA: "Severe",
    Severity.WASPADA: "Moderate",
    Severity.INFO: "Minor",
}
CAP_URGENCY = {
    Severity.AWAS: "Immediate",
    Severity.SIAGA: "Expected",
    Severity.WASPADA: "Future",
    Severity.INFO: "Unknown",
}
CAP_CATEGORY = {
    Hazard.FLOOD: "Met",
    Hazard.HEAVY_RAIN: "Met",
    Hazard.PUMP_FAILURE: "Infra",
    Hazard.ROAD_DAMAGE: "Infra",
    Hazard.TRAFFIC_JAM: "Transport",
}
EVENT_ID = {
    Hazard.FLOOD: "Banjir",
    Hazard.HEAVY_RAIN: "Hujan lebat",
    Hazard.PUMP_FAILURE: "Pompa banjir mati",
    Hazard.ROAD_DAMAGE: "Jalan rusak",
    Hazard.TRAFFIC_JAM: "Kemacetan",
}
# Device-health incidents are internal: they never go into the public feeds.
PUBLIC_HAZARDS = frozenset(CAP_CATEGORY)


def is_public(incident: Incident) -> bool:
    return incident.key.hazard in PUBLIC_HAZARDS and incident.workflow_state in {
        WorkflowState.OPEN,
        WorkflowState.ACKNOWLEDGED,
        WorkflowState.DISPATCHED,
        WorkflowState.ON_SITE,
    }


def _ts(when: datetime) -> str:
    return when.isoformat(timespec="seconds").replace("+00:00", "-00:00")


def _polygons(geometry: dict[str, Any] | None) -> list[str]:
    """CAP polygons: 'lat,lon' pairs, space-separated, first = last (outer rings)."""
    if geometry is None:
        return []
    kind = geometry["type"]
    polys = [geometry["coordinates"]] if kind == "Polygon" else geometry["coordinates"]
    out = []
    for poly in polys:
        ring = poly[0]
        out.append(" ".join(f"{lat:.5f},{lon:.5f}" for lon, lat in ring))
    return out


def alert(incident: Incident, geo: Geography, sent: datetime, city: CityFacts) -> ET.Element:
    ET.register_namespace("", CAP_NS)
    q = f"{{{CAP_NS}}}"
    root = ET.Element(f"{q}alert")

    def sub(parent: ET.Element, tag: str, text: str) -> ET.Element:
        el = ET.SubElement(parent, f"{q}{tag}")
        el.text = text
        return el

    sev = incident.severity_current
    zone_name = geo.name(incident.key.zone_id)
    sub(root, "identifier", f"pantau-{city.slug}-incident-{incident.id}-{incident.reopen_count}")
    sub(root, "sender", city.cap_sender)
    sub(root, "sent", _ts(sent))
    sub(root, "status", "Actual")
    sub(root, "msgType", "Alert")
    sub(root, "scope", "Public")
    info = ET.SubElement(root, f"{q}info")
    sub(info, "language", "id-ID")
    sub(info, "category", CAP_CATEGORY.get(incident.key.hazard, "Other"))
    sub(info, "event", EVENT_ID.get(incident.key.hazard, incident.key.hazard.value))
    sub(info, "responseType", "Monitor")
    sub(info, "urgency", CAP_URGENCY[sev])
    sub(info, "severity", CAP_SEVERITY[sev])
    sub(info, "certainty", "Observed" if incident.key.rule_id != "citizen-report" else "Possible")
    sub(info, "effective", _ts(incident.opened_at))
    sub(info, "senderName", f"{city.government} (Pantau)")
    sub(
        info,
        "headline",
        f"{EVENT_ID.get(incident.key.hazard, incident.key.hazard.value)} "
        f"({sev.name.title()}) di {zone_name}",
    )
    sub(info, "description", f"Status penanganan: {incident.workflow_state.value}.")
    area = ET.SubElement(info, f"{q}area")
    sub(area, "areaDesc", zone_name)
    for polygon in _polygons(geo.outline(incident.key.zone_id)):
        sub(area, "polygon", polygon)
    return root


def alerts_document(
    incidents: list[Incident], geo: Geography, sent: datetime, city: CityFacts
) -> bytes:
    """An Atom feed whose entries each carry one CAP alert (the usual CAP feed shape)."""
    atom = "http://www.w3.org/2005/Atom"
    ET.register_namespace("atom", atom)
    feed = ET.Element(f"{{{atom}}}feed")
    ET.SubElement(feed, f"{{{atom}}}id").text = f"urn:pantau:{city.slug}:cap"
    ET.SubElement(feed, f"{{{atom}}}title").text = f"Pantau {city.display_name}: peringatan aktif"
    ET.SubElement(feed, f"{{{atom}}}updated").text = _ts(sent)
    for incident in incidents:
        entry = ET.SubElement(feed, f"{{{atom}}}entry")
        ET.SubElement(entry, f"{{{atom}}}id").text = f"urn:pantau:incident:{incident.id}"
        ET.SubElement(entry, f"{{{atom}}}title").text = geo.name(incident.key.zone_id)
        ET.SubElement(entry, f"{{{atom}}}updated").text = _ts(incident.condition_at)
        content = ET.SubElement(entry, f"{{{atom}}}content", type="application/cap+xml")
        content.append(alert(incident, geo, sent, city))
    body: bytes = ET.tostring(feed, encoding="utf-8", xml_declaration=True)
    return body
