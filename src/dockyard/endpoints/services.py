"""Registry endpoints: stored, changed, and spoken to.

Addresses are checked twice: when an endpoint is saved (its host must not resolve only to addresses the
server may not fetch from: an early, clear refusal), and at every connection by the upstream client
(the defence that counts: names can resolve differently later).
"""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from cryptography import x509
from sqlalchemy import Row, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from dockyard.db.base import utcnow
from dockyard.db.session import Database
from dockyard.endpoints.interfaces import (
    DOCKER_HUB_URL,
    MAX_CA_PEM,
    Endpoint,
    EndpointCredentials,
    EndpointExists,
    EndpointInUse,
    EndpointInvalid,
    EndpointKind,
    EndpointNotFound,
    TestResult,
    check_name,
)
from dockyard.endpoints.models import EndpointRow
from dockyard.endpoints.secrets import SecretBox
from dockyard.upstream.addresses import AddressGuard, check_url
from dockyard.upstream.interfaces import (
    Credentials,
    Timeouts,
    TLSOptions,
    UpstreamError,
    UpstreamUnavailable,
)

if TYPE_CHECKING:
    from dockyard.upstream.client import HttpRemoteRegistry

MAX_SECRET = 8192
DOCKER_HUB_HOSTS = {"docker.io", "index.docker.io", "hub.docker.com", "registry.hub.docker.com"}
DEFAULT_TIMEOUTS = Timeouts()
UNSET: Any = object()  # update(): leave the field as it is


class EndpointService:
    def __init__(
        self, db: Database, box: SecretBox, guard: AddressGuard, timeouts: Timeouts = DEFAULT_TIMEOUTS
    ) -> None:
        self.db = db
        self.box = box
        self.guard = guard
        self.timeouts = timeouts

    # --- reading -------------------------------------------------------------------------------
    def list(self) -> list[Endpoint]:
        with self.db.read() as connection:
            rows = connection.execute(select(EndpointRow.__table__).order_by(EndpointRow.name)).all()
        return [_public(row) for row in rows]

    def get(self, name: str) -> Endpoint:
        return _public(self._row(name))

    # --- changing ------------------------------------------------------------------------------
    def create(
        self,
        name: str,
        url: str,
        kind: EndpointKind,
        credentials: EndpointCredentials | None = None,
        ca_pem: str | None = None,
        verify_tls: bool = True,
    ) -> Endpoint:
        check_name(name)
        values = {
            "name": name,
            "url": self._checked_url(url, kind),
            "kind": kind.value,
            "ca_pem": _checked_ca(ca_pem),
            "verify_tls": verify_tls,
            **self._credential_columns(name, credentials),
        }
        now = utcnow()
        try:
            with self.db.write() as connection:
                connection.execute(insert(EndpointRow).values(**values, created_at=now, updated_at=now))
        except IntegrityError:
            raise EndpointExists(f"a registry endpoint named {name!r} exists") from None
        return self.get(name)

    def update(
        self,
        name: str,
        *,
        url: str = UNSET,
        kind: EndpointKind = UNSET,
        credentials: EndpointCredentials | None = UNSET,
        ca_pem: str | None = UNSET,
        verify_tls: bool = UNSET,
    ) -> Endpoint:
        """Change what is given; `credentials=None` removes them. The name cannot change (the sealed
        secret is bound to it)."""
        row = self._row(name)
        values: dict[str, Any] = {}
        new_kind = EndpointKind(row.kind) if kind is UNSET else kind
        if kind is not UNSET:
            values["kind"] = kind.value
        if url is not UNSET or kind is not UNSET:
            values["url"] = self._checked_url(row.url if url is UNSET else url, new_kind)
        if credentials is not UNSET:
            values.update(self._credential_columns(name, credentials))
        if ca_pem is not UNSET:
            values["ca_pem"] = _checked_ca(ca_pem)
        if verify_tls is not UNSET:
            values["verify_tls"] = verify_tls
        if values:
            with self.db.write() as connection:
                connection.execute(
                    update(EndpointRow).where(EndpointRow.id == row.id).values(**values, updated_at=utcnow())
                )
        return self.get(name)

    def delete(self, name: str) -> None:
        try:
            with self.db.write() as connection:
                deleted = connection.execute(delete(EndpointRow).where(EndpointRow.name == name)).rowcount
        except IntegrityError:  # a proxy project or a replication policy uses it (ON DELETE RESTRICT)
            raise EndpointInUse(
                f"registry endpoint {name!r} is used by a proxy project or a replication policy; change "
                "or delete that first"
            ) from None
        if not deleted:
            raise EndpointNotFound(f"no registry endpoint named {name!r}")

    # --- speaking to it ------------------------------------------------------------------------
    def remote(self, name: str) -> HttpRemoteRegistry:
        """A client for the endpoint, with its credentials opened (close it after use)."""
        row = self._row(name)
        credentials: Credentials | None = None
        if row.auth_kind in ("basic", "token"):
            secret = self.box.open(row.name, row.sealed_secret or "")
            if secret is None:
                raise EndpointInvalid(
                    f"the credentials of endpoint {name!r} cannot be opened on this node: they were "
                    "sealed under another http.secret; set them again"
                )
            credentials = Credentials(
                "basic" if row.auth_kind == "basic" else "token", row.username or "", secret
            )
        tls = TLSOptions(ca_pem=row.ca_pem, verify=row.verify_tls)
        # httpx (~5 MiB with what it loads) only where a remote registry is spoken to: every HTTP worker
        # loads this module with the management API, for any call to it.
        from dockyard.upstream.client import HttpRemoteRegistry

        return HttpRemoteRegistry(row.url, credentials, guard=self.guard, tls=tls, timeouts=self.timeouts)

    def test(self, name: str) -> TestResult:
        """`GET /v2/` with the endpoint's credentials: reachable, and do they work? Never raises for
        the upstream's failures: they are the result."""
        started = time.monotonic()
        try:
            remote = self.remote(name)
        except EndpointInvalid as error:  # credentials this node cannot open: the check's finding
            return TestResult(False, _ms_since(started), error=error.message)
        try:
            check = remote.check()
        except UpstreamError as error:
            return TestResult(False, _ms_since(started), error=error.message)
        finally:
            remote.close()
        return TestResult(True, _ms_since(started), api_version=check.api_version, auth=check.auth)

    # --- helpers -------------------------------------------------------------------------------
    def _row(self, name: str) -> Row[Any]:
        with self.db.read() as connection:
            query = select(EndpointRow.__table__).where(EndpointRow.name == name)
            row = connection.execute(query).one_or_none()
        if row is None:
            raise EndpointNotFound(f"no registry endpoint named {name!r}")
        return row

    def _checked_url(self, url: str, kind: EndpointKind) -> str:
        if kind is EndpointKind.DOCKER_HUB and (not url or urlsplit(url).hostname in DOCKER_HUB_HOSTS):
            url = DOCKER_HUB_URL  # the API lives at registry-1.docker.io, whatever people write
        checked = check_url(url)
        parts = urlsplit(checked)
        # Not resolvable now (UpstreamUnavailable) is accepted: it is checked again at every connection.
        with contextlib.suppress(UpstreamUnavailable):
            self.guard.resolve(parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80))
        return checked

    def _credential_columns(self, name: str, credentials: EndpointCredentials | None) -> dict[str, Any]:
        if credentials is None:
            return {"auth_kind": "none", "username": None, "sealed_secret": None}
        if not credentials.secret or len(credentials.secret) > MAX_SECRET:
            raise EndpointInvalid(f"the secret must have 1 to {MAX_SECRET} characters")
        if credentials.kind == "basic":
            username = credentials.username or ""
            if not username or len(username) > 255 or ":" in username or not username.isprintable():
                raise EndpointInvalid(
                    "basic credentials need a username (up to 255 printable characters, no ':')"
                )
        else:
            username = None
        if not credentials.secret.isprintable():
            raise EndpointInvalid("the secret must be printable text")
        return {
            "auth_kind": credentials.kind,
            "username": username,
            "sealed_secret": self.box.seal(name, credentials.secret),
        }


def _checked_ca(ca_pem: str | None) -> str | None:
    if not ca_pem:
        return None
    if len(ca_pem) > MAX_CA_PEM:
        raise EndpointInvalid(f"the CA bundle is larger than {MAX_CA_PEM} bytes")
    try:
        if not x509.load_pem_x509_certificates(ca_pem.encode()):
            raise ValueError("no certificate")
    except ValueError:
        raise EndpointInvalid("the CA bundle must be PEM certificates") from None
    return ca_pem


def _public(row: Row[Any]) -> Endpoint:
    return Endpoint(
        name=row.name,
        url=row.url,
        kind=EndpointKind(row.kind),
        auth=row.auth_kind,
        username=row.username,
        has_secret=row.sealed_secret is not None,
        ca_pem=row.ca_pem,
        verify_tls=row.verify_tls,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _ms_since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
