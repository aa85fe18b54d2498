"""A project's trusted public keys and certificates, its notation trust policy, and the key-set
version every change of either bumps (signature verdicts made against an older version are stale)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from dockyard.db.base import utcnow
from dockyard.db.session import Database
from dockyard.projects.services import project_id
from dockyard.signatures.crypto import CERTIFICATE, parse_public_key
from dockyard.signatures.interfaces import (
    InvalidTrustedKey,
    KeySet,
    TrustedKey,
    TrustedKeyExists,
    TrustedKeyNotFound,
    TrustPolicyNotFound,
)
from dockyard.signatures.models import NotationTrustPolicyRow, TrustedKeyRow, TrustKeySetRow
from dockyard.signatures.trust_policy import parse_trust_policy

MAX_KEYS_PER_PROJECT = 50
NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-@")


def validate_key_name(name: str) -> str:
    if not 1 <= len(name) <= 128 or not set(name) <= NAME_CHARS:
        raise InvalidTrustedKey(
            "a key name is 1 to 128 letters, digits, '.', '_', '-' or '@'", detail={"name": name}
        )
    return name


class TrustedKeys:
    """A project's trusted public keys; every change bumps the project's key-set version and calls
    `on_change` after its commit (the pull policies' cached decisions go: Topic.VERDICTS)."""

    def __init__(self, db: Database, on_change: Callable[[], None] | None = None) -> None:
        self._db = db
        self._on_change = on_change

    def keyset(self, project: str) -> KeySet:
        with self._db.read() as connection:
            owner = project_id(connection, project)
            # The version first: on PostgreSQL each statement of a read sees what has committed by
            # then, so a key deleted between two reads would otherwise leave the old keys stamped
            # with the new version, and a verdict made with them would count. Read first, a version
            # can only be older than the keys read after it: such a verdict does not count.
            version = _version(connection, owner)
            policy = connection.execute(
                select(NotationTrustPolicyRow.document).where(NotationTrustPolicyRow.project_id == owner)
            ).scalar()
            keys = self._keys(connection, owner, project)
            # sigstore_trust imports this module (the version bump): imported here, not at the top.
            from dockyard.signatures.sigstore_trust import load_for_keyset

            roots, identities = load_for_keyset(connection, owner, project)
            return KeySet(project, version, keys, policy, roots, identities)

    def list(self, project: str) -> list[TrustedKey]:
        return list(self.keyset(project).keys)

    def get(self, project: str, name: str) -> TrustedKey:
        for key in self.list(project):
            if key.name == name:
                return key
        raise TrustedKeyNotFound(detail={"project": project, "name": name})

    def add(
        self, project: str, name: str, pem: str, created_by: str, trust_store: str | None = None
    ) -> TrustedKey:
        """Trust a public key, or a certificate (in the named notation trust store `trust_store`,
        by default the store of its own name)."""
        validate_key_name(name)
        parsed = parse_public_key(pem)
        if trust_store is not None:
            validate_key_name(trust_store)
            if parsed.algorithm != CERTIFICATE:
                raise InvalidTrustedKey("only a certificate goes in a notation trust store")
        try:
            with self._db.write() as connection:
                owner = project_id(connection, project)
                keys = self._keys(connection, owner, project)
                if any(key.name == name for key in keys):
                    raise TrustedKeyExists(detail={"project": project, "name": name})
                if len(keys) >= MAX_KEYS_PER_PROJECT:
                    raise InvalidTrustedKey(
                        f"project {project} already has {len(keys)} trusted keys (the limit)"
                    )
                for key in keys:
                    if key.fingerprint == parsed.fingerprint:
                        raise TrustedKeyExists(
                            f"the project trusts this key already, as {key.name!r}",
                            detail={"project": project, "name": key.name},
                        )
                connection.execute(
                    insert(TrustedKeyRow).values(
                        project_id=owner,
                        name=name,
                        algorithm=parsed.algorithm,
                        public_key=parsed.pem,
                        fingerprint=parsed.fingerprint.removeprefix("sha256:"),
                        trust_store=trust_store,
                        created_by=created_by,
                        created_at=utcnow(),
                    )
                )
                _bump(connection, owner)
        except IntegrityError:  # the same name added at the same moment
            raise TrustedKeyExists(detail={"project": project, "name": name}) from None
        self._changed()
        return self.get(project, name)

    def delete(self, project: str, name: str) -> None:
        with self._db.write() as connection:
            owner = project_id(connection, project)
            gone = connection.execute(
                delete(TrustedKeyRow).where(TrustedKeyRow.project_id == owner, TrustedKeyRow.name == name)
            ).rowcount
            if not gone:
                raise TrustedKeyNotFound(detail={"project": project, "name": name})
            _bump(connection, owner)
        self._changed()

    def trust_policy(self, project: str) -> str:
        """The project's notation trust policy document (JSON). Raises TrustPolicyNotFound."""
        document = self.keyset(project).trust_policy
        if document is None:
            raise TrustPolicyNotFound(detail={"project": project})
        return document

    def set_trust_policy(self, project: str, document: str | dict[str, Any], updated_by: str) -> str:
        """Validate and store the project's notation trust policy (replacing any); the key set's
        version changes, so verdicts are made again. Raises InvalidTrustPolicy."""
        parsed = parse_trust_policy(document)
        with self._db.write() as connection:
            owner = project_id(connection, project)
            values = {"document": parsed.text, "updated_by": updated_by, "updated_at": utcnow()}
            changed = connection.execute(
                update(NotationTrustPolicyRow)
                .where(NotationTrustPolicyRow.project_id == owner)
                .values(**values)
            ).rowcount
            if not changed:
                connection.execute(insert(NotationTrustPolicyRow).values(project_id=owner, **values))
            _bump(connection, owner)
        self._changed()
        return parsed.text

    def delete_trust_policy(self, project: str) -> None:
        with self._db.write() as connection:
            owner = project_id(connection, project)
            gone = connection.execute(
                delete(NotationTrustPolicyRow).where(NotationTrustPolicyRow.project_id == owner)
            ).rowcount
            if not gone:
                raise TrustPolicyNotFound(detail={"project": project})
            _bump(connection, owner)
        self._changed()

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change()

    @staticmethod
    def _keys(connection: Connection, owner: int, project: str) -> tuple[TrustedKey, ...]:
        rows = connection.execute(
            select(TrustedKeyRow.__table__)
            .where(TrustedKeyRow.project_id == owner)
            .order_by(TrustedKeyRow.name)
        )
        return tuple(
            TrustedKey(
                row.id,
                project,
                row.name,
                row.algorithm,
                "sha256:" + row.fingerprint,
                row.public_key,
                row.created_by,
                row.created_at,
                row.trust_store,
            )
            for row in rows
        )


def _version(connection: Connection, owner: int) -> int:
    found = connection.execute(
        select(TrustKeySetRow.version).where(TrustKeySetRow.project_id == owner)
    ).scalar()
    return int(found or 0)


def _bump(connection: Connection, owner: int) -> None:
    changed = connection.execute(
        update(TrustKeySetRow)
        .where(TrustKeySetRow.project_id == owner)
        .values(version=TrustKeySetRow.version + 1)
    ).rowcount
    if not changed:
        connection.execute(insert(TrustKeySetRow).values(project_id=owner, version=1))
