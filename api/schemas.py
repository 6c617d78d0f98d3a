"""Pydantic models of what the API takes and returns (its OpenAPI schema)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from pantau.incidents import ConditionState, Hazard, WorkflowState

SeverityName = Literal["info", "waspada", "siaga", "awas"]
Origin = Literal["rules", "citizen_report"]


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class IncidentPublic(_Out):
    id: int
    rule_id: str
    origin: Origin = Field(description="citizen_report: opened by citizen reports")
    awaiting_verification: bool = Field(
        description="opened by citizen reports and not yet verified (acknowledged) by an "
        "operator, supervisor or crew: not on the public feeds",
    )
    zone_id: str
    zone_name: str
    zone_level: str
    kecamatan_id: str | None
    hazard: Hazard
    agency: str | None
    condition_state: ConditionState
    workflow_state: WorkflowState
    severity: SeverityName
    severity_max: SeverityName
    opened_at: datetime
    condition_at: datetime
    sla_ack_due: datetime
    sla_resolve_due: datetime
    acknowledged_at: datetime | None
    resolved_at: datetime | None
    closed_at: datetime | None
    reopen_count: int
    assignee_crew_id: str | None
    routed_crew_id: str | None
    escalation_level: int


class IncidentList(_Out):
    data: list[IncidentPublic]
    count: int = Field(description="matching incidents in all pages")
    limit: int
    offset: int


class TimelineEvent(_Out):
    seq: int
    at: datetime
    recorded_at: datetime
    kind: str
    from_state: str | None
    to_state: str
    actor: str
    reason: str


class EvidenceDevice(_Out):
    id: str
    name: str
    kind: str
    kelurahan_id: str | None
    lon: float | None
    lat: float | None


class SeriesPoint(_Out):
    device_id: str
    at: datetime
    value: float


class CameraFrame(_Out):
    camera_id: str
    at: datetime = Field(description="the frame's capture time")
    faults: list[str] = Field(description="camera faults raised on the frame, if any")
    url: str = Field(description="the JPEG, for callers that may read the incident")


class EvidenceOut(_Out):
    metric: str
    peak_value: float
    first_at: datetime
    last_at: datetime
    devices: list[EvidenceDevice]
    series: list[SeriesPoint] = Field(description="the metric's readings around the incident")
    series_source: Literal["influxdb", "unavailable", "none"]
    camera_frames: list[CameraFrame] = Field(
        default_factory=list,
        description="JPEGs the vision workers saved of the incident's cameras around it"
        " (the frame that raised a fault or a flood); staff only, never in public feeds",
    )


class Resolution(_Out):
    code: str
    note: str


class PlaceOut(_Out):
    kelurahan_id: str | None
    kelurahan_name: str | None
    kecamatan_id: str | None
    kecamatan_name: str | None
    station: str | None = Field(description="the station's or camera's name, if one")
    lon: float | None = Field(description="the station's place, else the zone's centre")
    lat: float | None
    geo_uri: str | None = Field(description="RFC 5870 geo: URI (a phone's map app)")
    map_url: str | None = Field(description="the place on OpenStreetMap")


class LatestReading(_Out):
    device_id: str
    metric: str
    at: datetime
    value: float
    alert: float | None = Field(description="the station's Siaga II level (waspada), if any")
    danger: float | None = Field(description="its Siaga I level (awas), if any")
    bankfull: float | None


class LinkOut(_Out):
    title: str
    url: str


class IncidentContextOut(_Out):
    place: PlaceOut
    latest: LatestReading | None = Field(description="the newest evidence reading")
    instruction: str | None = Field(description="what to do (config/cap.yaml)")
    grafana: list[LinkOut] = Field(description="dashboards of its station, zone, camera")


class IncidentDetailOut(_Out):
    incident: IncidentPublic
    timeline: list[TimelineEvent]
    evidence: EvidenceOut
    citizen_reports: int = Field(description="citizen reports attached to this incident")
    resolution: Resolution | None
    context: IncidentContextOut | None = Field(
        default=None, description="the place, latest reading, instruction and dashboards"
    )


class ResolutionCode(StrEnum):
    FIXED = "fixed"  # the crew repaired or cleared the cause
    RECEDED = "receded"  # the water went down / the jam cleared by itself
    FALSE_ALARM = "false_alarm"
    DUPLICATE = "duplicate"
    REFERRED = "referred"  # handed to another agency or a contractor
    OTHER = "other"


class NoteBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: str = Field(default="", max_length=500)


class DispatchBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    crew_id: str = Field(min_length=1, max_length=64, description="a crew of the incident's agency")
    note: str = Field(default="", max_length=500)


class ResolveBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: ResolutionCode
    note: str = Field(min_length=1, max_length=500)
    condition_reason: str = Field(
        default="",
        max_length=500,
        description="required while the incident's condition is still active (the data "
        "still says so): why it is resolved anyway; kept on the timeline",
    )


class AssignBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    crew_id: str = Field(min_length=1, max_length=64, description="a crew of the incident's agency")
    note: str = Field(default="", max_length=500)


class NoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: str = Field(min_length=1, max_length=500)


class ReopenBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=500)


class ConflictDetail(_Out):
    reason: str
    from_state: WorkflowState
    to_state: WorkflowState


class Conflict(_Out):
    detail: ConflictDetail


class Message(_Out):
    detail: str


class Token(_Out):
    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 (the OAuth2 token type)
    expires_in: int


class Me(_Out):
    subject: str
    role: str
    agency: str | None
    kecamatan: list[str] | None
    crew_id: str | None


class AgencyOut(_Out):
    id: str
    name: str
    short: str
    responsibilities: str


class CrewOut(_Out):
    id: str
    agency: str
    shift: str
    shift_start: str
    shift_end: str
    kecamatan: list[str]
    on_shift: bool


class DeviceHealth(_Out):
    id: str
    name: str
    kind: str
    agency: str
    kelurahan_id: str
    kecamatan_id: str
    lon: float
    lat: float
    last_seen: datetime | None
    battery_pct: float | None
    faults: list[str] = Field(description="hazards of active device-health incidents naming it")
    health_source: Literal["influxdb", "unavailable"]


class DeviceList(_Out):
    data: list[DeviceHealth]
    count: int


class AuditOut(_Out):
    id: int
    at: datetime
    actor: str
    role: str
    action: str
    incident_id: int | None
    outcome: str
    detail: str


class AuditList(_Out):
    data: list[AuditOut]
    count: int


class GeoJson(BaseModel):
    """A GeoJSON FeatureCollection (RFC 7946)."""

    model_config = ConfigDict(extra="allow")
    type: Literal["FeatureCollection"]
    features: list[dict[str, Any]]


class ReportOut(_Out):
    """What a citizen gets back: nothing personal, no images."""

    report_id: int
    outcome: Literal["corroborated", "opened"]
    incident_id: int
    zone_name: str
    hazard: Hazard
    workflow_state: WorkflowState
    tracking_token: str = Field(
        description="the reporter's key to follow this report and rate the response: "
        "shown once, never stored (Pantau keeps only its SHA-256)"
    )
    tracking_url: str = Field(description="the public page that shows the report's status")
