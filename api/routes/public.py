"""/public: the data behind the public transparency page (no login), and the page
itself at /app/public. Aggregates only, from a cache (api.public_data)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse

from api import public_data
from api.deps import Ctx
from api.routes.pages import render_page

router = APIRouter(tags=["public feeds"])
JSON = "application/json"


@router.get(
    "/public/overview",
    response_class=Response,
    responses={200: {"content": {JSON: {}}, "description": "the page's data"}},
    summary="Kelurahan flood/road state, recent incidents (kelurahan, hour), agency response",
)
async def overview(ctx: Ctx) -> Response:
    body = await run_in_threadpool(public_data.overview, ctx)
    return Response(body, media_type=JSON, headers={"Cache-Control": "public, max-age=60"})


@router.get(
    "/public/kelurahan.geojson",
    response_class=Response,
    responses={200: {"content": {"application/geo+json": {}}, "description": "outlines"}},
    summary="The kelurahan outlines (simplified) for the public map",
)
def kelurahan(ctx: Ctx) -> Response:
    return Response(
        public_data.zones_geojson(ctx),
        media_type="application/geo+json",
        headers={"Cache-Control": "public, max-age=3600"},
    )


@router.get("/app/public", include_in_schema=False)
def page(ctx: Ctx) -> HTMLResponse:
    return render_page(ctx, "public.html")
