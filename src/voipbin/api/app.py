"""The HTTP application: VoIPBIN's v1.0 API, its OpenAPI spec, and offline docs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from fastapi_offline import FastAPIOffline

from voipbin import __version__
from voipbin.api import (
    accesskeys,
    agents,
    aicalls,
    ais,
    aisummaries,
    auth,
    calls,
    conferences,
    console,
    customers,
    errors,
    extensions,
    flows,
    numbers,
    providers,
    recordings,
    sandbox,
    speakings,
    storage_files,
    webhook_deliveries,
    ws,
)
from voipbin.runtime import Platform

DESCRIPTION = """\
A self-hosted, VoIPBIN v1.0 compatible programmable voice platform.

Authenticate with a JWT from `POST /auth/login` as `?token=` or `Authorization: Bearer <jwt>`,
or with an access key as `?accesskey=`. Errors are
`{"error": {"status", "reason", "message", "request_id"}}`.
"""


def create_app(platform: Platform) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # `voipbin start` starts the platform itself (two servers share it); tests and plain
        # ASGI servers rely on this.
        owned = not platform.started
        if owned:
            await platform.start()
        yield
        if owned:
            await platform.stop()

    app = FastAPIOffline(
        title="VoIPBIN-compatible API",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url="/redoc",
    )
    app.state.platform = platform
    errors.install(app)
    routers = (auth, accesskeys, customers, agents, extensions, numbers, calls, flows, recordings, speakings, providers, ais,
               aicalls, aisummaries, conferences, storage_files, webhook_deliveries, sandbox, ws)
    for module in routers:
        app.include_router(module.router)
    app.include_router(console.router)  # the admin console at /console/

    @app.get("/ping", tags=["meta"], summary="Liveness check")
    async def ping() -> dict[str, str]:
        return {"message": "pong"}

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/docs")

    app.add_middleware(errors.RequestContext, max_body_bytes=platform.settings.max_body_bytes)
    return app
