"""The one place domain errors become OCI error responses: `{"errors": [{code, message, detail}]}`."""

from __future__ import annotations

import json
import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from dockyard import errors
from dockyard.db.session import database_full, database_unavailable
from dockyard.projects.interfaces import PolicyDenied

API_VERSION_HEADER = {"Docker-Distribution-API-Version": "registry/2.0"}
# When the database is unavailable (restarting, failing over): how soon a client may try again.
RETRY_AFTER_SECONDS = 5
# A full disk (blobs or database): RFC 4918's 507 Insufficient Storage, which docker and podman show
# as is ("received unexpected HTTP status: 507 Insufficient Storage"), with the spec's DENIED (the
# write is refused, as for a full quota) and a message saying why for clients that print the body.
STORAGE_FULL_STATUS = 507

# Most specific class first: the first isinstance match wins.
_MAPPING: list[tuple[type[errors.DockyardError], str, int]] = [
    # Project policies: an immutable tag, a full storage quota. The spec's DENIED ("access to the
    # resource was denied"); docker prints "denied: <message>", so the message says which and why.
    (PolicyDenied, "DENIED", 403),
    (errors.ChunkOutOfOrder, "BLOB_UPLOAD_INVALID", 416),
    (errors.UploadTooLarge, "BLOB_UPLOAD_INVALID", 413),
    (errors.BlobUploadInvalid, "BLOB_UPLOAD_INVALID", 400),
    (errors.BlobUploadUnknown, "BLOB_UPLOAD_UNKNOWN", 404),
    # A blob a manifest still uses: 405, one of the answers the spec allows a blob DELETE (end-10) and
    # the one the conformance suite accepts when it deletes blobs before their manifests; DENIED as zot
    # answers it, with a message naming the manifest.
    (errors.BlobReferenced, "DENIED", 405),
    (errors.BlobUnknown, "BLOB_UNKNOWN", 404),
    (errors.DigestInvalid, "DIGEST_INVALID", 400),
    (errors.SizeInvalid, "SIZE_INVALID", 400),
    (errors.RangeInvalid, "RANGE_INVALID", 416),
    (errors.ManifestTooLarge, "MANIFEST_INVALID", 413),
    (errors.ManifestBlobUnknown, "MANIFEST_BLOB_UNKNOWN", 400),
    (errors.ManifestInvalid, "MANIFEST_INVALID", 400),
    (errors.ManifestUnknown, "MANIFEST_UNKNOWN", 404),
    (errors.TagInvalid, "MANIFEST_INVALID", 400),
    (errors.NameInvalid, "NAME_INVALID", 400),
    (errors.NameUnknown, "NAME_UNKNOWN", 404),
    # The spec's UNSUPPORTED covers "an invalid set of parameters".
    (errors.PaginationInvalid, "UNSUPPORTED", 400),
    (errors.Unsupported, "UNSUPPORTED", 405),
    (errors.InvalidPath, "NAME_INVALID", 400),
    (errors.PathNotFound, "BLOB_UNKNOWN", 404),
]

# Storage errors' own messages name storage paths and backend details (`path not found:
# uploads/<id>/data`): they go to the log. The client gets the text of the code it is answered with, or
# the error class's fixed message.
_PUBLIC_STORAGE_MESSAGES: dict[str, str] = {
    "BLOB_UNKNOWN": errors.BlobUnknown.message,
    "NAME_INVALID": errors.NameInvalid.message,
}

log = logging.getLogger("dockyard.api.oci")


def error_body(code: str, message: str, detail: Any = None) -> bytes:
    entry: dict[str, Any] = {"code": code, "message": message}
    if detail is not None:
        entry["detail"] = detail
    return json.dumps({"errors": [entry]}).encode()


def error_response(
    code: str, message: str, status: int, detail: Any = None, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        error_body(code, message, detail),
        status_code=status,
        media_type="application/json",
        headers={**API_VERSION_HEADER, **(headers or {})},
    )


def render_error(exc: Exception) -> Response:
    """Render any exception raised by a /v2 handler; unknown ones become a bare 500."""
    if isinstance(exc, errors.BlobBeingDeleted):  # retryable, like a database outage
        return error_response(
            "UNAVAILABLE", exc.message, 503, exc.detail, headers={"Retry-After": str(RETRY_AFTER_SECONDS)}
        )
    if isinstance(exc, errors.StorageFull) or database_full(exc):
        return storage_full_response(exc)
    if isinstance(exc, errors.DockyardError):
        for kind, code, status in _MAPPING:
            if isinstance(exc, kind):
                if isinstance(exc, errors.StorageError):
                    log.error("storage error answered as %s: %s", code, exc.message)
                    return error_response(code, _PUBLIC_STORAGE_MESSAGES.get(code, type(exc).message), status)
                return error_response(code, exc.message, status, exc.detail)
    if database_unavailable(exc):
        return unavailable_response(exc)
    log.exception("unhandled error in /v2 handler", exc_info=exc)
    return error_response("UNKNOWN", "internal server error", 500)


async def database_error(request: Request, exc: Exception) -> Response:
    """The Starlette handler for database errors outside /v2 (the token endpoint, /metrics): a 503 the
    client retries while the database is unavailable, else a 500."""
    return render_error(exc)


def storage_full_response(exc: Exception) -> Response:
    """507: one warning line without a traceback (every write fails the same way until space is freed)."""
    message = exc.message if isinstance(exc, errors.StorageFull) else errors.StorageFull.message
    log.warning("write refused, storage is full: %s", _first_line(exc.__cause__ or exc))
    return error_response("DENIED", message, STORAGE_FULL_STATUS)


def unavailable_response(exc: Exception) -> Response:
    """503 UNAVAILABLE (registry:2's code) with Retry-After: clients retry, HAProxy's retries too. One
    log line without a traceback: during an outage every request fails the same way. The body names
    no host, port or driver."""
    log.warning("database unavailable: %s", _first_line(exc))
    return error_response(
        "UNAVAILABLE",
        "the registry's database is unavailable; try again shortly",
        503,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"
