"""Signatures: a project's trusted public keys (project admins) and an artifact's signature verdict
(whoever may read the repository). docs/security.md, "Signatures"."""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from dockyard.api.management.access import require
from dockyard.api.management.audit import audited
from dockyard.api.management.context import ManagementServices, services_of
from dockyard.api.management.security import Caller
from dockyard.audit.interfaces import AuditAction, ResourceType
from dockyard.errors import NameUnknown
from dockyard.projects.rbac import Permission, project_of

if TYPE_CHECKING:
    from dockyard.signatures.interfaces import TrustedKey

router = APIRouter(tags=["signatures"])
Services = Annotated[ManagementServices, Depends(services_of)]


class KeyIn(BaseModel):
    name: str = Field(min_length=1, max_length=128, description="Letters, digits, '.', '_', '-', '@'.")
    public_key: str = Field(
        min_length=1,
        max_length=16384,
        description=(
            "PEM public key (cosign.pub): ECDSA P-256/P-384, RSA (2048 bits or more), Ed25519; or one "
            "PEM X.509 certificate, a trust-store entry for notation signatures."
        ),
    )
    trust_store: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        description=(
            "For a certificate: the named notation trust store it is in (`ca:<trust_store>` in the "
            "project's trust policy); by default the store of the key's own name."
        ),
    )


class KeyOut(BaseModel):
    name: str
    algorithm: str
    fingerprint: str = Field(description="sha256 of the DER SubjectPublicKeyInfo.")
    public_key: str
    trust_store: str | None = Field(description="A certificate's named notation trust store.")
    created_by: str
    created_at: datetime


class KeySetOut(BaseModel):
    version: int = Field(description="Bumped by every change of the key set; 0: never had a key.")
    keys: list[KeyOut]


class VerdictOut(BaseModel):
    digest: str = Field(description="The artifact's digest.")
    status: str = Field(description="verified | unsigned | invalid")
    reason: str
    key: str | None = Field(description="The trusted key that verified the signature.")
    signature: str | None = Field(description="The digest of the signature manifest that verified.")
    keyset_version: int
    cached: bool = Field(description="Read from the cache (same key set, same signatures).")
    checked_at: datetime | None


def key_out(key: TrustedKey) -> KeyOut:
    return KeyOut(
        name=key.name,
        algorithm=key.algorithm,
        fingerprint=key.fingerprint,
        public_key=key.public_key,
        trust_store=key.as_dict()["trust_store"],
        created_by=key.created_by,
        created_at=key.created_at,
    )


def _keys(services: ManagementServices) -> Any:
    from dockyard.signatures.keys import TrustedKeys  # loaded when first asked for

    return TrustedKeys(services.db, services.verdicts_changed)


@router.get("/projects/{project}/signing-keys", response_model=KeySetOut)
def list_keys(project: str, principal: Caller, services: Services) -> KeySetOut:
    """The public keys the project trusts for signatures, and the key set's version."""
    require(services, principal, project, Permission.PROJECT_UPDATE)
    keyset = _keys(services).keyset(project)
    return KeySetOut(version=keyset.version, keys=[key_out(key) for key in keyset.keys])


@router.post("/projects/{project}/signing-keys", response_model=KeyOut, status_code=201)
def add_key(project: str, body: KeyIn, request: Request, principal: Caller, services: Services) -> KeyOut:
    detail = {"trusted_key": body.name}
    with audited(
        services, request, principal, AuditAction.UPDATE, ResourceType.PROJECT, project, detail
    ) as extra:
        require(services, principal, project, Permission.PROJECT_UPDATE)
        key = _keys(services).add(
            project, body.name, body.public_key, principal.name or "anonymous", body.trust_store
        )
        extra["fingerprint"] = key.fingerprint
    _reverify(services, project)
    return key_out(key)


def _reverify(services: ManagementServices, project: str) -> None:
    """A project that requires signatures has verdicts of an old key set: verify its artifacts again."""
    from dockyard.signatures.tasks import queue_reverification

    queue_reverification(services.db, services.jobs.enqueue if services.jobs else None, project)


@router.get("/projects/{project}/signing-keys/{key_name}", response_model=KeyOut)
def get_key(project: str, key_name: str, principal: Caller, services: Services) -> KeyOut:
    require(services, principal, project, Permission.PROJECT_UPDATE)
    return key_out(_keys(services).get(project, key_name))


@router.delete("/projects/{project}/signing-keys/{key_name}", status_code=204)
def delete_key(project: str, key_name: str, request: Request, principal: Caller, services: Services) -> None:
    detail = {"removed_trusted_key": key_name}
    with audited(services, request, principal, AuditAction.UPDATE, ResourceType.PROJECT, project, detail):
        require(services, principal, project, Permission.PROJECT_UPDATE)
        _keys(services).delete(project, key_name)
    _reverify(services, project)


@router.get("/projects/{project}/trust-policy")
def get_trust_policy(project: str, principal: Caller, services: Services) -> dict[str, Any]:
    """The project's notation trust policy (notation's trustpolicy.json); 404 when it has none."""
    require(services, principal, project, Permission.PROJECT_UPDATE)
    return dict(json.loads(_keys(services).trust_policy(project)))


@router.put("/projects/{project}/trust-policy")
def put_trust_policy(
    project: str, document: dict[str, Any], request: Request, principal: Caller, services: Services
) -> dict[str, Any]:
    """Set the project's notation trust policy (notation's trustpolicy.json, version 1.0): which named
    trust stores and signer identities are trusted for which repositories, and how strictly. Replaces
    the one before; artifacts are verified again."""
    detail = {"trust_policy": "set"}
    with audited(services, request, principal, AuditAction.UPDATE, ResourceType.PROJECT, project, detail):
        require(services, principal, project, Permission.PROJECT_UPDATE)
        text = _keys(services).set_trust_policy(project, document, principal.name or "anonymous")
    _reverify(services, project)
    return dict(json.loads(text))


@router.delete("/projects/{project}/trust-policy", status_code=204)
def delete_trust_policy(project: str, request: Request, principal: Caller, services: Services) -> None:
    """Remove the trust policy: any certificate of the project's stores vouches again, strictly."""
    detail = {"trust_policy": "removed"}
    with audited(services, request, principal, AuditAction.UPDATE, ResourceType.PROJECT, project, detail):
        require(services, principal, project, Permission.PROJECT_UPDATE)
        _keys(services).delete_trust_policy(project)
    _reverify(services, project)


@router.get("/repositories/{name:path}/artifacts/{reference}/signature", response_model=VerdictOut)
def artifact_signature(name: str, reference: str, principal: Caller, services: Services) -> VerdictOut:
    """Whether the artifact (a tag or digest) carries a cosign signature that verifies with one of the
    project's keys: `verified`, `unsigned` or `invalid` (with the reason). Verdicts are cached per
    artifact digest, key-set version and signature manifests."""
    require(
        services, principal, project_of(name), Permission.PROJECT_READ, NameUnknown(detail={"name": name})
    )
    from dockyard.signatures.services import Signatures

    if services.blobs is None:  # pragma: no cover  (dockyard.app always hands the blob store in)
        raise RuntimeError("the management API was built without a blob store")
    verdict = Signatures(services.db, services.registry, services.blobs, services.verdicts_changed).verify(
        name, reference
    )
    return VerdictOut(**verdict.as_dict())
