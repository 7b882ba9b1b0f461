"""The error envelope every failing request gets, and the handlers that guarantee it.

``{"error": {"status": "INVALID_ARGUMENT", "reason": "MISSING_REQUEST_PARAMETER",
"message": "...", "request_id": "..."}}`` with the matching HTTP code (VoIPBIN's HEAD format).
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError
from sqlalchemy.exc import DBAPIError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from voipbin.calls.service import CallError

log = logging.getLogger(__name__)

STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    402: "PAYMENT_REQUIRED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "ALREADY_EXISTS",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    422: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}


class ApiError(Exception):
    def __init__(self, status_code: int, reason: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.reason = reason
        self.message = message
        self.headers = headers


def bad_request(message: str, reason: str = "INVALID_REQUEST_PARAMETER") -> ApiError:
    return ApiError(400, reason, message)


def not_found(resource: str) -> ApiError:
    return ApiError(404, f"{resource.upper()}_NOT_FOUND", f"No {resource} with that id exists in your account.")


def conflict(message: str, reason: str = "ALREADY_EXISTS") -> ApiError:
    return ApiError(409, reason, message)


def forbidden(message: str = "Your permission level does not allow this request.") -> ApiError:
    return ApiError(403, "PERMISSION_DENIED", message)


def unauthenticated(message: str, reason: str = "INVALID_CREDENTIALS") -> ApiError:
    return ApiError(401, reason, message)


def request_id(request: Request) -> str:
    return str(getattr(request.state, "request_id", "") or "")


def envelope(status_code: int, reason: str, message: str, rid: str) -> dict[str, Any]:
    return {
        "error": {
            "status": STATUS_NAMES.get(status_code, "UNKNOWN"),
            "reason": reason,
            "message": message,
            "request_id": rid,
        }
    }


def error_response(request: Request, status_code: int, reason: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(envelope(status_code, reason, message, request_id(request)), status_code, headers=headers)


def _describe(errors: list[dict[str, Any]]) -> tuple[str, str]:
    """A sentence a person can act on, from pydantic's first few errors."""
    if any(e.get("type") == "json_invalid" for e in errors):
        return "INVALID_JSON_BODY", "The request body is not valid JSON."
    parts, reason = [], "INVALID_REQUEST_PARAMETER"
    for error in errors[:5]:
        location = [str(p) for p in error.get("loc", ()) if p not in ("body", "query", "path", "header")]
        field = ".".join(location) or "body"
        if error.get("type") == "missing":
            reason = "MISSING_REQUEST_PARAMETER"
            parts.append(f"'{field}' is required")
        else:
            parts.append(f"'{field}': {error.get('msg', 'is invalid')}")
    return reason, "; ".join(parts) + "."


# SQLSTATEs of a database that is away, not of a faulty query: connection exceptions (08...), a
# server shutting down, crashed or still starting (57P01-57P03), and no connection slot free (53300).
UNAVAILABLE_SQLSTATES = ("08", "57P01", "57P02", "57P03", "53300")


def database_unreachable(exc: DBAPIError) -> bool:
    """Whether a database error means the database is away for now (a retry may succeed)."""
    sqlstate = str(getattr(exc.orig, "sqlstate", "") or "")
    return (exc.connection_invalidated or isinstance(exc, OperationalError) or isinstance(exc.orig, OSError)
            or sqlstate.startswith(UNAVAILABLE_SQLSTATES))


def unavailable(exc: BaseException) -> ApiError | None:
    """The 503 for an error that means a backing service is away for now; None for any other error.

    For code that answers outside the exception handlers (WebSockets)."""
    if isinstance(exc, RedisError):
        return ApiError(503, "SERVICE_UNAVAILABLE", "Redis is unreachable; retry in a few seconds.", {"Retry-After": "2"})
    if isinstance(exc, OSError) or (isinstance(exc, DBAPIError) and database_unreachable(exc)):
        return ApiError(503, "SERVICE_UNAVAILABLE", "The database is unreachable; retry in a few seconds.", {"Retry-After": "2"})
    return None


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(request, exc.status_code, exc.reason, exc.message, exc.headers)

    @app.exception_handler(CallError)
    async def _refused_by_calls(request: Request, exc: CallError) -> JSONResponse:
        return error_response(request, exc.status, exc.reason, exc.message)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        reason, message = _describe(list(exc.errors()))
        return error_response(request, 400, reason, message)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        reason = {404: "ROUTE_NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(exc.status_code, "HTTP_ERROR")
        message = {404: f"No route {request.url.path}.", 405: f"{request.method} is not allowed on {request.url.path}."}.get(
            exc.status_code, str(exc.detail)
        )
        return error_response(request, exc.status_code, reason, message, getattr(exc, "headers", None))

    @app.exception_handler(RedisError)
    async def _redis_away(request: Request, exc: RedisError) -> JSONResponse:
        log.warning("Redis unreachable on %s %s: %s", request.method, request.url.path, exc)
        return error_response(request, 503, "SERVICE_UNAVAILABLE", "Redis is unreachable; retry in a few seconds.",
                              {"Retry-After": "2"})

    @app.exception_handler(DBAPIError)
    async def _database_error(request: Request, exc: DBAPIError) -> JSONResponse:
        if not database_unreachable(exc):
            return await _unexpected(request, exc)
        return await _database_away(request, exc)

    @app.exception_handler(OSError)
    async def _database_away(request: Request, exc: Exception) -> JSONResponse:
        # Reaching the database (or another backing service) failed: the request may be retried.
        log.warning("backing service unreachable on %s %s: %s", request.method, request.url.path, exc)
        return error_response(request, 503, "SERVICE_UNAVAILABLE", "The database is unreachable; retry in a few seconds.",
                              {"Retry-After": "2"})

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(request, 500, "INTERNAL_ERROR", "Something went wrong on our side; it has been logged.")


# Routes that take uploads, with their own body cap: (method, path) -> bytes. The storage file
# cap is the audio file cap (voipbin.media.audiofile.MAX_BYTES, 20 MiB) plus room for the
# multipart framing and form fields.
UPLOAD_BODY_CAPS: dict[tuple[str, str], int] = {("POST", "/v1.0/storage_files"): (20 << 20) + (64 << 10)}


class RequestContext:
    """ASGI middleware: a request id on every request, and a cap on request body size.

    The cap is ``max_body_bytes``, except on the upload routes of ``upload_caps``.
    Written as plain ASGI (not BaseHTTPMiddleware) so WebSockets and streaming pass untouched.
    """

    def __init__(
        self, app: ASGIApp, max_body_bytes: int, upload_caps: dict[tuple[str, str], int] | None = None
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.upload_caps = UPLOAD_BODY_CAPS if upload_caps is None else upload_caps

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        rid = uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid
        if scope["type"] == "websocket":
            await self.app(scope, receive, send)
            return

        if b"%00" in scope.get("query_string", b"").lower() or "\x00" in scope.get("path", ""):
            # PostgreSQL text cannot hold NUL; no identifier or filter of ours contains one.
            await _send_envelope(send, 400, "INVALID_REQUEST_PARAMETER", "The URL must not contain NUL (%00) characters.", rid)
            return
        cap = self.upload_caps.get((scope.get("method", ""), scope.get("path", "")), self.max_body_bytes)
        declared = _content_length(scope)
        if declared is not None and declared > cap:
            await self._too_large(send, rid, cap)
            return

        # Read the whole (bounded) body before the app sees it, so an oversized one is refused
        # with 413 however it arrives, chunked or not.
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > cap:
                await self._too_large(send, rid, cap)
                return
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", []).append((b"x-request-id", rid.encode()))
            await send(message)

        await self.app(scope, replay, send_with_id)

    async def _too_large(self, send: Send, rid: str, cap: int) -> None:
        await _send_envelope(send, 413, "REQUEST_TOO_LARGE", f"Request bodies are limited to {cap} bytes.", rid)


async def _send_envelope(send: Send, status_code: int, reason: str, message: str, rid: str) -> None:
    """An error answered before the app runs (so outside its exception handlers)."""
    response = JSONResponse(envelope(status_code, reason, message, rid), status_code, headers={"x-request-id": rid})
    await response({"type": "http"}, _no_receive, send)


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
