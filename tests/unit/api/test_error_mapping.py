"""Every error class is answered by both APIs, and this table says how: class -> (/v2 status, its OCI
code, /api/v1 status, its code). The classes are found by walking DockyardError's subclasses across every
dockyard module, so a class added without a row fails here: give it a category (dockyard/errors.py) and
a row saying what each API answers.

The table was captured from the answers before errors were described by category (one isinstance table
per API); rows changed since say why.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import pkgutil
from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI

import dockyard
from dockyard import errors
from dockyard.api.management.errors import STATUS, install_error_handlers
from dockyard.api.oci.errors import ANSWERS, render_error

# (/v2 status, OCI code, /api/v1 status, /api/v1 code). Changed since the capture, when each class got a
# category: classes an API had no row for were answered 500 "internal server error" there; they get their
# category's answer now (/v2: DirectoryUnavailable when LDAP is down, 503 as on /api/v1; the accounts,
# projects, jobs... errors, which /v2 handlers do not raise. /api/v1: RetentionPolicyNotFound, 404 as its
# router answered it; the registry's upload and blob errors, which its handlers do not raise).
EXPECTED: dict[str, tuple[int, str, int, str]] = {
    "dockyard.accounts.directory.DirectoryUnavailable": (503, "UNAVAILABLE", 503, "SERVICE_UNAVAILABLE"),
    "dockyard.accounts.interfaces.GroupExists": (409, "UNSUPPORTED", 409, "CONFLICT"),
    "dockyard.accounts.interfaces.GroupNotFound": (404, "NAME_UNKNOWN", 404, "NOT_FOUND"),
    "dockyard.accounts.interfaces.InvalidExpiry": (400, "UNSUPPORTED", 400, "BAD_REQUEST"),
    "dockyard.accounts.interfaces.InvalidName": (400, "UNSUPPORTED", 400, "BAD_REQUEST"),
    "dockyard.accounts.interfaces.LastAdmin": (409, "UNSUPPORTED", 409, "CONFLICT"),
    "dockyard.accounts.interfaces.NoCLISecret": (409, "UNSUPPORTED", 409, "CONFLICT"),
    "dockyard.accounts.interfaces.PersonalTokenNotFound": (404, "NAME_UNKNOWN", 404, "NOT_FOUND"),
    "dockyard.accounts.interfaces.RobotExists": (409, "UNSUPPORTED", 409, "CONFLICT"),
    "dockyard.accounts.interfaces.RobotNotFound": (404, "NAME_UNKNOWN", 404, "NOT_FOUND"),
    "dockyard.accounts.interfaces.UserExists": (409, "UNSUPPORTED", 409, "CONFLICT"),
    "dockyard.accounts.interfaces.UserNotFound": (404, "NAME_UNKNOWN", 404, "NOT_FOUND"),
    "dockyard.accounts.interfaces.WeakPassword": (400, "UNSUPPORTED", 400, "BAD_REQUEST"),
    "dockyard.accounts.interfaces.WrongPassword": (403, "DENIED", 403, "FORBIDDEN"),
    "dockyard.audit.interfaces.AuditQueryInvalid": (400, "UNSUPPORTED", 400, "BAD_REQUEST"),
    "dockyard.auth.interfaces.AccessDenied": (403, "DENIED", 403, "FORBIDDEN"),
    "dockyard.auth.interfaces.AuthenticationFailed": (401, "UNAUTHORIZED", 401, "UNAUTHORIZED"),
    "dockyard.auth.interfaces.Unauthenticated": (401, "UNAUTHORIZED", 401, "UNAUTHORIZED"),
    "dockyard.auth.scopes.ScopeInvalid": (400, "UNSUPPORTED", 400, "BAD_REQUEST"),
    "dockyard.auth.tokens.TokenInvalid": (401, "UNAUTHORIZED", 401, "UNAUTHORIZED"),
    "dockyard.endpoints.interfaces.EndpointExists": (409, "UNSUPPORTED", 409, "CONFLICT"),
    "dockyard.endpoints.interfaces.EndpointInUse": (409, "UNSUPPORTED", 409, "CONFLICT"),
    "dockyard.endpoints.interfaces.EndpointInvalid": (400, "UNSUPPORTED", 400, "BAD_REQUEST"),
    "dockyard.endpoints.interfaces.EndpointNotFound": (404, "NAME_UNKNOWN", 404, "NOT_FOUND"),
    "dockyard.webhooks.interfaces.InvalidWebhook": (400, "UNSUPPORTED", 400, "BAD_REQUEST"),
    "dockyard.webhooks.interfaces.WebhookExists": (409, "UNSUPPORTED", 409, "CONFLICT"),
    "dockyard.webhooks.interfaces.WebhookNotFound": (404, "NAME_UNKNOWN", 404, "NOT_FOUND"),
    "dockyard.errors.BlobBeingDeleted": (503, "UNAVAILABLE", 503, "SERVICE_UNAVAILABLE"),
    "dockyard.errors.BlobReferenced": (405, "DENIED", 412, "PRECONDITION"),
    "dockyard.errors.BlobUnknown": (404, "BLOB_UNKNOWN", 404, "NOT_FOUND"),
    "dockyard.errors.BlobUploadInvalid": (400, "BLOB_UPLOAD_INVALID", 400, "BAD_REQUEST"),
    "dockyard.errors.BlobUploadUnknown": (404, "BLOB_UPLOAD_UNKNOWN", 404, "NOT_FOUND"),
    "dockyard.errors.ChunkOutOfOrder": (416, "BLOB_UPLOAD_INVALID", 416, "REQUESTED_RANGE_NOT_SATISFIABLE"),
    "dockyard.errors.ConfigError": (400, "UNSUPPORTED", 400, "BAD_REQUEST"),
    "dockyard.errors.DeleteDisabled": (405, "UNSUPPORTED", 412, "PRECONDITION"),
    "dockyard.errors.DigestInvalid": (400, "DIGEST_INVALID", 400, "BAD_REQUEST"),
    "dockyard.errors.InvalidPath": (400, "NAME_INVALID", 400, "BAD_REQUEST"),
    "dockyard.errors.ManifestBlobUnknown": (400, "MANIFEST_BLOB_UNKNOWN", 400, "BAD_REQUEST"),
    "dockyard.errors.ManifestInvalid": (400, "MANIFEST_INVALID", 400, "BAD_REQUEST"),
    "dockyard.errors.ManifestTooLarge": (413, "MANIFEST_INVALID", 413, "REQUEST_ENTITY_TOO_LARGE"),
    "dockyard.errors.ManifestUnknown": (404, "MANIFEST_UNKNOWN", 404, "NOT_FOUND"),
    "dockyard.errors.NameInvalid": (400, "NAME_INVALID", 400, "BAD_REQUEST"),
    "dockyard.errors.NameUnknown": (404, "NAME_UNKNOWN", 404, "NOT_FOUND"),
    "dockyard.errors.PaginationInvalid": (400, "UNSUPPORTED", 400, "BAD_REQUEST"),
    "dockyard.errors.PathNotFound": (404, "BLOB_UNKNOWN", 404, "NOT_FOUND"),
    "dockyard.errors.RangeInvalid": (416, "RANGE_INVALID", 416, "REQUESTED_RANGE_NOT_SATISFIABLE"),
    "dockyard.errors.ReadOnly": (405, "UNSUPPORTED", 412, "PRECONDITION"),
    "dockyard.errors.SizeInvalid": (400, "SIZE_INVALID", 400, "BAD_REQUEST"),
    "dockyard.errors.StorageError": (500, "UNKNOWN", 500, "INTERNAL_SERVER_ERROR"),
    "dockyard.errors.StorageFull": (507, "DENIED", 507, "INSUFFICIENT_STORAGE"),
    "dockyard.errors.TagInvalid": (400, "MANIFEST_INVALID", 400, "BAD_REQUEST"),
    "dockyard.errors.Unsupported": (405, "UNSUPPORTED", 412, "PRECONDITION"),
    "dockyard.errors.TooManyRequests": (429, "TOOMANYREQUESTS", 429, "TOO_MANY_REQUESTS"),
    "dockyard.errors.UnsupportedDigest": (400, "DIGEST_INVALID", 400, "BAD_REQUEST"),
    "dockyard.errors.UploadBusy": (416, "BLOB_UPLOAD_INVALID", 416, "REQUESTED_RANGE_NOT_SATISFIABLE"),
    "dockyard.errors.UploadTooLarge": (413, "BLOB_UPLOAD_INVALID", 413, "REQUEST_ENTITY_TOO_LARGE"),
    "dockyard.gc.interfaces.GCOptionsInvalid": (400, "UNSUPPORTED", 400, "BAD_REQUEST"),
    "dockyard.jobs.interfaces.InvalidSchedule": (400, "UNSUPPORTED", 400, "BAD_REQUEST"),
    "dockyard.jobs.interfaces.JobCancelled": (400, "UNSUPPORTED", 400, "BAD_REQUEST"),
    "dockyard.jobs.interfaces.JobError": (400, "UNSUPPORTED", 400, "BAD_REQUEST"),
    "dockyard.jobs.interfaces.JobNotFound": (404, "NAME_UNKNOWN", 404, "NOT_FOUND"),
    "dockyard.jobs.interfaces.JobStateError": (409, "UNSUPPORTED", 409, "CONFLICT"),
    "dockyard.jobs.interfaces.JobTimedOut": (400, "UNSUPPORTED", 400, "BAD_REQUEST"),
    "dockyard.jobs.interfaces.UnknownJobKind": (400, "UNSUPPORTED", 400, "BAD_REQUEST"),
    "dockyard.maintenance.interfaces.MaintenanceError": (500, "UNKNOWN", 500, "INTERNAL_SERVER_ERROR"),
    "dockyard.projects.interfaces.ImmutableRuleNotFound": (404, "NAME_UNKNOWN", 404, "NOT_FOUND"),
    "dockyard.projects.interfaces.InvalidImmutableRule": (400, "UNSUPPORTED", 400, "BAD_REQUEST"),
    "dockyard.projects.interfaces.InvalidPermission": (400, "UNSUPPORTED", 400, "BAD_REQUEST"),
    "dockyard.projects.interfaces.InvalidQuota": (400, "UNSUPPORTED", 400, "BAD_REQUEST"),
    "dockyard.projects.interfaces.InvalidRole": (400, "UNSUPPORTED", 400, "BAD_REQUEST"),
    "dockyard.projects.interfaces.MemberExists": (409, "UNSUPPORTED", 409, "CONFLICT"),
    "dockyard.projects.interfaces.MemberNotFound": (404, "NAME_UNKNOWN", 404, "NOT_FOUND"),
    "dockyard.projects.interfaces.PolicyDenied": (403, "DENIED", 403, "FORBIDDEN"),
    "dockyard.projects.interfaces.PullRefused": (403, "DENIED", 403, "FORBIDDEN"),
    "dockyard.projects.interfaces.InvalidPullPolicy": (400, "UNSUPPORTED", 400, "BAD_REQUEST"),
    "dockyard.proxy.interfaces.ProxyPushDenied": (403, "DENIED", 403, "FORBIDDEN"),
    "dockyard.proxy.interfaces.MirrorPushUnsupported": (405, "UNSUPPORTED", 412, "PRECONDITION"),
    "dockyard.proxy.interfaces.ProxySettingsInvalid": (400, "UNSUPPORTED", 400, "BAD_REQUEST"),
    "dockyard.proxy.interfaces.ProxyUpstreamFailed": (503, "UNAVAILABLE", 503, "SERVICE_UNAVAILABLE"),
    "dockyard.replication.interfaces.PolicyExists": (409, "UNSUPPORTED", 409, "CONFLICT"),
    "dockyard.replication.interfaces.PolicyInvalid": (400, "UNSUPPORTED", 400, "BAD_REQUEST"),
    "dockyard.replication.interfaces.PolicyNotFound": (404, "NAME_UNKNOWN", 404, "NOT_FOUND"),
    "dockyard.replication.interfaces.ReplicationError": (400, "UNSUPPORTED", 400, "BAD_REQUEST"),
    "dockyard.replication.interfaces.RunNotFound": (404, "NAME_UNKNOWN", 404, "NOT_FOUND"),
    "dockyard.replication.tasks.RunFailed": (400, "UNSUPPORTED", 400, "BAD_REQUEST"),
    "dockyard.projects.interfaces.ProjectExists": (409, "UNSUPPORTED", 409, "CONFLICT"),
    "dockyard.projects.interfaces.ProjectNotFound": (404, "NAME_UNKNOWN", 404, "NOT_FOUND"),
    "dockyard.projects.interfaces.QuotaExceeded": (403, "DENIED", 403, "FORBIDDEN"),
    "dockyard.projects.interfaces.TagImmutable": (403, "DENIED", 412, "PRECONDITION"),
    "dockyard.projects.patterns.PatternInvalid": (400, "UNSUPPORTED", 400, "BAD_REQUEST"),
    "dockyard.retention.interfaces.RetentionPolicyInvalid": (400, "UNSUPPORTED", 400, "BAD_REQUEST"),
    "dockyard.retention.interfaces.RetentionPolicyNotFound": (404, "NAME_UNKNOWN", 404, "NOT_FOUND"),
    "dockyard.scanning.interfaces.FileNotInLayer": (404, "NAME_UNKNOWN", 404, "NOT_FOUND"),
    "dockyard.scanning.interfaces.LayerNotInImage": (404, "NAME_UNKNOWN", 404, "NOT_FOUND"),
    "dockyard.scanning.interfaces.LayerReadLimit": (413, "UNSUPPORTED", 413, "REQUEST_ENTITY_TOO_LARGE"),
    "dockyard.scanning.interfaces.LayerUnreadable": (400, "UNSUPPORTED", 400, "BAD_REQUEST"),
    "dockyard.scanning.interfaces.NotAnImage": (400, "UNSUPPORTED", 400, "BAD_REQUEST"),
    "dockyard.scanning.interfaces.PlatformUnknown": (400, "UNSUPPORTED", 400, "BAD_REQUEST"),
    "dockyard.scans.adapters.ScannerUnavailable": (503, "UNAVAILABLE", 503, "SERVICE_UNAVAILABLE"),
    "dockyard.scans.harbor.ReportInvalid": (503, "UNAVAILABLE", 503, "SERVICE_UNAVAILABLE"),
    "dockyard.scans.scanners.ScannerExists": (409, "UNSUPPORTED", 409, "CONFLICT"),
    "dockyard.scans.scanners.ScannerInvalid": (400, "UNSUPPORTED", 400, "BAD_REQUEST"),
    "dockyard.scans.scanners.ScannerNotFound": (404, "NAME_UNKNOWN", 404, "NOT_FOUND"),
    "dockyard.scans.harbor.ScanRequestMalformed": (400, "UNSUPPORTED", 400, "BAD_REQUEST"),
    "dockyard.scans.harbor.ScanRequestRefused": (400, "UNSUPPORTED", 400, "BAD_REQUEST"),
    "dockyard.scans.interfaces.ScanNotFound": (404, "NAME_UNKNOWN", 404, "NOT_FOUND"),
    "dockyard.scans.interfaces.ScanParamsInvalid": (400, "UNSUPPORTED", 400, "BAD_REQUEST"),
    "dockyard.signatures.interfaces.InvalidTrustedKey": (400, "UNSUPPORTED", 400, "BAD_REQUEST"),
    "dockyard.signatures.interfaces.TrustedKeyExists": (409, "UNSUPPORTED", 409, "CONFLICT"),
    "dockyard.signatures.interfaces.TrustedKeyNotFound": (404, "NAME_UNKNOWN", 404, "NOT_FOUND"),
    "dockyard.signatures.interfaces.InvalidTrustPolicy": (400, "UNSUPPORTED", 400, "BAD_REQUEST"),
    "dockyard.signatures.interfaces.TrustPolicyNotFound": (404, "NAME_UNKNOWN", 404, "NOT_FOUND"),
    "dockyard.signatures.interfaces.InvalidSigstoreTrust": (400, "UNSUPPORTED", 400, "BAD_REQUEST"),
    "dockyard.signatures.interfaces.SigstoreTrustNotFound": (404, "NAME_UNKNOWN", 404, "NOT_FOUND"),
    # An upload session asked for a move its state does not allow (storage.uploads.states).
    "dockyard.storage.uploads.states.UploadStateInvalid": (400, "BLOB_UPLOAD_INVALID", 400, "BAD_REQUEST"),
    "dockyard.upstream.interfaces.UpstreamAddressRefused": (400, "UNSUPPORTED", 400, "BAD_REQUEST"),
    "dockyard.upstream.interfaces.UpstreamError": (503, "UNAVAILABLE", 503, "SERVICE_UNAVAILABLE"),
    "dockyard.oidc.interfaces.OIDCAccountRefused": (403, "DENIED", 403, "FORBIDDEN"),
    "dockyard.oidc.interfaces.OIDCLoginFailed": (401, "UNAUTHORIZED", 401, "UNAUTHORIZED"),
    "dockyard.oidc.interfaces.OIDCUnavailable": (503, "UNAVAILABLE", 503, "SERVICE_UNAVAILABLE"),
    "dockyard.upstream.interfaces.UpstreamInvalid": (400, "UNSUPPORTED", 400, "BAD_REQUEST"),
    "dockyard.upstream.interfaces.UpstreamNotFound": (404, "NAME_UNKNOWN", 404, "NOT_FOUND"),
    "dockyard.upstream.interfaces.UpstreamUnauthorized": (503, "UNAVAILABLE", 503, "SERVICE_UNAVAILABLE"),
    "dockyard.upstream.interfaces.UpstreamUnavailable": (503, "UNAVAILABLE", 503, "SERVICE_UNAVAILABLE"),
    "dockyard.vulndb.interfaces.AllowlistEntryNotFound": (404, "NAME_UNKNOWN", 404, "NOT_FOUND"),
    "dockyard.vulndb.interfaces.AllowlistInvalid": (400, "UNSUPPORTED", 400, "BAD_REQUEST"),
    "dockyard.vulndb.interfaces.ArchiveUnsafe": (400, "UNSUPPORTED", 400, "BAD_REQUEST"),
    "dockyard.vulndb.interfaces.ImportInvalid": (400, "UNSUPPORTED", 400, "BAD_REQUEST"),
    "dockyard.vulndb.interfaces.NotOSV": (400, "UNSUPPORTED", 400, "BAD_REQUEST"),
}

# Storage errors' own messages name storage paths: clients are shown a fixed text instead.
PUBLIC_MESSAGE = {
    "dockyard.errors.PathNotFound": errors.BlobUnknown.message,
    "dockyard.errors.InvalidPath": errors.NameInvalid.message,
    # Its messages and detail name the service account, search bases and connection errors.
    "dockyard.accounts.directory.DirectoryUnavailable": "the user directory is unavailable",
    # Its detail names the provider's URLs and connection errors.
    "dockyard.oidc.interfaces.OIDCUnavailable": "the OpenID provider is unavailable",
}
MESSAGE = "what went wrong, for the client"
DETAIL = {"why": "a test"}


def error_class(name: str) -> type[Exception]:
    module, _, qualname = name.rpartition(".")
    found = getattr(importlib.import_module(module), qualname)
    assert isinstance(found, type) and issubclass(found, Exception)
    return found


def raised(cls: type[Exception]) -> Exception:
    assert issubclass(cls, errors.DockyardError)
    return cls(MESSAGE, detail=DETAIL)


def every_error_class() -> dict[str, type[errors.DockyardError]]:
    """Every DockyardError subclass defined in a dockyard module, by its dotted name."""
    for module in pkgutil.walk_packages(dockyard.__path__, "dockyard."):
        if not module.name.startswith("dockyard.db.migrations"):  # alembic's env runs on import
            importlib.import_module(module.name)
    return {
        f"{cls.__module__}.{cls.__qualname__}": cls
        for cls in _subclasses(errors.DockyardError)
        if cls.__module__.startswith("dockyard.")
    }


def _subclasses(cls: type[errors.DockyardError]) -> Iterator[type[errors.DockyardError]]:
    subclass: type[errors.DockyardError]
    for subclass in cls.__subclasses__():
        yield subclass
        yield from _subclasses(subclass)


def test_every_error_class_has_a_row() -> None:
    found = set(every_error_class())
    assert sorted(found - set(EXPECTED)) == [], "add a row to EXPECTED for each"
    assert sorted(set(EXPECTED) - found) == [], "classes gone: remove their rows"


def test_each_api_answers_every_category() -> None:
    assert set(ANSWERS) == set(errors.Category) == set(STATUS)


def test_every_error_class_names_its_category() -> None:
    """Itself or a parent below DockyardError: the base's INTERNAL is not a default to fall into."""
    unnamed = [
        name
        for name, cls in every_error_class().items()
        if not any(
            "category" in vars(parent) for parent in cls.__mro__[: cls.__mro__.index(errors.DockyardError)]
        )
    ]
    assert unnamed == [], "give each a category (dockyard/errors.py says which there are)"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_v2_answer(name: str) -> None:
    status, code, _, _ = EXPECTED[name]
    response = render_error(raised(error_class(name)))
    body = json.loads(bytes(response.body))
    assert (response.status_code, body["errors"][0]["code"]) == (status, code)
    assert response.headers["docker-distribution-api-version"] == "registry/2.0"
    assert response.headers["content-type"] == "application/json"
    assert (response.headers.get("retry-after") == "5") == (status == 503)
    entry = body["errors"][0]
    if status == 500:
        assert entry == {"code": "UNKNOWN", "message": "internal server error"}
    elif name in PUBLIC_MESSAGE:
        assert entry == {"code": code, "message": PUBLIC_MESSAGE[name]}
    elif name == "dockyard.errors.StorageFull":
        assert entry == {"code": code, "message": MESSAGE}
    else:
        assert entry == {"code": code, "message": MESSAGE, "detail": DETAIL}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_api_v1_answer(name: str) -> None:
    _, _, status, code = EXPECTED[name]
    response = asyncio.run(_management_answer(raised(error_class(name))))
    assert (response.status_code, response.json()["errors"][0]["code"]) == (status, code)
    message = "internal server error" if status == 500 else PUBLIC_MESSAGE.get(name, MESSAGE)
    assert response.json() == {"errors": [{"code": code, "message": message}]}
    assert (response.headers.get("www-authenticate") == 'Basic realm="dockyard"') == (status == 401)
    assert "retry-after" not in response.headers


async def _management_answer(exc: Exception) -> httpx.Response:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/raise")
    def raise_it() -> None:
        raise exc

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        return await client.get("/raise")
