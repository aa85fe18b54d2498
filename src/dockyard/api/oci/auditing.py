"""Which /v2 requests leave an audit event: pushes (manifest PUT) and deletes, and every request the
gate denied. Manifest pulls (GETs; not HEADs or blob GETs, which would flood the log) are counted per
hour instead (`count_pull`, audit/pull_counts.py), or not at all with audit.pulls: off."""

from __future__ import annotations

from collections.abc import Sequence

from starlette.types import Scope

from dockyard.api.oci.gate import PRINCIPAL_KEY
from dockyard.audit.interfaces import (
    ActorKind,
    AuditAction,
    AuditEvent,
    AuditRecorder,
    AuditResult,
    ResourceType,
)
from dockyard.audit.pull_counts import PullCounter
from dockyard.auth.interfaces import ANONYMOUS, Principal, PrincipalKind

_AUDITED: dict[tuple[str, str], tuple[AuditAction, ResourceType]] = {
    ("manifests", "PUT"): (AuditAction.PUSH, ResourceType.ARTIFACT),
    ("manifests", "DELETE"): (AuditAction.DELETE, ResourceType.ARTIFACT),
    ("blobs", "DELETE"): (AuditAction.DELETE, ResourceType.BLOB),
}
# The methods of the requests `record_request` may record beside denials (401, 403).
AUDITED_METHODS = frozenset(method for _, method in _AUDITED)
# What the audit log calls each kind of principal (an enum's call by value costs a µs per pull).
_ACTOR_KINDS = {kind: ActorKind(kind.value) for kind in PrincipalKind}


def record_request(
    audit: AuditRecorder, scope: Scope, key: str, method: str, args: Sequence[str], status: int
) -> None:
    if status in (401, 403):
        # A request with no credentials at all is the challenge handshake every client starts with,
        # not a denial: only refusals of someone (an anonymous token included) are recorded.
        if scope.get(PRINCIPAL_KEY) is not None:
            _record(
                audit,
                scope,
                AuditAction.ACCESS_DENIED,
                AuditResult.DENIED,
                ResourceType.REPOSITORY,
                args,
                key,
            )
        return
    audited = _AUDITED.get((key, method))
    if audited is None or status >= 400:
        return
    action, resource_type = audited
    _record(audit, scope, action, AuditResult.OK, resource_type, args, key)


def count_pull(counter: PullCounter, scope: Scope, name: str, digest: str) -> None:
    """One pull of `digest` in repository `name`, by whoever the gate let in: a dict update, no I/O."""
    principal: Principal = scope.get(PRINCIPAL_KEY) or ANONYMOUS
    client = scope.get("client")
    actor_kind = _ACTOR_KINDS[principal.kind]
    counter.count(f"{name}@{digest}", principal.name, actor_kind, client[0] if client else None)


def _record(
    audit: AuditRecorder,
    scope: Scope,
    action: AuditAction,
    result: AuditResult,
    resource_type: ResourceType,
    args: Sequence[str],
    key: str,
) -> None:
    principal: Principal = scope.get(PRINCIPAL_KEY) or ANONYMOUS
    client = scope.get("client")
    audit.record(
        AuditEvent(
            action=action,
            actor=principal.name,
            actor_kind=ActorKind(principal.kind.value),
            result=result,
            resource_type=resource_type,
            resource_name=_resource_name(key, args),
            client_ip=client[0] if client else None,
            detail={"method": scope["method"], "path": scope["path"]},
        )
    )


def _resource_name(key: str, args: Sequence[str]) -> str | None:
    if not args:
        return None
    if key in ("manifests", "blobs") and len(args) == 2:
        name, reference = args
        separator = "@" if ":" in reference else ":"
        return f"{name}{separator}{reference}"
    return args[0]
