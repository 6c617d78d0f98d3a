"""The crew phone page and the operations page: static HTML + JS, no build step, no map
tiles (the map is the zone GeoJSON drawn as SVG). The city's name and time zone
(config/city.yaml) are filled into the HTML as it is served."""

from __future__ import annotations

import html
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse

from api.context import ApiContext
from api.deps import Ctx, IncidentId

STATIC = Path(__file__).resolve().parent.parent / "static"
router = APIRouter(include_in_schema=False)


@router.get("/")
def root() -> RedirectResponse:
    return RedirectResponse("/app/ops")


def render_page(ctx: ApiContext, name: str) -> HTMLResponse:
    facts = ctx.city.facts
    text = (STATIC / name).read_text(encoding="utf-8")
    for key, value in (("city", facts.display_name), ("time_zone", facts.time_zone.key)):
        text = text.replace("{{" + key + "}}", html.escape(value))
    return HTMLResponse(text)


@router.get("/app/crew")
def crew_page(ctx: Ctx) -> HTMLResponse:
    return render_page(ctx, "crew.html")


@router.get("/app/crew.webmanifest")
def crew_manifest() -> FileResponse:
    """The crew page as an installable app (Add to Home screen)."""
    return FileResponse(STATIC / "crew.webmanifest", media_type="application/manifest+json")


@router.get("/app/crew-sw.js")
def crew_service_worker() -> FileResponse:
    """The crew page's service worker, served from /app/ so that its scope covers the
    page; never cached by HTTP (a new version must reach the phones)."""
    return FileResponse(
        STATIC / "crew-sw.js",
        media_type="text/javascript",
        headers={"Cache-Control": "no-cache"},
    )


@router.get("/app/ops")
def ops_page(ctx: Ctx) -> HTMLResponse:
    return render_page(ctx, "ops.html")


@router.get("/app/ops/incidents/{incident_id}")
def ops_incidentrender_page(ctx: Ctx, incident_id: IncidentId) -> HTMLResponse:
    """The ops page opened on one incident (Grafana and alerts link here); the page
    reads the id from its address once the operator is logged in."""
    return render_page(ctx, "ops.html")
