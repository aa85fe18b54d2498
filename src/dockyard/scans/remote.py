"""Scanning an artifact of another registry, for the scanner API (`scanner_api.allowed_registries`):
the "scan-remote" job kind. The manifest and layers are read from the registry the ScanRequest names,
through the upstream client (its address guard, timeouts and token handshake), with the authorization
the request carried (sealed in the job's params under the key endpoints' secrets use; opened only
here), streamed through the same inventory and matching as a local scan, and the report is the job's
result (nothing is stored as a scan: the artifact is not in this registry). A layer is read as it
streams, never written to disk; the inventory's limits bound what it costs.

params: `registry` (URL), `repository`, `digest`, `tag`, `mime_type`, `sealed` (the authorization
header, sealed; absent: anonymous), `seal_name` (the associated data it was sealed under).
"""

from __future__ import annotations

import base64
import binascii
import io
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, BinaryIO

from dockyard import __version__
from dockyard.errors import DockyardError, PathNotFound
from dockyard.jobs.interfaces import JobContext, JobKind
from dockyard.registry.interfaces import ManifestRecord
from dockyard.scans import harbor
from dockyard.scans.interfaces import SEVERITIES, ScanReport, ScanSummary, StoredFinding

if TYPE_CHECKING:
    from dockyard.db.session import Database
    from dockyard.endpoints.secrets import SecretBox
    from dockyard.upstream.addresses import AddressGuard
    from dockyard.upstream.interfaces import BlobStream, Credentials, RemoteRegistry, Timeouts

KIND = "scan-remote"


def credentials_of(authorization: str | None) -> Credentials | None:
    """The ScanRequest's Authorization header as upstream credentials: `Basic` user and password, or
    `Bearer` token; None for none. A header of another scheme is refused."""
    from dockyard.upstream.interfaces import Credentials

    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and value:
        return Credentials("token", "", value)
    if scheme.lower() == "basic":
        try:
            user, sep, password = base64.b64decode(value, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise harbor.ScanRequestRefused(
                "registry.authorization: Basic credentials that do not decode"
            ) from None
        if sep:
            return Credentials("basic", user, password)
    raise harbor.ScanRequestRefused("registry.authorization: Basic or Bearer credentials only")


class _Manifests:
    def __init__(self, remote: RemoteRegistry) -> None:
        self.remote = remote

    def get_manifest(self, name: str, reference: str) -> ManifestRecord:
        manifest = self.remote.get_manifest(name, reference)
        return ManifestRecord(manifest.digest, manifest.media_type, manifest.data)


class _StreamReader(io.RawIOBase):
    """A blob download as a readable file (the walker reads layers as streams)."""

    def __init__(self, stream: BlobStream) -> None:
        self.stream = stream
        self.chunks: Iterator[bytes] = stream.chunks()
        self.rest = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self.rest:
            try:
                self.rest = next(self.chunks)
            except StopIteration:
                return 0
        size = min(len(buffer), len(self.rest))
        buffer[:size] = self.rest[:size]
        self.rest = self.rest[size:]
        return size

    def close(self) -> None:
        if not self.closed:
            self.stream.close()
        super().close()


class _Blobs:
    def __init__(self, remote: RemoteRegistry, repository: str) -> None:
        self.remote = remote
        self.repository = repository

    def open(self, digest: str, offset: int = 0) -> BinaryIO:
        from dockyard.upstream.interfaces import UpstreamNotFound

        try:
            stream = self.remote.open_blob(self.repository, digest, offset)
        except UpstreamNotFound:
            raise PathNotFound(digest) from None
        return io.BufferedReader(_StreamReader(stream), 1 << 20)


def remote_report(db: Database, remote: RemoteRegistry, params: dict[str, Any]) -> dict[str, Any]:
    """Scan the artifact on the remote registry; the HarborVulnerabilityReport. Raises on failure."""
    from dockyard.scanning.interfaces import NotAnImage
    from dockyard.scanning.services import Inventory
    from dockyard.scans.services import _unreadable_layers
    from dockyard.vulndb.services import VulnDB

    repository, digest = params["repository"], params["digest"]
    try:
        inventory = Inventory(_Manifests(remote), _Blobs(remote, repository)).inventory(repository, digest)
    except NotAnImage as exc:
        raise DockyardError(f"not a container image: {exc.message}") from None
    failure = _unreadable_layers(inventory)
    if failure is not None:
        raise DockyardError(failure)
    vulndb = VulnDB(db)
    findings = []
    for image in inventory.images:
        for finding in vulndb.match(image.packages, None, include_allowlisted=True):
            package = finding.package
            findings.append(
                StoredFinding(
                    image=image.manifest,
                    platform=image.platform[:64],
                    advisory_id=finding.advisory_id,
                    aliases=finding.aliases,
                    summary=finding.summary,
                    severity=finding.severity,
                    cvss_score=finding.cvss_score,
                    cvss_vector=finding.cvss_vector,
                    ecosystem=finding.ecosystem,
                    package=finding.name,
                    installed_version=finding.installed_version,
                    fixed_versions=finding.fixed_versions,
                    layer=package.layer,
                    path=package.path,
                    purl=package.purl,
                    allowlisted=finding.allowlisted,
                )
            )
    findings.sort(key=lambda f: (SEVERITIES.index(f.severity), f.package, f.advisory_id))
    now = datetime.now(UTC)
    summary = ScanSummary("done", None, 0, vulndb.status().version, now, "")
    report = ScanReport(repository, digest, summary, now, now, now, None, None, [], findings)
    artifact = {"repository": repository, "digest": digest}
    for key in ("tag", "mime_type"):
        if params.get(key):
            artifact[key] = params[key]
    return harbor.harbor_report(report, artifact, __version__, now)


def scan_remote_kind(
    db: Database, box: Callable[[], SecretBox], guard: AddressGuard, timeouts: Timeouts
) -> JobKind:
    from datetime import timedelta

    def scan_remote(ctx: JobContext) -> dict[str, Any]:
        from dockyard.upstream.client import HttpRemoteRegistry

        params = dict(ctx.params)
        authorization = None
        if params.get("sealed"):
            authorization = box().open(str(params.get("seal_name")), str(params["sealed"]))
            if authorization is None:
                raise DockyardError("the request's authorization cannot be opened on this node (http.secret)")
        remote = HttpRemoteRegistry(
            params["registry"], credentials_of(authorization), guard=guard, timeouts=timeouts
        )
        try:
            ctx.log(f"scanning {params['registry']}/{params['repository']}@{params['digest']}")
            return {"report": remote_report(db, remote, params)}
        finally:
            remote.close()

    return JobKind(KIND, scan_remote, concurrency=2, timeout=timedelta(hours=1), max_attempts=1)
