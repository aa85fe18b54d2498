"""Scanning with an external scanner: a Harbor pluggable scanner API v1.1 adapter (scans/scanners.py
registers them). For one artifact: mint a short-lived pull credential for its repository, POST a
ScanRequest to `{url}/api/v1/scan`, poll `{url}/api/v1/scan/{id}/report` (302 + Refresh-After while
it runs) within the scanner's `scan_timeout`, every request within its `request_timeout`, and read
the HarborVulnerabilityReport into findings (scans/harbor.py). Anything else (the adapter down, an
error status, a report that is not one) raises, so the scan is stored as failed with the reason,
never as "no vulnerabilities".

The adapter's connections go through the upstream address guard (`upstream.allowed_networks`), as an
endpoint's do.

**The pull credential.** With dockyard's own auth, a project robot `robot$PROJECT+scan-<random>` is
made for each scan with pull permission on the project only, expiring when the scan's time is up, and
a bearer token is issued for it naming only `repository:<name>:pull`: the adapter can pull that
repository and nothing else, and the robot is deleted when the scan ends (its tokens die with it: the
/v2 gate checks each token's principal still stands). Other auth modes send no authorization.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import httpx

from dockyard.audit.interfaces import ActorKind, AuditAction, AuditEvent, AuditRecorder, ResourceType
from dockyard.db.base import utcnow
from dockyard.errors import Category, DockyardError
from dockyard.scans import harbor
from dockyard.scans.scanners import ScannerConfig, Scanners
from dockyard.upstream.addresses import AddressGuard
from dockyard.upstream.interfaces import TLSOptions
from dockyard.upstream.transport import guarded_transport

if TYPE_CHECKING:
    from dockyard.auth.tokens import TokenService
    from dockyard.db.session import Database
    from dockyard.endpoints.secrets import SecretBox

log = logging.getLogger("dockyard.scans.adapters")
MAX_REPORT_BYTES = 64 << 20
MAX_SMALL_BYTES = 1 << 20
MAX_REFRESH = 60.0  # the longest wait between two polls, whatever Refresh-After says
MIN_REFRESH = 0.5
SCAN_ROBOT_PREFIX = "scan-"  # robot$<project>+scan-<random>: one per external scan (pull_authorization)


class ScannerUnavailable(DockyardError):
    """The external scanner did not answer as the spec says: unreachable, timed out, an error status."""

    category = Category.UNAVAILABLE
    message = "the external scanner failed"


class AdapterClient:
    """One adapter, spoken to with the pluggable scanner API v1.1. Close it after use."""

    def __init__(
        self, config: ScannerConfig, guard: AddressGuard, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self.config = config
        self.sleep = sleep
        headers = {"Authorization": config.authorization} if config.authorization else {}
        self.http = httpx.Client(
            base_url=config.url.rstrip("/") + "/api/v1",
            transport=guarded_transport(guard, TLSOptions(verify=config.verify_tls)),
            timeout=httpx.Timeout(config.request_timeout),
            follow_redirects=False,
            headers=headers,
            trust_env=False,
        )

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> AdapterClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, method: str, path: str, limit: int, **kwargs: Any) -> tuple[httpx.Response, bytes]:
        deadline = time.monotonic() + self.config.request_timeout
        try:
            with self.http.stream(method, path, **kwargs) as answer:
                body = bytearray()
                for chunk in answer.iter_bytes():
                    body += chunk
                    if len(body) > limit:
                        raise ScannerUnavailable(f"{method} {path}: the answer is larger than {limit} bytes")
                    if time.monotonic() > deadline:
                        raise ScannerUnavailable(f"{method} {path}: timed out")
                return answer, bytes(body)
        except httpx.HTTPError as exc:
            raise ScannerUnavailable(f"{method} {path}: {type(exc).__name__}: {exc}") from None
        except DockyardError as exc:  # the address guard refused it
            if isinstance(exc, ScannerUnavailable):
                raise
            raise ScannerUnavailable(f"{method} {path}: {exc.message}") from None

    @staticmethod
    def _json(answer: httpx.Response, body: bytes, what: str) -> Any:
        import json

        try:
            return json.loads(body)
        except ValueError:
            raise harbor.ReportInvalid(
                f"{what}: the answer (HTTP {answer.status_code}) is not JSON"
            ) from None

    @staticmethod
    def _failure(answer: httpx.Response, body: bytes, what: str) -> ScannerUnavailable:
        message = ""
        try:
            import json

            message = str(json.loads(body).get("error", {}).get("message", ""))[:500]
        except (ValueError, AttributeError):
            message = body[:200].decode(errors="replace")
        return ScannerUnavailable(f"{what}: HTTP {answer.status_code}" + (f": {message}" if message else ""))

    def metadata(self) -> dict[str, Any]:
        answer, body = self._request(
            "GET", "/metadata", MAX_SMALL_BYTES, headers={"Accept": harbor.METADATA_TYPE}
        )
        if answer.status_code != 200:
            raise self._failure(answer, body, "metadata")
        data = self._json(answer, body, "metadata")
        if not isinstance(data, dict) or not isinstance(data.get("scanner"), dict):
            raise harbor.ReportInvalid("metadata: not a ScannerAdapterMetadata (no scanner)")
        capabilities = data.get("capabilities")
        if not isinstance(capabilities, list):
            raise harbor.ReportInvalid("metadata: not a ScannerAdapterMetadata (no capabilities)")
        return data

    def submit(self, request: dict[str, Any]) -> str:
        import json

        answer, body = self._request(
            "POST",
            "/scan",
            MAX_SMALL_BYTES,
            content=json.dumps(request).encode(),
            headers={"Content-Type": harbor.SCAN_REQUEST_TYPE, "Accept": harbor.SCAN_RESPONSE_TYPE},
        )
        if answer.status_code != 202:
            raise self._failure(answer, body, "scan request")
        data = self._json(answer, body, "scan request")
        scan_id = data.get("id") if isinstance(data, dict) else None
        if not isinstance(scan_id, str) or not scan_id or len(scan_id) > 256 or "/" in scan_id:
            raise harbor.ReportInvalid("scan request: the answer names no scan id")
        return scan_id

    def wait_for_report(self, scan_id: str) -> Any:
        """Poll the report until it is there (200) or failed, within the scanner's scan_timeout."""
        deadline = time.monotonic() + self.config.scan_timeout
        while True:
            answer, body = self._request(
                "GET", f"/scan/{scan_id}/report", MAX_REPORT_BYTES, headers={"Accept": harbor.REPORT_TYPE}
            )
            if answer.status_code == 200:
                return self._json(answer, body, "report")
            if answer.status_code != 302:
                raise self._failure(answer, body, "report")
            wait = _refresh_after(answer.headers.get("Refresh-After"))
            if time.monotonic() + wait > deadline:
                raise ScannerUnavailable(f"no report within {self.config.scan_timeout:g} s")
            self.sleep(wait)


def _refresh_after(value: str | None) -> float:
    try:
        seconds = float(value) if value is not None else 1.0
    except ValueError:
        seconds = 1.0
    if seconds != seconds:  # NaN
        seconds = 1.0
    return min(MAX_REFRESH, max(MIN_REFRESH, seconds))


@dataclass
class Adapters:
    """What a scan job needs to use external scanners: the database, the box the secrets are sealed
    in, the address guard, this registry's URL (what an adapter pulls from, unless the scanner names
    another) and, with dockyard's own auth, the token service to mint pull tokens with."""

    db: Database
    box: Callable[[], SecretBox]
    guard: AddressGuard
    registry_url: str
    tokens: Callable[[float], TokenService] | None = None  # by the token's lifetime, seconds
    # After the scan's robot is deleted: every /v2 gate forgets what it remembered of its tokens.
    announce: Callable[[], None] | None = None
    audit: AuditRecorder | None = None  # the scan robots' creation and deletion

    def default_name(self) -> str:
        return Scanners(self.db).default_name()

    def run(self, name: str, repository: str) -> Callable[[str, str], list[dict[str, Any]]]:
        """What scans the artifact (digest, media type) of `repository` with scanner `name`."""

        def run(digest: str, media_type: str) -> list[dict[str, Any]]:
            config = Scanners(self.db, self.box(), self.guard).config(name)
            authorization, done = self.pull_authorization(repository, config.scan_timeout)
            try:
                request = {
                    "registry": {"url": config.registry_url or self.registry_url},
                    "artifact": {"repository": repository, "digest": digest, "mime_type": media_type},
                }
                if authorization:
                    request["registry"]["authorization"] = authorization
                with AdapterClient(config, self.guard) as client:
                    scan_id = client.submit(request)
                    log.info("scanner %s: %s@%s is scan %s", name, repository, digest, scan_id)
                    body = client.wait_for_report(scan_id)
            finally:
                done()
            artifact = body.get("artifact") if isinstance(body, dict) else None
            if isinstance(artifact, dict) and artifact.get("digest") not in (None, digest):
                raise harbor.ReportInvalid(
                    f"the report is of {str(artifact.get('digest'))[:100]}, not {digest}"
                )
            return harbor.findings_from_report(body, digest)

        return run

    def _record(self, action: AuditAction, robot: str, detail: dict[str, Any]) -> None:
        if self.audit is not None:
            self.audit.record(
                AuditEvent(
                    action, "scan", ActorKind.SYSTEM, resource_type=ResourceType.ROBOT, resource_name=robot,
                    detail=detail,
                )
            )

    def pull_authorization(self, repository: str, seconds: float) -> tuple[str | None, Callable[[], None]]:
        """`Bearer <token>` that pulls `repository` only, for `seconds`, and what ends it (deletes the
        robot it was issued to). (None, nothing) without dockyard's own auth."""
        if self.tokens is None:
            return None, lambda: None
        from dockyard.accounts.robots import RobotService
        from dockyard.auth.interfaces import Principal, PrincipalKind, Scope
        from dockyard.projects.rbac import project_of
        from dockyard.projects.robots import RobotAccessService

        project = project_of(repository)
        robots = RobotService(self.db)
        # Robots of scans whose job was killed before it could delete them: expired, so harmless, but
        # not left to pile up (a minute's grace past their expiry for a scan still finishing).
        for name in robots.delete_expired(SCAN_ROBOT_PREFIX, utcnow() - timedelta(minutes=1)):
            self._record(AuditAction.DELETE, name, {"by": "scan", "reason": "expired, left by a scan"})
        created = RobotAccessService(self.db, robots).create(
            f"{SCAN_ROBOT_PREFIX}{secrets.token_hex(6)}",
            project=project,
            permissions={project: ["pull"]},
            description=f"pulls {repository} for an external scanner; deleted after the scan",
            expires_at=utcnow() + timedelta(seconds=seconds + 60),
        )
        full_name = created.robot.name
        self._record(AuditAction.CREATE, full_name, {"by": "scan", "repository": repository, "pull": True})

        def done() -> None:
            with contextlib.suppress(DockyardError):  # gone already
                robots.delete(full_name)
                self._record(AuditAction.DELETE, full_name, {"by": "scan", "repository": repository})
            if self.announce is not None:
                try:
                    self.announce()
                except Exception:  # the robot is gone; its tokens are refused once remembered answers expire
                    log.exception("the change feed was not told of the scan robot's deletion")

        try:
            login = robots.login(full_name, created.secret)
            if login is None:
                raise ScannerUnavailable("the scan's pull robot cannot log in")
            robot, credential = login
            principal = Principal(PrincipalKind.ROBOT, robot.name, robot.id, credential=credential)
            scope = Scope("repository", repository, frozenset({"pull"}))
            token = self.tokens(seconds).issue(principal, [scope])
        except Exception:
            done()
            raise
        return f"Bearer {token.token}", done
