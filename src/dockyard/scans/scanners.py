"""External scanners: Harbor pluggable scanner API adapters an operator registers (Trivy's adapter,
another dockyard's /scanner), and which scanner `scan` jobs use by default (one of them, or none: the
built-in scanner).

Stored like registry endpoints: the secret (a bearer token, or a Basic password) sealed at rest under
a key that is not in the database (endpoints.secrets), never returned. The adapter URL is checked
with the upstream address guard when saved (an early, clear refusal) and at every connection
(scans/adapters.py), so a registration cannot make the server reach its own network unless
`upstream.allowed_networks` allows it.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from sqlalchemy import Row, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from dockyard.db.base import utcnow
from dockyard.db.session import Database
from dockyard.errors import Category, DockyardError
from dockyard.scans.interfaces import BUILT_IN
from dockyard.scans.models import ScannerRow
from dockyard.upstream.addresses import AddressGuard, check_url
from dockyard.upstream.interfaces import UpstreamInvalid, UpstreamUnavailable

if TYPE_CHECKING:
    from dockyard.endpoints.secrets import SecretBox

NAME_PATTERN = r"^[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?$"
_NAME = re.compile(NAME_PATTERN)
MAX_SECRET = 8192
SEAL_PREFIX = "scanner:"  # the sealed secret's associated data: another table's secret does not open here


class ScannerNotFound(DockyardError):
    category = Category.NOT_FOUND
    message = "no such scanner"


class ScannerExists(DockyardError):
    category = Category.CONFLICT
    message = "a scanner of that name exists"


class ScannerInvalid(DockyardError):
    category = Category.INVALID
    message = "invalid scanner"


@dataclass(frozen=True)
class Scanner:
    """A registered scanner as anyone may see it: never its secret."""

    name: str
    url: str
    auth: Literal["none", "basic", "token"]
    username: str | None
    has_secret: bool
    registry_url: str | None
    verify_tls: bool
    request_timeout: float
    scan_timeout: float
    is_default: bool
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class ScannerConfig:
    """What a scan job needs to call the adapter: its URL and the Authorization header to send."""

    name: str
    url: str
    authorization: str | None
    registry_url: str | None
    verify_tls: bool
    request_timeout: float
    scan_timeout: float


class Scanners:
    def __init__(self, db: Database, box: SecretBox | None = None, guard: AddressGuard | None = None) -> None:
        self.db = db
        self.box = box
        self.guard = guard or AddressGuard()

    # --- reading --------------------------------------------------------------------------------
    def list(self) -> list[Scanner]:
        with self.db.read() as conn:
            rows = conn.execute(select(ScannerRow.__table__).order_by(ScannerRow.name)).all()
        return [_public(row) for row in rows]

    def get(self, name: str) -> Scanner:
        return _public(self._row(name))

    def default_name(self) -> str:
        """The default scanner's name, or BUILT_IN."""
        with self.db.read() as conn:
            name = conn.execute(select(ScannerRow.name).where(ScannerRow.is_default.is_(True))).scalar()
        return str(name) if name else BUILT_IN

    def config(self, name: str) -> ScannerConfig:
        """The scanner with its secret opened, to call it."""
        row = self._row(name)
        authorization = None
        if row.auth_kind in ("basic", "token"):
            if self.box is None:
                raise ScannerInvalid("scanner secrets cannot be opened here")
            secret = self.box.open(SEAL_PREFIX + row.name, row.sealed_secret or "")
            if secret is None:
                raise ScannerInvalid(
                    f"the credentials of scanner {name!r} cannot be opened on this node: they were sealed "
                    "under another http.secret; set them again"
                )
            if row.auth_kind == "token":
                authorization = f"Bearer {secret}"
            else:
                import base64

                authorization = "Basic " + base64.b64encode(f"{row.username}:{secret}".encode()).decode()
        return ScannerConfig(
            row.name,
            row.url,
            authorization,
            row.registry_url,
            row.verify_tls,
            row.request_timeout,
            row.scan_timeout,
        )

    # --- changing -------------------------------------------------------------------------------
    def create(
        self,
        name: str,
        url: str,
        *,
        auth: Literal["none", "basic", "token"] = "none",
        username: str | None = None,
        secret: str | None = None,
        registry_url: str | None = None,
        verify_tls: bool = True,
        request_timeout: float = 30.0,
        scan_timeout: float = 600.0,
        default: bool = False,
    ) -> Scanner:
        if not _NAME.fullmatch(name or "") or name == BUILT_IN:
            raise ScannerInvalid(
                f"invalid scanner name {name!r}: 1-64 of a-z, 0-9, '.', '_', '-', starting and ending with a "
                f"letter or digit, not {BUILT_IN!r}"
            )
        if not 1 <= request_timeout <= 300 or not 5 <= scan_timeout <= 7200:
            raise ScannerInvalid("request_timeout: 1 to 300 seconds; scan_timeout: 5 to 7200 seconds")
        values: dict[str, Any] = {
            "name": name,
            "url": self._checked_url(url),
            "registry_url": _registry_url(registry_url),
            "verify_tls": verify_tls,
            "request_timeout": float(request_timeout),
            "scan_timeout": float(scan_timeout),
            "is_default": False,
            **self._credential_columns(name, auth, username, secret),
        }
        now = utcnow()
        try:
            with self.db.write() as conn:
                conn.execute(insert(ScannerRow).values(**values, created_at=now, updated_at=now))
        except IntegrityError:
            raise ScannerExists(f"a scanner named {name!r} exists") from None
        if default:
            self.set_default(name)
        return self.get(name)

    def delete(self, name: str) -> None:
        with self.db.write() as conn:
            deleted = conn.execute(delete(ScannerRow).where(ScannerRow.name == name)).rowcount
        if not deleted:
            raise ScannerNotFound(f"no scanner named {name!r}")

    def set_default(self, name: str) -> str:
        """Make `name` the default (BUILT_IN: the built-in scanner); the default's name."""
        with self.db.write() as conn:
            if name != BUILT_IN:
                found = conn.execute(select(ScannerRow.id).where(ScannerRow.name == name)).scalar()
                if found is None:
                    raise ScannerNotFound(f"no scanner named {name!r}")
            conn.execute(update(ScannerRow).values(is_default=False).where(ScannerRow.is_default.is_(True)))
            if name != BUILT_IN:
                conn.execute(
                    update(ScannerRow)
                    .where(ScannerRow.name == name)
                    .values(is_default=True, updated_at=utcnow())
                )
        return name

    # --- helpers --------------------------------------------------------------------------------
    def _row(self, name: str) -> Row[Any]:
        with self.db.read() as conn:
            row = conn.execute(select(ScannerRow.__table__).where(ScannerRow.name == name)).one_or_none()
        if row is None:
            raise ScannerNotFound(f"no scanner named {name!r}")
        return row

    def _checked_url(self, url: str) -> str:
        try:
            checked = check_url(url)
        except UpstreamInvalid as exc:
            raise ScannerInvalid(f"url: {exc.message}") from None
        parts = urlsplit(checked)
        with contextlib.suppress(UpstreamUnavailable):  # not resolvable now: checked at every connection
            try:
                self.guard.resolve(
                    parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
                )
            except UpstreamInvalid as exc:
                raise ScannerInvalid(f"url: {exc.message}") from None
        return checked

    def _credential_columns(
        self, name: str, auth: str, username: str | None, secret: str | None
    ) -> dict[str, Any]:
        if auth == "none":
            return {"auth_kind": "none", "username": None, "sealed_secret": None}
        if auth not in ("basic", "token"):
            raise ScannerInvalid("auth: none, basic or token")
        if not secret or len(secret) > MAX_SECRET or not secret.isprintable():
            raise ScannerInvalid(f"the secret must be 1 to {MAX_SECRET} printable characters")
        if auth == "basic" and (
            not username or ":" in username or len(username) > 255 or not username.isprintable()
        ):
            raise ScannerInvalid("basic credentials need a username (up to 255 printable characters, no ':')")
        if self.box is None:
            raise ScannerInvalid("scanner secrets cannot be sealed here")
        return {
            "auth_kind": auth,
            "username": username if auth == "basic" else None,
            "sealed_secret": self.box.seal(SEAL_PREFIX + name, secret),
        }


def _registry_url(url: str | None) -> str | None:
    if not url:
        return None
    try:
        return check_url(url)
    except UpstreamInvalid as exc:
        raise ScannerInvalid(f"registry_url: {exc.message}") from None


def _public(row: Row[Any]) -> Scanner:
    return Scanner(
        name=row.name,
        url=row.url,
        auth=row.auth_kind,
        username=row.username,
        has_secret=row.sealed_secret is not None,
        registry_url=row.registry_url,
        verify_tls=row.verify_tls,
        request_timeout=row.request_timeout,
        scan_timeout=row.scan_timeout,
        is_default=row.is_default,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )
