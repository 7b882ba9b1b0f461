"""Serves the admin console (``voipbin.console``'s static files) under ``/console/``, plus
``/console/config.json``: what its pages cannot learn from the API (SIP address, sandbox)."""

from __future__ import annotations

import re

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse

from voipbin.api.deps import PlatformDep
from voipbin.api.errors import ApiError
from voipbin.console import CONTENT_TYPES, STATIC

router = APIRouter(prefix="/console", include_in_schema=False)
# A Host header is client-supplied: only a plain host[:port] may reach the CSP header.
_HOST = re.compile(r"^[A-Za-z0-9.\-]+(:\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$")


def security_headers(request: Request) -> dict[str, str]:
    host = request.headers.get("host", "")
    # Browsers differ on whether 'self' covers ws:/wss:, so the socket's origin is named too.
    sockets = f" ws://{host} wss://{host}" if _HOST.match(host) else ""
    policy = (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"connect-src 'self'{sockets}; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; object-src 'none'"
    )
    return {
        "Content-Security-Policy": policy,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
        # Small files that change with each release: always revalidate.
        "Cache-Control": "no-cache",
    }


@router.get("")
async def without_slash() -> RedirectResponse:
    return RedirectResponse("/console/")


@router.get("/")
async def index(request: Request) -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type=CONTENT_TYPES[".html"], headers=security_headers(request))


@router.get("/config.json")
async def config(request: Request, platform: PlatformDep) -> JSONResponse:
    settings = platform.settings
    body = {
        "domain": settings.domain,
        "registrar_suffix": f"registrar.{settings.domain}",
        "sip_port": platform.sip.stack.port,  # the bound port (the setting may be 0: any free port)
        "public_address": settings.advertised_address,
        "sandbox": settings.sandbox,
        "mailbox": settings.sandbox and not settings.smtp_url,
        "api_base": "",
    }
    return JSONResponse(body, headers=security_headers(request))


@router.get("/{asset:path}")
async def asset(asset: str, request: Request) -> FileResponse:
    path = (STATIC / asset).resolve()
    if not path.is_relative_to(STATIC.resolve()) or not path.is_file() or path.suffix not in CONTENT_TYPES:
        raise ApiError(404, "ROUTE_NOT_FOUND", f"No route /console/{asset}.")
    return FileResponse(path, media_type=CONTENT_TYPES[path.suffix], headers=security_headers(request))
