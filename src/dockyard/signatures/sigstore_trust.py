"""What keyless (Sigstore) signatures are verified against: trusted roots (`trusted_root.json`, per
project or system-wide) and a project's identity policies (certificate SAN + OIDC issuer).

Every change bumps the key-set version of the projects it concerns (a system-wide root: every project
that has a key set), so verdicts made before are not read again, and calls `on_change` after its commit
(Topic.VERDICTS: the pull gates decide again)."""

from __future__ import annotations

import re
from collections.abc import Callable

from sqlalchemy import ColumnElement, Connection, delete, insert, select, update

from dockyard.db.base import utcnow
from dockyard.db.session import Database
from dockyard.projects.services import project_id
from dockyard.signatures.interfaces import (
    Identity,
    InvalidSigstoreTrust,
    SigstoreRoot,
    SigstoreTrustNotFound,
)
from dockyard.signatures.keys import _bump, validate_key_name
from dockyard.signatures.models import SigstoreIdentityRow, SigstoreTrustRootRow, TrustKeySetRow
from dockyard.signatures.sigstore_root import InvalidRoot, parse_trust_root

MAX_ROOTS = 10  # per project, and system-wide
MAX_IDENTITIES = 50  # per project
MAX_FIELD = 1024  # an issuer URL, a SAN, a regular expression


class SigstoreTrust:
    def __init__(self, db: Database, on_change: Callable[[], None] | None = None) -> None:
        self._db = db
        self._on_change = on_change

    # --- trusted roots ----------------------------------------------------------------------------
    def roots(self, project: str | None) -> list[SigstoreRoot]:
        """The project's trusted roots (None: the system-wide ones)."""
        with self._db.read() as connection:
            owner = project_id(connection, project) if project is not None else None
            return _roots(connection, owner, project)

    def root(self, project: str | None, name: str) -> SigstoreRoot:
        for root in self.roots(project):
            if root.name == name:
                return root
        raise SigstoreTrustNotFound(
            f"no Sigstore trust root {name!r}", detail={"project": project, "name": name}
        )

    def put_root(self, project: str | None, name: str, document: str, by: str) -> SigstoreRoot:
        """Import (or replace) the trusted root `name`; raises InvalidSigstoreTrust."""
        validate_key_name(name)
        try:
            parse_trust_root(document)
        except InvalidRoot as exc:
            raise InvalidSigstoreTrust(f"not a usable trusted_root.json: {exc}") from None
        with self._db.write() as connection:
            owner = project_id(connection, project) if project is not None else None
            where = _scope(owner)
            values = {"document": document, "created_by": by, "created_at": utcnow()}
            replaced = connection.execute(
                update(SigstoreTrustRootRow).where(where, SigstoreTrustRootRow.name == name).values(values)
            ).rowcount
            if not replaced:
                count = len(_roots(connection, owner, project))
                if count >= MAX_ROOTS:
                    raise InvalidSigstoreTrust(f"already {count} Sigstore trust roots (the limit)")
                connection.execute(insert(SigstoreTrustRootRow).values(project_id=owner, name=name, **values))
            _bump_scope(connection, owner)
        self._changed()
        return self.root(project, name)

    def delete_root(self, project: str | None, name: str) -> None:
        with self._db.write() as connection:
            owner = project_id(connection, project) if project is not None else None
            where = _scope(owner)
            if not connection.execute(
                delete(SigstoreTrustRootRow).where(where, SigstoreTrustRootRow.name == name)
            ).rowcount:
                raise SigstoreTrustNotFound(
                    f"no Sigstore trust root {name!r}", detail={"project": project, "name": name}
                )
            _bump_scope(connection, owner)
        self._changed()

    # --- identity policies ------------------------------------------------------------------------
    def identities(self, project: str) -> list[Identity]:
        with self._db.read() as connection:
            return _identities(connection, project_id(connection, project))

    def add_identity(
        self, project: str, name: str, issuer: str, san: str | None, san_regex: str | None, by: str
    ) -> Identity:
        """Trust keyless signatures whose certificate has this issuer and a SAN equal to `san` (or
        matching `san_regex` as a whole); raises InvalidSigstoreTrust."""
        identity = validate_identity(Identity(name, issuer, san, san_regex))
        with self._db.write() as connection:
            owner = project_id(connection, project)
            known = _identities(connection, owner)
            if any(i.name == name for i in known):
                raise InvalidSigstoreTrust(f"the project already has an identity {name!r}")
            if len(known) >= MAX_IDENTITIES:
                raise InvalidSigstoreTrust(f"already {len(known)} identities (the limit)")
            connection.execute(
                insert(SigstoreIdentityRow).values(
                    project_id=owner,
                    name=name,
                    issuer=issuer,
                    san=san,
                    san_regex=san_regex,
                    created_by=by,
                    created_at=utcnow(),
                )
            )
            _bump(connection, owner)
        self._changed()
        return identity

    def delete_identity(self, project: str, name: str) -> None:
        with self._db.write() as connection:
            owner = project_id(connection, project)
            if not connection.execute(
                delete(SigstoreIdentityRow).where(
                    SigstoreIdentityRow.project_id == owner, SigstoreIdentityRow.name == name
                )
            ).rowcount:
                raise SigstoreTrustNotFound(
                    f"no identity {name!r}", detail={"project": project, "name": name}
                )
            _bump(connection, owner)
        self._changed()

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change()


def validate_identity(identity: Identity) -> Identity:
    validate_key_name(identity.name)
    if not identity.issuer or len(identity.issuer) > MAX_FIELD:
        raise InvalidSigstoreTrust("issuer: the OIDC issuer (1 to 1024 characters) is required")
    if (identity.san is None) == (identity.san_regex is None):
        raise InvalidSigstoreTrust("give exactly one of san (exact) and san_regex")
    value = identity.san if identity.san is not None else identity.san_regex
    if not value or len(value) > MAX_FIELD:
        raise InvalidSigstoreTrust("a SAN or regular expression is 1 to 1024 characters")
    if identity.san_regex is not None:
        try:
            re.compile(identity.san_regex)
        except re.error as exc:
            raise InvalidSigstoreTrust(f"san_regex is not a regular expression: {exc}") from None
    return identity


def load_for_keyset(
    connection: Connection, owner: int, project: str
) -> tuple[tuple[SigstoreRoot, ...], tuple[Identity, ...]]:
    """The project's roots then the system-wide ones, and its identities (for KeySet)."""
    return (
        tuple(_roots(connection, owner, project) + _roots(connection, None, None)),
        tuple(_identities(connection, owner)),
    )


def _roots(connection: Connection, owner: int | None, project: str | None) -> list[SigstoreRoot]:
    rows = connection.execute(
        select(SigstoreTrustRootRow.__table__).where(_scope(owner)).order_by(SigstoreTrustRootRow.name)
    )
    return [SigstoreRoot(r.name, project, r.document, r.created_by, r.created_at) for r in rows]


def _scope(owner: int | None) -> ColumnElement[bool]:
    if owner is None:
        return SigstoreTrustRootRow.project_id.is_(None)
    return SigstoreTrustRootRow.project_id == owner


def _identities(connection: Connection, owner: int) -> list[Identity]:
    rows = connection.execute(
        select(SigstoreIdentityRow.__table__)
        .where(SigstoreIdentityRow.project_id == owner)
        .order_by(SigstoreIdentityRow.name)
    )
    return [Identity(r.name, r.issuer, r.san, r.san_regex) for r in rows]


def _bump_scope(connection: Connection, owner: int | None) -> None:
    """A project's root changed: its key set; a system-wide one: every project's key set (a project
    without one has no identity, so no keyless verdict to make stale)."""
    if owner is not None:
        _bump(connection, owner)
    else:
        connection.execute(update(TrustKeySetRow).values(version=TrustKeySetRow.version + 1))
