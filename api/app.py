"""The FastAPI application: `create_app(build_context(settings))`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from .context import ApiContext
from .deps import CurrentPrincipal
from .docs import add_offline_docs
from .fastpath import CachedListings
from .guards import BodyLimits, ClientAddress, SecurityHeaders, networks
from .idempotency import IdempotentWrites
from .kpi_publisher import KpiPublisher
from .routes import (
    auth,
    city,
    feeds,
    incidents,
    kpi,
    operator,
    oversight,
    pages,
    planning,
    public,
    reports,
    stream,
    tracking,
)
from .routes.pages import STATIC

DESCRIPTION = """Pantau's API for {city}: incidents and the crew workflow, zones
with live status, devices with health, crews and agencies, public GeoJSON and CAP 1.2
feeds, citizen reports, the live incident stream and the e-Kinerja KPIs.

People log in with the OAuth2 password flow (`POST /auth/token`) and send
`Authorization: Bearer <token>`; services send `X-API-Key`. A crew sees only its
agency's incidents in its kecamatan; anything else answers 404."""


def create_app(ctx: ApiContext) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        every = ctx.settings.api.kpi_publish_every_s
        publisher = KpiPublisher(ctx, every) if every > 0 and ctx.influx is not None else None
        if publisher is not None:
            publisher.start()
        app.state.kpi_publisher = publisher
        try:
            yield
        finally:
            if publisher is not None:
                publisher.stop()

    # In production the schema and docs are for logged-in users only (they map the whole
    # attack surface); in development they are open, as usual.
    public_docs = ctx.settings.environment != "production"
    app = FastAPI(
        title="Pantau API",
        version="1.0.0",
        description=DESCRIPTION.format(city=ctx.city.facts.display_name),
        lifespan=lifespan,
        openapi_url="/openapi.json" if public_docs else None,
        docs_url=None,  # served from Pantau's own files below, not a CDN
        redoc_url=None,
    )
    app.state.ctx = ctx
    if public_docs:
        add_offline_docs(app, "Pantau API")
    for module in (
        auth,
        incidents,
        operator,
        city,
        feeds,
        kpi,
        oversight,
        planning,
        stream,
        tracking,
        reports,
        public,
        pages,
    ):
        app.include_router(module.router)
    if not public_docs:

        @app.get("/openapi.json", include_in_schema=False)
        def schema(_who: CurrentPrincipal) -> JSONResponse:
            return JSONResponse(app.openapi())

    # Innermost: CORS (added after) also wraps the answers it serves.
    app.add_middleware(CachedListings, ctx=ctx)
    app.add_middleware(IdempotentWrites, ctx=ctx)
    # CORS stays closed (no Access-Control-Allow-Origin at all) unless origins are named.
    if ctx.settings.api.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=ctx.settings.api.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "X-API-Key", "Idempotency-Key"],
        )
    # Outside CORS: bodies are bounded, then the client is known, then every answer
    # (even a 413) gets the browser headers.
    app.add_middleware(BodyLimits, ctx=ctx)
    app.add_middleware(ClientAddress, trusted=networks(ctx.settings.api.trusted_proxies))
    app.add_middleware(SecurityHeaders)
    app.mount("/app/static", StaticFiles(directory=STATIC), name="static")
    return app
