"""The one place errors become management API responses.

Every error, whatever raised it (a domain service, validation, routing, authentication), is answered
with Harbor's shape: `{"errors": [{"code": "NOT_FOUND", "message": "..."}]}`. Domain errors carry no
status: `STATUS` maps their category to one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from http import HTTPStatus

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request

from dockyard import errors
from dockyard.db.session import database_full, database_unavailable
from dockyard.errors import Category

log = logging.getLogger("dockyard.api.management")

BASIC_CHALLENGE = {"WWW-Authenticate": 'Basic realm="dockyard"'}
RETRY_AFTER_SECONDS = 5  # when the database is unavailable: how soon a client may try again

# Codes by status, as Harbor names them. A status not listed gets its HTTP reason phrase, upper-cased.
CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "CONFLICT",
    412: "PRECONDITION",
    413: "REQUEST_ENTITY_TOO_LARGE",  # Python 3.11's phrases, whichever Python runs
    416: "REQUESTED_RANGE_NOT_SATISFIABLE",
    429: "TOO_MANY_REQUESTS",
    500: "INTERNAL_SERVER_ERROR",
    503: "SERVICE_UNAVAILABLE",
    507: "INSUFFICIENT_STORAGE",
}

# How the management API answers each category of domain error.
STATUS: dict[Category, int] = {
    Category.INVALID: 400,
    Category.NOT_FOUND: 404,
    Category.CONFLICT: 409,
    Category.UNAUTHENTICATED: 401,
    Category.DENIED: 403,
    # An immutable tag (as Harbor answers its delete), deletes switched off, read-only maintenance: the
    # request is fine, the server's state forbids it.
    Category.PROTECTED: 412,
    Category.NOT_ALLOWED: 412,
    Category.OUT_OF_RANGE: 416,
    Category.TOO_LARGE: 413,
    Category.UNAVAILABLE: 503,
    # A full disk (blobs or database): writes are refused until space is freed; reads go on.
    Category.STORAGE_FULL: 507,
    Category.RATE_LIMITED: 429,
    Category.INTERNAL: 500,
}


class ApiError(Exception):
    """Raised by handlers for errors that are about HTTP, not the domain (bad paging, 404 of a route)."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


def code_for(status: int) -> str:
    if status in CODES:
        return CODES[status]
    try:
        return HTTPStatus(status).phrase.upper().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "UNKNOWN"


def error_response(status: int, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    body = {"errors": [{"code": code_for(status), "message": message}]}
    all_headers = dict(headers or {})
    if status == 401:
        all_headers.update(BASIC_CHALLENGE)
    return JSONResponse(body, status_code=status, headers=all_headers)


def status_for(exc: errors.DockyardError) -> int:
    return STATUS[exc.category]


# Told about every 401/403 answer, to audit refusals that happened before a handler ran.
RefusalHook = Callable[[Request, int, str], None]


def install_error_handlers(app: FastAPI, on_refusal: RefusalHook | None = None) -> None:
    async def api_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return _refusal_seen(request, error_response(exc.status, exc.message, exc.headers), exc.message)

    async def domain_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, errors.DockyardError)
        status = status_for(exc)
        if status == 500:
            log.error("domain error %s answered with 500: %s", type(exc).__name__, exc.message, exc_info=exc)
            return error_response(500, "internal server error")
        if status == 507:
            log.warning("write refused, storage is full: %s", _first_line(exc.__cause__ or exc))
        message = exc.message
        if exc.public_message is not None:  # its own message and detail are for the log only
            if exc.message != exc.public_message:
                log.error("%s answered with %d: %s", type(exc).__name__, status, exc.message)
            message = exc.public_message
        return _refusal_seen(request, error_response(status, message), message)

    def _refusal_seen(request: Request, response: JSONResponse, message: str) -> JSONResponse:
        if on_refusal is not None and response.status_code in (401, 403):
            on_refusal(request, response.status_code, message)
        return response

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(errors.DockyardError, domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(SQLAlchemyError, _database_error)
    app.add_exception_handler(Exception, _unexpected_error)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return error_response(400, describe_validation(exc))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    message = exc.detail if isinstance(exc.detail, str) else code_for(exc.status_code).lower()
    return error_response(exc.status_code, message, exc.headers)


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    # Its own handler: Starlette re-raises what the catch-all `Exception` handler answered, so the
    # server would log a traceback for every request of an outage.
    if database_full(exc):
        log.warning("write refused, storage is full: %s", _first_line(exc))
        return error_response(507, errors.StorageFull.message)
    if database_unavailable(exc):
        # One line, no traceback: during an outage every request fails the same way.
        log.warning("database unavailable: %s", _first_line(exc))
        message = "the database is unavailable; try again shortly"
        return error_response(503, message, {"Retry-After": str(RETRY_AFTER_SECONDS)})
    return await _unexpected_error(request, exc)


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error in management API handler", exc_info=exc)
    return error_response(500, "internal server error")


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"


def describe_validation(exc: RequestValidationError) -> str:
    """One readable line per problem: `body.username: field required`. Values are not echoed back
    (they may be passwords)."""
    parts = []
    for problem in exc.errors():
        location = ".".join(str(part) for part in problem.get("loc", ()))
        parts.append(f"{location}: {problem.get('msg', 'invalid')}" if location else problem.get("msg", ""))
    return "; ".join(parts) or "invalid request"
