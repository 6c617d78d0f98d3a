"""/reports/track: a reporter follows their report with the token they were given and,
once the incident is resolved, rates the response once (1-5, optional comment).
/reports/ratings: the ratings with their comments, for staff only.

The token travels in the request body (never in a URL, so no access log keeps it);
look-ups and ratings are rate-limited per client address. A reporter sees the
incident's status and times, never a name, crew or image."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select, update

from api import tracking
from api.audit import Outcome
from api.context import ApiContext
from api.deps import Ctx, CurrentPrincipal
from api.incident_queries import scope_filter
from api.kpi_queries import month_bounds
from api.ratelimit import RateLimiter
from api.routes.kpi import MONTH
from api.schemas import Message
from pantau.incidents import Hazard, WorkflowState
from pantau.store.api_tables import CitizenReportRow
from pantau.store.models import IncidentRow

router = APIRouter(tags=["citizen reports"])
RATEABLE = frozenset({WorkflowState.RESOLVED, WorkflowState.CLOSED})
NOT_FOUND = "no report with this tracking token"


class TrackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    token: str = Field(min_length=8, max_length=64)


class RatingIn(TrackIn):
    rating: int = Field(ge=1, le=5, description="1 (very poor) to 5 (very good)")
    comment: str = Field(default="", max_length=500, description="seen by staff only")


class TrackOut(BaseModel):
    """A report's progress as its reporter sees it."""

    model_config = ConfigDict(frozen=True)
    report_id: int
    received_at: datetime
    category: str
    zone_name: str
    hazard: Hazard
    workflow_state: WorkflowState
    opened_at: datetime
    acknowledged_at: datetime | None
    resolved_at: datetime | None
    can_rate: bool = Field(description="resolved and not rated yet")
    rating: int | None
    rated_at: datetime | None


def _limited(ctx: ApiContext, request: Request) -> None:
    limiter = ctx.caches.get("track-limiter")
    if not isinstance(limiter, RateLimiter):
        limiter = RateLimiter(ctx.settings.api.track_rate_per_hour, 3600.0, ctx.clock)
        ctx.caches["track-limiter"] = limiter
    wait = limiter.allow(request.client.host if request.client else "unknown")
    if wait is not None:
        raise HTTPException(429, "too many look-ups; try later", {"Retry-After": f"{wait:.0f}"})


def _status(ctx: ApiContext, token: str) -> TrackOut:
    with ctx.readers() as session:
        found = session.execute(
            select(CitizenReportRow, IncidentRow)
            .join(IncidentRow, IncidentRow.id == CitizenReportRow.incident_id)
            .where(CitizenReportRow.track_sha256 == tracking.digest(token))
        ).first()
    if found is None:
        raise HTTPException(404, NOT_FOUND)
    report, incident = found
    return TrackOut(
        report_id=report.id,
        received_at=report.received_at,
        category=report.category,
        zone_name=ctx.geo.name(report.zone_id),
        hazard=incident.hazard,
        workflow_state=incident.workflow_state,
        opened_at=incident.opened_at,
        acknowledged_at=incident.acknowledged_at,
        resolved_at=incident.resolved_at,
        can_rate=report.rating is None and incident.workflow_state in RATEABLE,
        rating=report.rating,
        rated_at=report.rated_at,
    )


@router.post(
    "/reports/track",
    response_model=TrackOut,
    responses={404: {"model": Message}, 429: {"model": Message}},
    summary="A report's status, by its tracking token (public, rate-limited)",
)
async def track(ctx: Ctx, request: Request, body: TrackIn) -> TrackOut:
    _limited(ctx, request)
    return await run_in_threadpool(_status, ctx, body.token)


def _rate(ctx: ApiContext, body: RatingIn) -> TrackOut:
    current = _status(ctx, body.token)
    if current.rating is not None:
        raise HTTPException(409, "this report has already been rated")
    if current.workflow_state not in RATEABLE:
        raise HTTPException(409, "the incident is not resolved yet")
    with ctx.sessions() as session, session.begin():
        # `rating IS NULL` in the UPDATE itself: two ratings racing, one wins.
        done = session.execute(
            update(CitizenReportRow)
            .where(
                CitizenReportRow.track_sha256 == tracking.digest(body.token),
                CitizenReportRow.rating.is_(None),
            )
            .values(
                rating=body.rating, rating_comment=body.comment.strip(), rated_at=ctx.clock.now()
            )
        )
    if done.rowcount != 1:  # type: ignore[attr-defined]
        raise HTTPException(409, "this report has already been rated")
    # On the incident's timeline too (without the comment): hash-chained with the rest,
    # and a new timeline event is what refreshes the cached KPIs and public page.
    with ctx.readers() as session:
        incident_id = session.scalar(
            select(CitizenReportRow.incident_id).where(
                CitizenReportRow.track_sha256 == tracking.digest(body.token)
            )
        )
    if incident_id is not None:
        ctx.store.record_report(
            incident_id,
            ctx.clock.now(),
            "citizen",
            f"citizen rating of report #{current.report_id}: {body.rating}/5",
        )
    ctx.audit.record(
        None,
        "report:rated",
        Outcome.ALLOWED,
        f"report {current.report_id} rated {body.rating}",
        subject="citizen",
    )
    return _status(ctx, body.token)


@router.post(
    "/reports/track/rating",
    response_model=TrackOut,
    status_code=201,
    responses={404: {"model": Message}, 409: {"model": Message}, 429: {"model": Message}},
    summary="Rate the response to a resolved report, once (public, rate-limited)",
)
async def rate(ctx: Ctx, request: Request, body: RatingIn) -> TrackOut:
    _limited(ctx, request)
    return await run_in_threadpool(_rate, ctx, body)


class RatingStaff(BaseModel):
    model_config = ConfigDict(frozen=True)
    report_id: int
    incident_id: int
    agency: str | None
    zone_id: str
    kecamatan_id: str | None
    rating: int
    comment: str
    rated_at: datetime


@router.get(
    "/reports/ratings",
    response_model=list[RatingStaff],
    responses={401: {"model": Message}},
    summary="Citizens' ratings with their comments (staff; the caller's scope)",
)
def ratings(
    ctx: Ctx,
    who: CurrentPrincipal,
    month: Annotated[str | None, Query(pattern=MONTH, description="incidents opened")] = None,
) -> list[RatingStaff]:
    where = [*scope_filter(who, ctx.geo), CitizenReportRow.rating.is_not(None)]
    if month is not None:
        start, end = month_bounds(month, ctx.city.facts.time_zone)
        where += [IncidentRow.opened_at >= start, IncidentRow.opened_at < end]
    with ctx.readers() as session:
        rows = session.execute(
            select(CitizenReportRow, IncidentRow.agency, IncidentRow.zone_id)
            .join(IncidentRow, IncidentRow.id == CitizenReportRow.incident_id)
            .where(*where)
            .order_by(CitizenReportRow.rated_at.desc(), CitizenReportRow.id.desc())
            .limit(1000)
        ).all()
    return [
        RatingStaff(
            report_id=r.id,
            incident_id=r.incident_id,
            agency=agency,
            zone_id=zone_id,
            kecamatan_id=ctx.geo.kecamatan_of(zone_id),
            rating=r.rating or 0,
            comment=r.rating_comment or "",
            rated_at=r.rated_at or r.received_at,
        )
        for r, agency, zone_id in rows
    ]
