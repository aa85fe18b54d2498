"""dockyard's scanner behind the Harbor pluggable scanner API v1.1 (`scanner_api.enabled`), mounted at
/scanner/api/v1 on the main port: GET metadata, POST scan (202 with the request's id), GET
scan/{id}/report (302 with Refresh-After while the scan runs, 200 with the report, 500 with the error
when it failed, 404 for an id it never gave). Errors are the spec's `{"error": {"message": ...}}`.

A request is authenticated with the operator's bearer token or Basic credentials (`scanner_api.token`,
`username`/`password`), compared in constant time. A ScanRequest names the registry to pull from. This
registry itself (its `http.host`, the URL this request came in on, or the node's own URL): the artifact
is scanned from local storage by the ordinary `scan` job (built-in scanner), so the result is also
this registry's stored scan; the request's id is the job's id. A registry `scanner_api.allowed_registries`
lists: the upstream address guard checks its address now (and the upstream client at every
connection), and a `scan-remote` job (scans/remote.py) pulls the artifact with the request's
authorization, kept sealed in the job's params; its report is the job's result. Any other URL is
refused (422) without being contacted: the API cannot be used to make the server fetch URLs.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route, Router

from dockyard import __version__
from dockyard.errors import DockyardError
from dockyard.scans import harbor
from dockyard.upstream.addresses import check_url
from dockyard.upstream.interfaces import UpstreamInvalid

if TYPE_CHECKING:
    from dockyard.config.settings import ScannerAPISettings
    from dockyard.db.session import Database
    from dockyard.jobs.queue import JobQueue
    from dockyard.registry.services import Registry

log = logging.getLogger("dockyard.scanner_api")
MOUNT_PATH = "/scanner"
REFRESH_AFTER = 3  # seconds a poller waits before asking again for a report in progress
MAX_BODY = 64 * 1024


class ScannerAPI:
    def __init__(
        self,
        settings: ScannerAPISettings,
        db: Database,
        registry: Registry,
        jobs: JobQueue,
        local_urls: set[str],
        *,
        allowed_networks: list[str] | None = None,
        box: Callable[[], Any] | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.registry = registry
        self.jobs = jobs
        self.local_urls = {check_url(url) for url in local_urls if url}
        self.allowed = {check_url(url) for url in settings.allowed_registries}
        self.allowed_networks = allowed_networks or []
        self.box = box  # seals a remote request's authorization in the job's params

    def mount(self) -> Mount:
        routes = [
            Route("/api/v1/metadata", self._guarded(self.metadata), methods=["GET"]),
            Route("/api/v1/scan", self._guarded(self.scan), methods=["POST"]),
            Route("/api/v1/scan/{scan_id}/report", self._guarded(self.report), methods=["GET"]),
        ]
        return Mount(MOUNT_PATH, app=Router(routes, default=_not_found))

    # --- authentication ---------------------------------------------------------------------------
    def authenticated(self, header: str | None) -> bool:
        scheme, _, value = (header or "").partition(" ")
        value = value.strip()
        if scheme.lower() == "bearer" and self.settings.token:
            return hmac.compare_digest(value.encode(), self.settings.token.encode())
        if scheme.lower() == "basic" and self.settings.username and self.settings.password:
            try:
                user, _, password = base64.b64decode(value, validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return False
            same_user = hmac.compare_digest(user.encode(), self.settings.username.encode())
            return hmac.compare_digest(password.encode(), self.settings.password.encode()) and same_user
        return False

    def _guarded(
        self, handler: Callable[[Request], Awaitable[Response]]
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            if not self.authenticated(request.headers.get("authorization")):
                challenge = (
                    'Bearer realm="dockyard scanner"'
                    if self.settings.token
                    else 'Basic realm="dockyard scanner"'
                )
                return error(401, "authentication required", {"WWW-Authenticate": challenge})
            try:
                return await handler(request)
            except DockyardError as exc:
                log.warning("scanner API: %s", exc.message)
                return error(500, exc.message)

        return endpoint

    # --- the operations -------------------------------------------------------------------------
    async def metadata(self, request: Request) -> Response:
        from dockyard.vulndb.services import VulnDB

        status = await anyio.to_thread.run_sync(VulnDB(self.db).status)
        change = status.last_change or {}
        updated = change.get("finished_at")
        body = harbor.metadata(
            __version__, status.version, updated if isinstance(updated, datetime) else None
        )
        return JSONResponse(body, media_type=harbor.METADATA_TYPE)

    async def scan(self, request: Request) -> Response:
        raw = await _body(request)
        if raw is None:
            return error(400, f"the body must be a ScanRequest of at most {MAX_BODY} bytes")
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            return error(400, "the body is not JSON")
        try:
            scan_request = harbor.parse_scan_request(body)
        except harbor.ScanRequestMalformed as exc:
            return error(400, exc.message)
        except harbor.ScanRequestRefused as exc:
            return error(422, exc.message)
        refusal, remote = self._registry_refusal(scan_request.registry_url, request)
        if refusal is not None:
            log.warning(
                "scanner API: refused a scan request for %s: %s", scan_request.registry_url[:200], refusal
            )
            return error(422, refusal)
        if remote is not None:
            try:
                job_id = await anyio.to_thread.run_sync(self._request_remote_scan, scan_request, remote)
            except harbor.ScanRequestRefused as exc:
                return error(422, exc.message)
            return JSONResponse({"id": str(job_id)}, status_code=202, media_type=harbor.SCAN_RESPONSE_TYPE)
        try:
            job_id = await anyio.to_thread.run_sync(self._request_scan, scan_request)
        except DockyardError as exc:
            if exc.category.value == "not found":
                return error(
                    422, f"{scan_request.repository}@{scan_request.digest}: no such artifact in this registry"
                )
            raise
        return JSONResponse({"id": str(job_id)}, status_code=202, media_type=harbor.SCAN_RESPONSE_TYPE)

    async def report(self, request: Request) -> Response:
        accept = request.headers.get("accept", "")
        wanted = [t for t in harbor.REPORT_TYPES if _accepts(accept, t)]
        if accept and "*/*" not in accept and not wanted:
            return error(400, f"this scanner produces {harbor.REPORT_TYPE} (or {harbor.REPORT_TYPE_1_0})")
        media_type = wanted[0] if wanted else harbor.REPORT_TYPE
        scan_id = request.path_params["scan_id"]
        if not scan_id.isdigit() or len(scan_id) > 18:
            return error(404, "no such scan request")
        return await anyio.to_thread.run_sync(self._report, int(scan_id), media_type)

    # --- helpers --------------------------------------------------------------------------------
    def _registry_refusal(self, url: str, request: Request) -> tuple[str | None, str | None]:
        """(why the registry URL is not accepted, None) or (None, the URL of an allowed other registry),
        or (None, None): it is this registry."""
        try:
            checked = check_url(url)
        except UpstreamInvalid as exc:
            return f"registry.url: {exc.message}", None
        here = {*self.local_urls}
        host = request.headers.get("host")
        if host:
            with contextlib.suppress(UpstreamInvalid):
                here.add(check_url(f"{request.url.scheme}://{host}"))
        if checked in here:
            return None, None
        if checked in self.allowed:
            return self._guard_refusal(checked), checked
        return (
            f"registry.url {checked[:200]} is not this registry, nor one scanner_api.allowed_registries "
            "names: this scanner does not pull from it",
            None,
        )

    def _guard_refusal(self, url: str) -> str | None:
        """The upstream address guard's refusal of an allowed registry's address, now (it checks again
        at every connection the scan makes)."""
        from urllib.parse import urlsplit

        from dockyard.upstream.addresses import AddressGuard
        from dockyard.upstream.interfaces import UpstreamUnavailable

        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            AddressGuard(self.allowed_networks).resolve(parts.hostname or "", port)
        except UpstreamInvalid as exc:
            return f"registry.url: {exc.message}"
        except UpstreamUnavailable:
            return None  # not resolvable now: the scan fails then, with the reason
        return None

    def _request_remote_scan(self, scan_request: harbor.ScanRequest, url: str) -> int:
        import secrets

        from dockyard.scans.remote import KIND, credentials_of

        credentials_of(scan_request.authorization)  # refuses a scheme it could not use, now
        params: dict[str, Any] = {"registry": url, **scan_request.artifact()}
        if scan_request.authorization:
            if self.box is None:
                raise harbor.ScanRequestRefused("this server cannot keep the request's authorization")
            name = f"scan-remote:{secrets.token_hex(8)}"
            params.update(seal_name=name, sealed=self.box().seal(name, scan_request.authorization))
        return self.jobs.enqueue(KIND, params)

    def _request_scan(self, scan_request: harbor.ScanRequest) -> int:
        from dockyard.scans.services import Scans

        digest = self.registry.get_manifest(scan_request.repository, scan_request.digest).digest
        return Scans(self.db, jobs=self.jobs).request(scan_request.repository, digest, scanner="built-in")

    def _report(self, scan_id: int, media_type: str) -> Response:
        from dockyard.jobs.interfaces import JobNotFound
        from dockyard.scans.interfaces import ScanNotFound
        from dockyard.scans.services import Scans

        try:
            job = self.jobs.get(scan_id)
        except JobNotFound:
            return error(404, "no such scan request")
        params = job.params
        repository, digest = params.get("repository"), params.get("digest")
        if job.kind == "scan-remote":
            if not job.finished:
                return _in_progress()
            if job.status != "succeeded" or not isinstance((job.result or {}).get("report"), dict):
                return error(500, f"the scan {job.status}: {job.error or 'no report'}")
            return Response(json.dumps(dict(job.result or {})["report"], default=str), media_type=media_type)
        if job.kind != "scan" or not isinstance(repository, str) or not isinstance(digest, str):
            return error(404, "no such scan request")
        if not job.finished:
            return _in_progress()
        if job.status != "succeeded":
            return error(500, f"the scan {job.status}: {job.error or 'no reason given'}")
        try:
            report = Scans(self.db).report(repository, digest)
        except (ScanNotFound, DockyardError):  # the repository was deleted since
            return error(500, f"{repository}@{digest}: the scan result is gone")
        if report.summary.status in ("pending", "running") and report.job_id != scan_id:
            if report.summary.scanned_at is None:
                return _in_progress()
        elif report.summary.status == "failed":
            return error(500, f"the scan failed: {report.summary.reason}")
        artifact = {"repository": repository, "digest": digest}
        body = harbor.harbor_report(report, artifact, __version__, datetime.now(UTC))
        return Response(json.dumps(body, default=str), media_type=media_type)


def error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    """The spec's ErrorResponse."""
    return JSONResponse(
        {"error": {"message": message}}, status_code=status, media_type=harbor.ERROR_TYPE, headers=headers
    )


def _in_progress() -> Response:
    return Response(status_code=302, headers={"Refresh-After": str(REFRESH_AFTER)})


def _accepts(accept: str, media_type: str) -> bool:
    wanted = media_type.replace(" ", "").lower()
    return any(part.replace(" ", "").lower().startswith(wanted) for part in accept.split(","))


async def _body(request: Request) -> bytes | None:
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def _not_found(scope: Any, receive: Any, send: Any) -> None:
    await error(404, "not found")(scope, receive, send)
