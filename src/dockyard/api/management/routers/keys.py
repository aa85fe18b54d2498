"""The keys registry tokens are signed with: list, rotate, retire. System administrators only.

Never returns key material. The newest unretired key signs new tokens; every unretired key verifies,
so a rotation breaks nothing and retiring the old key afterwards revokes the tokens it signed.

When a change takes effect: the worker that handles the request sees it at once (and forgets the
tokens it had already verified, on retirement). The change is announced on the change feed's AUTH
topic: the node's other workers, and with Redis every node, reload their keys and forget verified
tokens within about a second. Without Redis other nodes keep their parsed keys for up to the key
ring's `refresh_interval` (60 s) and remember verified tokens up to a minute more (docs/ha.md).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, Field
from sqlalchemy import select

from dockyard.api.management.audit import audited
from dockyard.api.management.context import ManagementServices, services_of
from dockyard.api.management.errors import ApiError
from dockyard.api.management.security import Admin
from dockyard.audit.interfaces import AuditAction, ResourceType
from dockyard.auth.models import SigningKey
from dockyard.auth.tokens import ALGORITHM, KeyRing

router = APIRouter(tags=["system"])
Services = Annotated[ManagementServices, Depends(services_of)]
KeyId = Annotated[str, Path(min_length=1, max_length=64, description="The key's `kid`.")]
AUDIT_RESOURCE = "signing-keys"


class SigningKeyOut(BaseModel):
    kid: str = Field(description="The `kid` in the header of the tokens this key signs.")
    algorithm: str
    created_at: datetime
    retired_at: datetime | None
    status: Literal["signing", "verifying", "retired"] = Field(
        description="signing: new tokens get this key; verifying: its tokens are still accepted; "
        "retired: its tokens are refused."
    )


@router.get("/system/signing-keys", response_model=list[SigningKeyOut])
def list_signing_keys(principal: Admin, services: Services) -> list[SigningKeyOut]:
    """Every key, oldest first, as the database has it (other workers follow within a minute)."""
    return _keys_in_db(services)


@router.post("/system/signing-keys/rotate", response_model=SigningKeyOut, status_code=201)
def rotate_signing_key(request: Request, principal: Admin, services: Services) -> SigningKeyOut:
    """Create a key that signs every new token from now on; tokens of older keys keep working
    until those keys are retired."""
    keys = _key_ring(services)
    with audited(
        services, request, principal, AuditAction.CREATE, ResourceType.SETTINGS, AUDIT_RESOURCE
    ) as detail:
        detail["operation"] = "rotate"
        kid = keys.rotate()
        detail["kid"] = kid
    return _find(services, kid)


@router.post(
    "/system/signing-keys/{kid}/retire",
    response_model=SigningKeyOut,
    responses={404: {"description": "no such key"}, 409: {"description": "already retired, or signing"}},
)
def retire_signing_key(kid: KeyId, request: Request, principal: Admin, services: Services) -> SigningKeyOut:
    """Stop accepting the tokens this key signed. The key that signs new tokens cannot be retired:
    rotate first."""
    keys = _key_ring(services)
    with audited(
        services,
        request,
        principal,
        AuditAction.UPDATE,
        ResourceType.SETTINGS,
        AUDIT_RESOURCE,
        {"operation": "retire", "kid": kid},
    ):
        key = _find(services, kid)
        if key.status == "retired":
            raise ApiError(409, f"signing key {kid} is already retired")
        if key.status == "signing":
            raise ApiError(409, f"signing key {kid} signs new tokens: rotate first, then retire it")
        keys.retire(kid)
        if services.forget_verified_tokens is not None:
            services.forget_verified_tokens()
    return _find(services, kid)


def _key_ring(services: ManagementServices) -> KeyRing:
    if services.keys is None:
        raise ApiError(404, "this server does not issue its own tokens")
    return services.keys


def _find(services: ManagementServices, kid: str) -> SigningKeyOut:
    for key in _keys_in_db(services):
        if key.kid == kid:
            return key
    raise ApiError(404, f"no signing key {kid}")


def _keys_in_db(services: ManagementServices) -> list[SigningKeyOut]:
    """From the database, not this worker's key ring: it may be a minute behind another node's change.
    The signing key is chosen by the key ring's rule: the newest unretired one."""
    with services.db.read() as connection:
        rows = connection.execute(
            # Never the key columns: they are not selected, so they cannot leak.
            select(
                SigningKey.kid, SigningKey.algorithm, SigningKey.created_at, SigningKey.retired_at
            ).order_by(SigningKey.created_at)
        ).all()
    active = [row for row in rows if row.retired_at is None and row.algorithm == ALGORITHM]
    signing = max(active, key=lambda row: row.created_at).kid if active else None
    return [
        SigningKeyOut(
            kid=row.kid,
            algorithm=row.algorithm,
            created_at=row.created_at,
            retired_at=row.retired_at,
            status="retired" if row.retired_at else "signing" if row.kid == signing else "verifying",
        )
        for row in rows
    ]
