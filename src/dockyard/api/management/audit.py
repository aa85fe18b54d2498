"""Recording management changes in the audit log: who, from where, what, and how it ended.

The account and project services run their own transactions, so events go through the batched
`AuditLog.record` right after the change (or its refusal), not inside the change's transaction.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from fastapi import Request

from dockyard.api.management.context import ManagementServices
from dockyard.api.management.errors import ApiError
from dockyard.api.management.security import PRINCIPAL_STATE, client_ip
from dockyard.audit.interfaces import ActorKind, AuditAction, AuditEvent, AuditResult, ResourceType
from dockyard.auth.interfaces import (
    ANONYMOUS,
    AccessDenied,
    AuthenticationFailed,
    Principal,
    Unauthenticated,
)
from dockyard.errors import DockyardError

AUDITED_STATE = "audited"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def record_refusal(services: ManagementServices, request: Request, status: int, message: str) -> None:
    """Audit a refused change (401/403) that no `audited` block saw, e.g. an administrators-only
    endpoint refused before its handler ran. Refused reads are not recorded: they are not changes."""
    if request.method in SAFE_METHODS or getattr(request.state, AUDITED_STATE, False):
        return
    principal = getattr(request.state, PRINCIPAL_STATE, None) or ANONYMOUS
    services.audit.record(
        AuditEvent(
            action=AuditAction.ACCESS_DENIED,
            actor=principal.name,
            actor_kind=ActorKind(principal.kind.value),
            result=AuditResult.DENIED,
            client_ip=client_ip(request),
            detail={"method": request.method, "path": request.url.path, "status": status, "error": message},
        )
    )


@contextmanager
def audited(
    services: ManagementServices,
    request: Request,
    principal: Principal,
    action: AuditAction,
    resource_type: ResourceType,
    resource_name: str,
    detail: Mapping[str, Any] | None = None,
) -> Iterator[dict[str, Any]]:
    """Record the change in the block: ok when it ends, denied or failed when it raises (then the
    error goes on). The block may add to the yielded dict; it becomes the event's detail."""
    extra: dict[str, Any] = dict(detail or {})
    result = AuditResult.OK
    setattr(request.state, AUDITED_STATE, True)  # the refusal hook below need not record it again
    try:
        yield extra
    except (AccessDenied, AuthenticationFailed, Unauthenticated) as error:
        result = AuditResult.DENIED
        extra["error"] = error.message
        raise
    except ApiError as error:
        result = AuditResult.DENIED if error.status in (401, 403) else AuditResult.FAILED
        extra["error"] = error.message
        raise
    except DockyardError as error:
        result = AuditResult.FAILED
        extra["error"] = error.message
        raise
    except Exception:
        result = AuditResult.FAILED
        raise
    finally:
        services.audit.record(
            AuditEvent(
                action=action,
                actor=principal.name,
                actor_kind=ActorKind(principal.kind.value),
                result=result,
                resource_type=resource_type,
                resource_name=resource_name,
                client_ip=client_ip(request),
                detail=extra or None,
            )
        )
