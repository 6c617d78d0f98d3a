"""/audit: for independent auditors. Verify the hash chains of the audit log and the
incident timelines (pantau.store.chain) and export a month's KPI report, signed with
Ed25519 (api.signing), that carries the incidents its figures come from."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Response, status
from pydantic import BaseModel, ConfigDict

from api import audit_report, signing
from api.audit import Outcome
from api.context import ApiContext
from api.deps import Ctx, CurrentPrincipal
from api.principal import AUDIT_READERS, Principal
from api.routes.kpi import MONTH, period
from api.schemas import Message
from pantau.store.chain import ChainReport, verify_chains

router = APIRouter(prefix="/audit", tags=["audit"])
DENIED: dict[int | str, dict[str, Any]] = {401: {"model": Message}, 403: {"model": Message}}


class BreakOut(BaseModel):
    model_config = ConfigDict(frozen=True)
    table: str
    kind: str
    row_id: int | None
    incident_id: int | None
    detail: str


class ChainOut(BaseModel):
    model_config = ConfigDict(frozen=True)
    ok: bool
    audit_rows: int
    events: int
    incidents: int
    anchor: dict[str, Any]
    breaks: list[BreakOut]


def _auditor(ctx: ApiContext, who: Principal, action: str) -> None:
    """Auditors, operators and city-wide supervisors: those who read the whole log."""
    if who.role not in AUDIT_READERS or who.agency is not None:
        ctx.audit.record(who, action, Outcome.DENIED, f"role {who.role} may not {action}")
        raise HTTPException(status.HTTP_403_FORBIDDEN, "for auditors and operators")


def _chains(ctx: ApiContext) -> ChainReport:
    with ctx.readers() as session:
        return verify_chains(session.connection())


@router.get(
    "/verify",
    response_model=ChainOut,
    responses=DENIED,
    summary="Walk the audit log's and the timelines' hash chains and name every break",
)
def verify(ctx: Ctx, who: CurrentPrincipal) -> ChainOut:
    _auditor(ctx, who, "audit:verify")
    report = _chains(ctx)
    ctx.audit.record(
        who,
        "audit:verify",
        Outcome.ALLOWED,
        f"{report.audit_rows} audit rows, {report.events} events: {len(report.breaks)} break(s)",
    )
    return ChainOut(
        ok=report.ok,
        audit_rows=report.audit_rows,
        events=report.events,
        incidents=report.incidents,
        anchor=report.anchor(),
        breaks=[
            BreakOut(
                table=b.table,
                kind=b.kind,
                row_id=b.row_id,
                incident_id=b.incident_id,
                detail=b.detail,
            )
            for b in report.breaks
        ],
    )


def signing_key(ctx: ApiContext) -> Any:
    path = ctx.settings.api.report_signing_key_file
    if path is None:
        raise HTTPException(503, "no report signing key configured (api.report_signing_key_file)")
    key = ctx.caches.get("report-signing-key")
    if key is None:
        try:
            key = signing.load_signing_key(path)
        except signing.SigningKeyError as err:
            raise HTTPException(503, str(err)) from err
        ctx.caches["report-signing-key"] = key
    return key


@router.get(
    "/signing-key",
    response_class=Response,
    responses={
        200: {"content": {"application/x-pem-file": {}}, "description": "the public key"},
        503: {"model": Message},
    },
    summary="The public key (PEM) that verifies signed KPI reports (public)",
)
def public_key(ctx: Ctx) -> Response:
    return Response(signing.public_pem(signing_key(ctx)), media_type="application/x-pem-file")


@router.get(
    "/kpi-report",
    responses={**DENIED, 503: {"model": Message}},
    summary="A month's KPI report with its incidents and the chains' anchor, Ed25519-signed",
)
def kpi_report(
    ctx: Ctx, who: CurrentPrincipal, month: Annotated[str, Query(pattern=MONTH)]
) -> dict[str, Any]:
    _auditor(ctx, who, "audit:kpi-report")
    key = signing_key(ctx)
    start, end = period(ctx, month, None, None)
    document = audit_report.build(ctx, who, month=month, start=start, end=end, chains=_chains(ctx))
    ctx.audit.record(
        who, "audit:kpi-report", Outcome.ALLOWED, f"{month}: {len(document['incidents'])} incidents"
    )
    return signing.sign(key, document)
