"""The one place domain errors become OCI error responses: `{"errors": [{code, message, detail}]}`."""

from __future__ import annotations

import json
import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from dockyard import errors
from dockyard.db.session import database_full, database_unavailable
from dockyard.errors import Category, OCICode

API_VERSION_HEADER = {"Docker-Distribution-API-Version": "registry/2.0"}
# When the database is unavailable (restarting, failing over): how soon a client may try again.
RETRY_AFTER_SECONDS = 5

# How /v2 answers each category of domain error: the status, and the code of errors that name none.
ANSWERS: dict[Category, tuple[int, OCICode]] = {
    Category.INVALID: (400, OCICode.UNSUPPORTED),  # the spec's "invalid set of parameters"
    Category.NOT_FOUND: (404, OCICode.NAME_UNKNOWN),
    Category.CONFLICT: (409, OCICode.UNSUPPORTED),
    Category.UNAUTHENTICATED: (401, OCICode.UNAUTHORIZED),
    # Permissions and project policies (a full quota, an immutable tag): the spec's DENIED ("access to
    # the resource was denied"); docker prints "denied: <message>", so the message says which and why.
    Category.DENIED: (403, OCICode.DENIED),
    Category.PROTECTED: (403, OCICode.DENIED),
    # Deletes switched off, read-only mode: the spec answers a disabled DELETE with 405 UNSUPPORTED.
    Category.NOT_ALLOWED: (405, OCICode.UNSUPPORTED),
    Category.OUT_OF_RANGE: (416, OCICode.RANGE_INVALID),
    Category.TOO_LARGE: (413, OCICode.UNSUPPORTED),
    # Retryable, like a database outage: 503 with Retry-After (registry:2's UNAVAILABLE).
    Category.UNAVAILABLE: (503, OCICode.UNAVAILABLE),
    # A full disk (blobs or database): RFC 4918's 507 Insufficient Storage, which docker and podman show
    # as is ("received unexpected HTTP status: 507 Insufficient Storage"), with the spec's DENIED (the
    # write is refused, as for a full quota) and a message saying why for clients that print the body.
    Category.STORAGE_FULL: (507, OCICode.DENIED),
    # Over a limit of `limits:`: the spec's 429 TOOMANYREQUESTS, with Retry-After.
    Category.RATE_LIMITED: (429, OCICode.TOOMANYREQUESTS),
    Category.INTERNAL: (500, OCICode.UNKNOWN),
}

log = logging.getLogger("dockyard.api.oci")


def error_body(code: OCICode, message: str, detail: Any = None) -> bytes:
    entry: dict[str, Any] = {"code": code, "message": message}
    if detail is not None:
        entry["detail"] = detail
    return json.dumps({"errors": [entry]}).encode()


def error_response(
    code: OCICode, message: str, status: int, detail: Any = None, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        error_body(code, message, detail),
        status_code=status,
        media_type="application/json",
        headers={**API_VERSION_HEADER, **(headers or {})},
    )


def render_error(exc: Exception, headers: dict[str, str] | None = None) -> Response:
    """Render any exception raised by a /v2 handler (with `headers` added); unknown ones become a bare
    500."""
    if database_full(exc):
        return storage_full_response(exc)
    if isinstance(exc, errors.DockyardError) and exc.category is not Category.INTERNAL:
        return _domain_error(exc, headers or {})
    if database_unavailable(exc):
        return unavailable_response(exc)
    log.exception("unhandled error in /v2 handler", exc_info=exc)
    status, code = ANSWERS[Category.INTERNAL]
    return error_response(code, "internal server error", status)


def _domain_error(exc: errors.DockyardError, headers: dict[str, str]) -> Response:
    status, code = ANSWERS[exc.category]
    code = exc.oci_code or code
    if exc.category is Category.STORAGE_FULL:
        return storage_full_response(exc)
    if exc.category is Category.UNAVAILABLE:
        headers = {"Retry-After": str(RETRY_AFTER_SECONDS), **headers}
    if isinstance(exc, errors.TooManyRequests):
        headers = {"Retry-After": str(exc.retry_after), **headers}
    if exc.public_message is not None:  # its own message and detail are for the log only
        if exc.message != exc.public_message:
            log.error("%s answered as %s: %s", type(exc).__name__, code, exc.message)
        return error_response(code, exc.public_message, status, headers=headers)
    return error_response(code, exc.message, status, exc.detail, headers)


async def database_error(request: Request, exc: Exception) -> Response:
    """The Starlette handler for database and domain errors outside /v2 (the token endpoint, /metrics):
    a 503 the client retries while the database or the user directory is unavailable, and so on."""
    return render_error(exc)


def storage_full_response(exc: Exception) -> Response:
    """507: one warning line without a traceback (every write fails the same way until space is freed)."""
    status, code = ANSWERS[Category.STORAGE_FULL]
    message = errors.StorageFull.message
    if isinstance(exc, errors.DockyardError):
        message, code = exc.message, exc.oci_code or code
    log.warning("write refused, storage is full: %s", _first_line(exc.__cause__ or exc))
    return error_response(code, message, status)


def unavailable_response(exc: Exception) -> Response:
    """503 UNAVAILABLE (registry:2's code) with Retry-After: clients retry, HAProxy's retries too. One
    log line without a traceback: during an outage every request fails the same way. The body names
    no host, port or driver."""
    log.warning("database unavailable: %s", _first_line(exc))
    status, code = ANSWERS[Category.UNAVAILABLE]
    message = "the registry's database is unavailable; try again shortly"
    return error_response(code, message, status, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"
