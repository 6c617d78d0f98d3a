"""The FastAPI application: `create_app(build_context(settings))`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from .context import ApiContext
from .routes import auth, city, feeds, incidents, kpi, pages, reports, stream
from .routes.pages import STATIC

DESCRIPTION = """Pantau's API for Kota Tangerang: incidents and the crew workflow, zones
with live status, devices with health, crews and agencies, public GeoJSON and CAP 1.2
feeds, citizen reports, the live incident stream and the e-Kinerja KPIs.

People log in with the OAuth2 password flow (`POST /auth/token`) and send
`Authorization: Bearer <token>`; services send `X-API-Key`. A crew sees only its
agency's incidents in its kecamatan; anything else answers 404."""


def create_app(ctx: ApiContext) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield

    app = FastAPI(title="Pantau API", version="1.0.0", description=DESCRIPTION, lifespan=lifespan)
    app.state.ctx = ctx
    for module in (auth, incidents, city, feeds, kpi, stream, reports, pages):
        app.include_router(module.router)
    app.mount("/app/static", StaticFiles(directory=STATIC), name="static")
    return app
