"""/reports: citizen reports (pengaduan masyarakat). Public and rate-limited.

A report names a point, a category and optionally carries a photo. It attaches to the
most severe active incident of the matching hazard in its kelurahan or kecamatan as
corroboration; with none, it opens a "citizen-report" incident (severity info) that
waits for an operator to verify it (acknowledge) or dismiss it (resolve as
false_alarm). No name, phone or address is asked for; the client address is only held
in memory for the rate limit; the photo is re-encoded without its metadata (api.photos),
stored for staff and never served publicly. The reporter gets a tracking token (only
its hash is kept) to follow the incident and rate the response (api.tracking).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Form, HTTPException, Response, UploadFile
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict
from sqlalchemy import select

from api import photos, tracking
from api.audit import Outcome
from api.context import ApiContext
from api.deps import Ctx, CurrentPrincipal, IncidentId, unprocessable
from api.incident_queries import CITIZEN_RULE
from api.routes.incidents import visible_detail
from api.schemas import Message, ReportOut
from pantau.incidents import (
    ConditionChange,
    ConditionState,
    DedupKey,
    Evidence,
    Hazard,
    Severity,
)
from pantau.store import INACTIVE_WORKFLOW, Incident, UpdateKind, incident_from_row
from pantau.store.api_tables import CitizenReportRow
from pantau.store.models import IncidentRow

router = APIRouter(tags=["citizen reports"])

REPORT_ACTOR = "citizen"  # no reporter is known: reports are anonymous


class Category(StrEnum):
    FLOOD = "banjir"  # flooding
    WATERLOGGING = "genangan"  # standing water on a road
    DRAIN_BLOCKED = "saluran_tersumbat"
    ROAD_DAMAGE = "jalan_rusak"
    TRAFFIC_JAM = "macet"
    PUMP_FAILURE = "pompa_mati"


HAZARD_OF: dict[Category, Hazard] = {
    Category.FLOOD: Hazard.FLOOD,
    Category.WATERLOGGING: Hazard.FLOOD,
    Category.DRAIN_BLOCKED: Hazard.FLOOD,
    Category.ROAD_DAMAGE: Hazard.ROAD_DAMAGE,
    Category.TRAFFIC_JAM: Hazard.TRAFFIC_JAM,
    Category.PUMP_FAILURE: Hazard.PUMP_FAILURE,
}


def _matching(ctx: ApiContext, hazard: Hazard, zone_ids: list[str]) -> Incident | None:
    query = (
        select(IncidentRow)
        .where(
            IncidentRow.hazard == hazard,
            IncidentRow.zone_id.in_(zone_ids),
            IncidentRow.workflow_state.not_in(INACTIVE_WORKFLOW),
        )
        .order_by(IncidentRow.severity_current.desc(), IncidentRow.opened_at, IncidentRow.id)
        .limit(1)
    )
    with ctx.readers() as session:
        row = session.scalars(query).first()
        return None if row is None else incident_from_row(row)


@router.post(
    "/reports",
    response_model=ReportOut,
    status_code=201,
    responses={
        413: {"model": Message, "description": "photo too large"},
        408: {"model": Message, "description": "the upload was too slow"},
        415: {"model": Message, "description": "photo is not a JPEG or PNG image"},
        429: {"model": Message, "description": "too many reports from this address"},
    },
    summary="Report a problem (public, rate-limited)",
)
async def report(
    ctx: Ctx,
    *,
    lon: Annotated[float, Form(ge=-180, le=180)],
    lat: Annotated[float, Form(ge=-90, le=90)],
    category: Annotated[Category, Form()],
    description: Annotated[str, Form(max_length=500)] = "",
    photo: Annotated[UploadFile | None, File()] = None,
) -> ReportOut:
    # The per-address limit was counted before the body was read (api.guards.BodyLimits).
    data: bytes | None = None
    photo_type: str | None = None
    if photo is not None and photo.filename:
        raw = await photo.read(ctx.settings.api.report_photo_max_bytes + 1)
        if len(raw) > ctx.settings.api.report_photo_max_bytes:
            raise HTTPException(413, "photo too large")
        try:
            # Re-encoded without metadata (GPS, camera, time); the original is dropped.
            data = await run_in_threadpool(photos.clean, raw)
        except photos.PhotoError as err:
            raise HTTPException(415, str(err)) from None
        del raw
        photo_type = photos.JPEG
    kelurahan = ctx.city.index.kelurahan_at(lon, lat)
    if kelurahan is None or kelurahan.parent_id is None:
        where = ctx.city.facts.display_name
        raise unprocessable(("body", "lon"), f"the location is outside {where}")
    new = NewReport(
        lon=lon,
        lat=lat,
        category=category,
        description=description,
        photo=data,
        photo_type=photo_type,
        kelurahan_id=kelurahan.id,
    )
    return await run_in_threadpool(file_report, ctx, new)


@dataclass(frozen=True, slots=True, kw_only=True)
class NewReport:
    lon: float
    lat: float
    category: Category
    description: str
    photo: bytes | None
    photo_type: str | None
    kelurahan_id: str


def file_report(ctx: ApiContext, new: NewReport) -> ReportOut:
    """Attach or open, then store the report (runs in the thread pool: blocking SQL)."""
    category, kelurahan_id = new.category, new.kelurahan_id
    hazard = HAZARD_OF[category]
    kecamatan_id = ctx.geo.kecamatan_of(kelurahan_id)
    zones = [kelurahan_id] + ([kecamatan_id] if kecamatan_id else [])
    now = ctx.clock.now()
    token = tracking.new_token()
    incident = _matching(ctx, hazard, zones)
    outcome: Literal["corroborated", "opened"] = "corroborated"
    if incident is None:
        update = ctx.store.apply(
            ConditionChange(
                key=DedupKey(CITIZEN_RULE, kelurahan_id, hazard),
                state=ConditionState.ACTIVE,
                severity=Severity.INFO,
                at=now,
                evidence=Evidence(
                    device_ids=(),
                    metric="citizen_report",
                    peak_value=1.0,
                    first_at=now,
                    last_at=now,
                ),
                reason=f"citizen report: {category.value}, awaiting verification",
            )
        )
        assert update.incident is not None
        incident = update.incident
        if update.kind is UpdateKind.OPENED:
            outcome = "opened"
    with ctx.sessions() as session, session.begin():
        row = CitizenReportRow(
            received_at=now,
            lon=new.lon,
            lat=new.lat,
            zone_id=kelurahan_id,
            category=category.value,
            description=new.description.strip(),
            photo=new.photo,
            photo_type=new.photo_type,
            incident_id=incident.id,
            outcome=outcome,
            track_sha256=tracking.digest(token),
        )
        session.add(row)
        session.flush()
        report_id = row.id
    if outcome == "corroborated":
        # On the timeline, so the operator sees it there and on the live stream.
        photo = ", with photo" if new.photo is not None else ""
        said = new.description.strip()
        ctx.store.record_report(
            incident.id,
            now,
            REPORT_ACTOR,
            f"citizen report #{report_id}: {category.value}{photo}"
            + (f": {said[:160]}" if said else ""),
        )
    return ReportOut(
        report_id=report_id,
        outcome=outcome,
        incident_id=incident.id,
        zone_name=ctx.geo.name(kelurahan_id),
        hazard=hazard,
        workflow_state=incident.workflow_state,
        tracking_token=token,
        tracking_url=tracking.page_url(token),
    )


class ReportStaff(BaseModel):
    """A report as staff see it: still nothing about the reporter."""

    model_config = ConfigDict(frozen=True)
    id: int
    received_at: datetime
    lon: float
    lat: float
    zone_id: str
    category: str
    description: str
    has_photo: bool
    photo_url: str | None = None
    outcome: str


@router.get(
    "/incidents/{incident_id}/reports",
    response_model=list[ReportStaff],
    responses={401: {"model": Message}, 404: {"model": Message}},
    tags=["incidents"],
)
def incident_reports(ctx: Ctx, who: CurrentPrincipal, incident_id: IncidentId) -> list[Any]:
    visible_detail(ctx, who, incident_id, "read:reports")
    base = f"/incidents/{incident_id}/reports"
    with ctx.readers() as session:
        rows = session.scalars(
            select(CitizenReportRow)
            .where(CitizenReportRow.incident_id == incident_id)
            .order_by(CitizenReportRow.id)
        )
        return [
            ReportStaff(
                id=r.id,
                received_at=r.received_at,
                lon=r.lon,
                lat=r.lat,
                zone_id=r.zone_id,
                category=r.category,
                description=r.description,
                has_photo=r.photo is not None,
                photo_url=None if r.photo is None else f"{base}/{r.id}/photo",
                outcome=r.outcome,
            )
            for r in rows
        ]


@router.get(
    "/incidents/{incident_id}/reports/{report_id}/photo",
    response_class=Response,
    responses={
        200: {"content": {"image/jpeg": {}, "image/png": {}}, "description": "the photo"},
        401: {"model": Message},
        404: {"model": Message, "description": "no such report photo in the caller's scope"},
    },
    tags=["incidents"],
    summary="A citizen report's photo (staff only)",
)
def report_photo(
    ctx: Ctx, who: CurrentPrincipal, incident_id: IncidentId, report_id: IncidentId
) -> Response:
    """Staff who may see the incident may see its reports' photos; each viewing is
    audited, since a photo may show people. Never cached by browsers or proxies."""
    visible_detail(ctx, who, incident_id, "read:report-photo")
    with ctx.readers() as session:
        row = session.get(CitizenReportRow, report_id)
    if row is None or row.incident_id != incident_id or row.photo is None:
        raise HTTPException(404, f"report {report_id} of incident {incident_id} has no photo")
    ctx.audit.record(who, "read:report-photo", Outcome.ALLOWED, f"report {report_id}", incident_id)
    return Response(
        row.photo,
        media_type=row.photo_type or "application/octet-stream",
        headers={"Cache-Control": "private, no-store", "X-Content-Type-Options": "nosniff"},
    )
