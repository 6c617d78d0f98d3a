"""The crew phone page and the operations page: static HTML + JS, no build step, no map
tiles (the map is the zone GeoJSON drawn as SVG)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, RedirectResponse

STATIC = Path(__file__).resolve().parent.parent / "static"
router = APIRouter(include_in_schema=False)


@router.get("/")
def root() -> RedirectResponse:
    return RedirectResponse("/app/ops")


@router.get("/app/crew")
def crew_page() -> FileResponse:
    return FileResponse(STATIC / "crew.html", media_type="text/html")


@router.get("/app/ops")
def ops_page() -> FileResponse:
    return FileResponse(STATIC / "ops.html", media_type="text/html")
