"""Sigstore keyless signatures: the trusted roots (`trusted_root.json`) bundles verify against, per
project (project admins) or system-wide (system admins), and a project's identity policies (who may
sign: certificate SAN + OIDC issuer). docs/security.md, "Sigstore keyless signatures"."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field

from dockyard.api.management.access import require
from dockyard.api.management.audit import audited
from dockyard.api.management.context import ManagementServices, services_of
from dockyard.api.management.security import Admin, Caller
from dockyard.audit.interfaces import AuditAction, ResourceType
from dockyard.projects.rbac import Permission

router = APIRouter(tags=["signatures"])
Services = Annotated[ManagementServices, Depends(services_of)]


class WindowOut(BaseModel):
    start: str | None
    end: str | None


class AuthorityOut(WindowOut):
    uri: str
    subject: str = Field(description="The subject of the CA's issuing (leaf-most) certificate.")


class LogOut(WindowOut):
    url: str
    log_id: str = Field(description="hex sha256 of the log's DER public key")


class RootOut(BaseModel):
    name: str
    scope: str = Field(description="project | system")
    certificate_authorities: list[AuthorityOut]
    tlogs: list[LogOut]
    ctlogs: list[LogOut]
    created_by: str
    created_at: datetime


class IdentityIn(BaseModel):
    name: str = Field(min_length=1, max_length=128, description="Letters, digits, '.', '_', '-', '@'.")
    issuer: str = Field(
        min_length=1,
        max_length=1024,
        description="The OIDC issuer, exactly (cosign's --certificate-oidc-issuer).",
    )
    san: str | None = Field(
        default=None, max_length=1024, description="The certificate's SAN, exactly (--certificate-identity)."
    )
    san_regex: str | None = Field(
        default=None,
        max_length=1024,
        description="A regular expression a SAN must match as a whole (--certificate-identity-regexp).",
    )


class IdentityOut(BaseModel):
    name: str
    issuer: str
    san: str | None
    san_regex: str | None


def _trust(services: ManagementServices) -> Any:
    from dockyard.signatures.sigstore_trust import SigstoreTrust  # loaded when first asked for

    return SigstoreTrust(services.db, services.verdicts_changed)


def _reverify(services: ManagementServices, project: str | None) -> None:
    from dockyard.signatures.tasks import queue_reverification, queue_reverification_everywhere

    enqueue = services.jobs.enqueue if services.jobs else None
    if project is None:
        queue_reverification_everywhere(services.db, enqueue)
    else:
        queue_reverification(services.db, enqueue, project)


def _put_root(
    services: ManagementServices, scope: str | None, name: str, document: dict[str, Any], author: str | None
) -> RootOut:
    text = json.dumps(document, separators=(",", ":"))
    root = _trust(services).put_root(scope, name, text, author or "anonymous")
    return RootOut.model_validate(root.as_dict())


# --- per project ------------------------------------------------------------------------------------
@router.get("/projects/{project}/sigstore/trust-roots", response_model=list[RootOut])
def project_roots(project: str, principal: Caller, services: Services) -> list[RootOut]:
    """The project's own trusted roots (the system-wide ones apply too: GET /sigstore/trust-roots)."""
    require(services, principal, project, Permission.PROJECT_UPDATE)
    return [RootOut.model_validate(root.as_dict()) for root in _trust(services).roots(project)]


@router.put("/projects/{project}/sigstore/trust-roots/{root_name}", response_model=RootOut)
def put_project_root(
    project: str,
    root_name: str,
    document: dict[str, Any],
    request: Request,
    principal: Caller,
    services: Services,
) -> RootOut:
    """Import a `trusted_root.json` (the body) for the project, or replace the one of that name."""
    detail = {"sigstore_trust_root": root_name}
    with audited(services, request, principal, AuditAction.UPDATE, ResourceType.PROJECT, project, detail):
        require(services, principal, project, Permission.PROJECT_UPDATE)
        root = _put_root(services, project, root_name, document, principal.name)
    _reverify(services, project)
    return root


@router.delete("/projects/{project}/sigstore/trust-roots/{root_name}", status_code=204)
def delete_project_root(
    project: str, root_name: str, request: Request, principal: Caller, services: Services
) -> Response:
    detail = {"removed_sigstore_trust_root": root_name}
    with audited(services, request, principal, AuditAction.UPDATE, ResourceType.PROJECT, project, detail):
        require(services, principal, project, Permission.PROJECT_UPDATE)
        _trust(services).delete_root(project, root_name)
    _reverify(services, project)
    return Response(status_code=204)


@router.get("/projects/{project}/sigstore/identities", response_model=list[IdentityOut])
def identities(project: str, principal: Caller, services: Services) -> list[IdentityOut]:
    """Who may sign the project's artifacts keyless."""
    require(services, principal, project, Permission.PROJECT_UPDATE)
    return [IdentityOut.model_validate(i.as_dict()) for i in _trust(services).identities(project)]


@router.post("/projects/{project}/sigstore/identities", response_model=IdentityOut, status_code=201)
def add_identity(
    project: str, body: IdentityIn, request: Request, principal: Caller, services: Services
) -> IdentityOut:
    """Trust keyless signatures whose certificate has `issuer` and the SAN `san` (or one matching
    `san_regex`): exactly one of the two."""
    detail = {
        "sigstore_identity": body.name,
        "issuer": body.issuer,
        "san": body.san,
        "san_regex": body.san_regex,
    }
    with audited(services, request, principal, AuditAction.UPDATE, ResourceType.PROJECT, project, detail):
        require(services, principal, project, Permission.PROJECT_UPDATE)
        identity = _trust(services).add_identity(
            project, body.name, body.issuer, body.san, body.san_regex, principal.name or "anonymous"
        )
    _reverify(services, project)
    return IdentityOut.model_validate(identity.as_dict())


@router.delete("/projects/{project}/sigstore/identities/{identity_name}", status_code=204)
def delete_identity(
    project: str, identity_name: str, request: Request, principal: Caller, services: Services
) -> Response:
    detail = {"removed_sigstore_identity": identity_name}
    with audited(services, request, principal, AuditAction.UPDATE, ResourceType.PROJECT, project, detail):
        require(services, principal, project, Permission.PROJECT_UPDATE)
        _trust(services).delete_identity(project, identity_name)
    _reverify(services, project)
    return Response(status_code=204)


# --- system-wide ------------------------------------------------------------------------------------
@router.get("/sigstore/trust-roots", response_model=list[RootOut])
def system_roots(principal: Admin, services: Services) -> list[RootOut]:
    """The system-wide trusted roots: every project's keyless signatures may verify against them."""
    return [RootOut.model_validate(root.as_dict()) for root in _trust(services).roots(None)]


@router.put("/sigstore/trust-roots/{root_name}", response_model=RootOut)
def put_system_root(
    root_name: str, document: dict[str, Any], request: Request, principal: Admin, services: Services
) -> RootOut:
    """Import a `trusted_root.json` (the body) system-wide, or replace the one of that name."""
    with audited(
        services, request, principal, AuditAction.UPDATE, ResourceType.SIGSTORE_TRUST_ROOT, root_name
    ):
        root = _put_root(services, None, root_name, document, principal.name)
    _reverify(services, None)
    return root


@router.delete("/sigstore/trust-roots/{root_name}", status_code=204)
def delete_system_root(root_name: str, request: Request, principal: Admin, services: Services) -> Response:
    with audited(
        services, request, principal, AuditAction.DELETE, ResourceType.SIGSTORE_TRUST_ROOT, root_name
    ):
        _trust(services).delete_root(None, root_name)
    _reverify(services, None)
    return Response(status_code=204)
