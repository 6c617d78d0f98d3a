"""CAP 1.2 (OASIS Common Alerting Protocol) for active incidents, for public warning
systems and aggregators. Public: zone outlines, hazard, severity, what to do; no
devices' data, camera images or people.

Each message keeps its `identifier` and `sent` across fetches: `sent` is when Pantau
issued it (the store's record time of the change), a change issues an Update that
`references` the messages before it, and `expires` follows from config/cap.yaml."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pantau.cityfacts import CityFacts
from pantau.incidents import Hazard, Severity, WorkflowState
from pantau.store import EventKind, Incident, IncidentEvent
from pantau.yamlconf import load_model

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
    """A public hazard in an active workflow state; an incident opened by citizen reports
    must also be verified (api.public_alerts)."""
    return incident.key.hazard in PUBLIC_HAZARDS and incident.workflow_state in {
        WorkflowState.OPEN,
        WorkflowState.ACKNOWLEDGED,
        WorkflowState.DISPATCHED,
        WorkflowState.ON_SITE,
    }


class HazardAdvice(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    instruction: str = Field(min_length=1, description="what people should do (Bahasa Indonesia)")
    expires_hours: float = Field(gt=0, description="how long one alert stands")


class CapConfig(BaseModel):
    """config/cap.yaml: instruction and expiry per public hazard."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    hazards: dict[Hazard, HazardAdvice]

    @model_validator(mode="after")
    def _every_public_hazard(self) -> CapConfig:
        missing = sorted(h.value for h in PUBLIC_HAZARDS - set(self.hazards))
        if missing:
            raise ValueError(f"no instruction for {', '.join(missing)}")
        return self


def load_cap_config(path: Path) -> CapConfig:
    model, _ = load_model(path, CapConfig)
    return model


@dataclass(frozen=True, slots=True)
class Issue:
    """One CAP message Pantau issued for an incident: an Alert, or an Update of it."""

    identifier: str
    sent: datetime
    msg_type: str  # "Alert" or "Update"


def issues(
    incident: Incident,
    timeline: Sequence[IncidentEvent],
    public_since: datetime,
    now: datetime,
    expires_after: timedelta,
    *,
    city: CityFacts,
) -> list[Issue]:
    """The messages of the incident's current public life, oldest first; the last one is
    the alert in force. They are a function of the timeline and of `now` only through
    renewals, so a fetch gives the same `sent` as the one before until something
    changes: the Alert when it became public, an Update at each later change of
    severity or workflow, and an Update halfway to the expiry of the last one while
    nothing changes (a renewal)."""
    base = f"pantau-{city.slug}-incident-{incident.id}-{incident.reopen_count}"
    out = [Issue(base, public_since, "Alert")]
    for e in timeline[_cycle_start(timeline) :]:
        changed = e.kind in {EventKind.SEVERITY, EventKind.WORKFLOW}
        if changed and public_since < e.recorded_at <= now:
            out.append(Issue(f"{base}-{e.seq}", e.recorded_at, "Update"))
    last = out[-1]
    renewals = int((now - last.sent) / (expires_after / 2)) if now > last.sent else 0
    if renewals > 0:
        sent = last.sent + renewals * (expires_after / 2)
        out.append(Issue(f"{last.identifier}-r{renewals}", sent, "Update"))
    return out


def _cycle_start(timeline: Sequence[IncidentEvent]) -> int:
    """Index of the event that began the incident's current life (its last reopening)."""
    for i in range(len(timeline) - 1, -1, -1):
        e = timeline[i]
        if e.kind is EventKind.WORKFLOW and e.to_state == "open" and e.from_state is not None:
            return i
    return 0


def cycle_started_at(timeline: Sequence[IncidentEvent]) -> datetime:
    """When Pantau recorded the start of the incident's current life."""
    return timeline[_cycle_start(timeline)].recorded_at


@dataclass(frozen=True, slots=True)
class PublicAlert:
    incident: Incident
    issues: list[Issue]  # the last is in force
    verified_by: str | None  # for an incident opened by citizen reports: who confirmed it


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


def alert(public: PublicAlert, geo: Geography, config: CapConfig, city: CityFacts) -> ET.Element:
    ET.register_namespace("", CAP_NS)
    q = f"{{{CAP_NS}}}"
    root = ET.Element(f"{q}alert")

    def sub(parent: ET.Element, tag: str, text: str) -> ET.Element:
        el = ET.SubElement(parent, f"{q}{tag}")
        el.text = text
        return el

    incident, current = public.incident, public.issues[-1]
    advice = config.hazards[incident.key.hazard]
    sev = incident.severity_current
    zone_name = geo.name(incident.key.zone_id)
    sub(root, "identifier", current.identifier)
    sub(root, "sender", city.cap_sender)
    sub(root, "sent", _ts(current.sent))
    sub(root, "status", "Actual")
    sub(root, "msgType", current.msg_type)
    sub(root, "scope", "Public")
    verified = ""
    if public.verified_by:
        verified = f"Laporan warga, diverifikasi oleh {public.verified_by}."
    if verified:
        sub(root, "note", verified)
    if current.msg_type == "Update":
        earlier = public.issues[:-1]
        sub(
            root,
            "references",
            " ".join(f"{city.cap_sender},{i.identifier},{_ts(i.sent)}" for i in earlier),
        )
    info = ET.SubElement(root, f"{q}info")
    sub(info, "language", "id-ID")
    sub(info, "category", CAP_CATEGORY.get(incident.key.hazard, "Other"))
    sub(info, "event", EVENT_ID.get(incident.key.hazard, incident.key.hazard.value))
    sub(info, "responseType", "Monitor")
    sub(info, "urgency", CAP_URGENCY[sev])
    sub(info, "severity", CAP_SEVERITY[sev])
    citizen = incident.key.rule_id == "citizen-report"
    sub(info, "certainty", "Likely" if citizen else "Observed")
    sub(info, "effective", _ts(incident.opened_at))
    sub(info, "expires", _ts(current.sent + timedelta(hours=advice.expires_hours)))
    sub(info, "senderName", f"{city.government} (Pantau)")
    sub(
        info,
        "headline",
        f"{EVENT_ID.get(incident.key.hazard, incident.key.hazard.value)} "
        f"({sev.name.title()}) di {zone_name}",
    )
    status = f"Status penanganan: {incident.workflow_state.value}."
    sub(info, "description", f"{verified} {status}" if verified else status)
    sub(info, "instruction", advice.instruction)
    area = ET.SubElement(info, f"{q}area")
    sub(area, "areaDesc", zone_name)
    for polygon in _polygons(geo.outline(incident.key.zone_id)):
        sub(area, "polygon", polygon)
    return root


def alerts_document(
    alerts: list[PublicAlert],
    geo: Geography,
    config: CapConfig,
    updated: datetime,
    city: CityFacts,
) -> bytes:
    """An Atom feed whose entries each carry one CAP alert (the usual CAP feed shape)."""
    atom = "http://www.w3.org/2005/Atom"
    ET.register_namespace("atom", atom)
    feed = ET.Element(f"{{{atom}}}feed")
    ET.SubElement(feed, f"{{{atom}}}id").text = f"urn:pantau:{city.slug}:cap"
    ET.SubElement(feed, f"{{{atom}}}title").text = f"Pantau {city.display_name}: peringatan aktif"
    ET.SubElement(feed, f"{{{atom}}}updated").text = _ts(updated)
    for public in alerts:
        incident = public.incident
        entry = ET.SubElement(feed, f"{{{atom}}}entry")
        ET.SubElement(entry, f"{{{atom}}}id").text = f"urn:pantau:incident:{incident.id}"
        ET.SubElement(entry, f"{{{atom}}}title").text = geo.name(incident.key.zone_id)
        ET.SubElement(entry, f"{{{atom}}}updated").text = _ts(public.issues[-1].sent)
        content = ET.SubElement(entry, f"{{{atom}}}content", type="application/cap+xml")
        content.append(alert(public, geo, config, city))
    body: bytes = ET.tostring(feed, encoding="utf-8", xml_declaration=True)
    return body
