"""What follows a manifest push or delete, whichever API made it (/v2, or the management API's tag and
artifact operations): the registry:2 notification and webhook event, the signature check a project
that requires signatures queues, scan on push, and replication's event trigger.

`needed` decides without I/O whether anything may follow, so a /v2 push into a project that wants none
of it makes no thread hop; `pushed` and `deleted` do the rest in a worker thread. Each step after the
event is best effort by its own design (the manifest is stored already).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.requests import Request

from dockyard.api.middleware import REQUEST_ID_KEY
from dockyard.auth.interfaces import Principal
from dockyard.signatures.pull_gate import PullGate
from dockyard.webhooks.interfaces import LAYER_MEDIA_TYPE, Event, EventRecorder, RequestInfo

if TYPE_CHECKING:
    from dockyard.replication.pushes import ReplicateOnPush
    from dockyard.scans.pushes import ScanOnPush


def request_info(request: Request) -> RequestInfo:
    """The request as registry:2's events name it."""
    scope = request.scope
    client = scope.get("client")
    headers = request.headers
    return RequestInfo(
        id=str(scope.get(REQUEST_ID_KEY) or ""),
        addr=f"{client[0]}:{client[1]}" if client else "",
        host=headers.get("host", ""),
        method=scope["method"],
        useragent=headers.get("user-agent", ""),
    )


def actor_name(principal: Principal | None) -> str:
    return principal.name if principal is not None and principal.name != "anonymous" else ""


def is_tag(reference: str) -> bool:
    return ":" not in reference  # tags have no colon, digests do: no parsing on the hot path


def content_target(url: str, name: str, digest: str, media_type: str, size: int) -> dict[str, Any]:
    """registry:2's target of a manifest or blob event; `url` is where the content is fetched."""
    return {
        "mediaType": media_type,
        "size": size,
        "digest": digest,
        "length": size,
        "repository": name,
        "url": url,
    }


def blob_target(url: str, name: str, digest: str, size: int) -> dict[str, Any]:
    return content_target(url, name, digest, LAYER_MEDIA_TYPE, size)


@dataclass(frozen=True, slots=True)
class PushedManifest:
    name: str
    reference: str  # the tag or digest it was pushed under
    digest: str
    media_type: str
    size: int
    subject: str | None = None


@dataclass
class ManifestEffects:
    notifications: EventRecorder | None = None  # registry:2 endpoints and webhook policies
    pull_gate: PullGate | None = None
    scans: ScanOnPush | None = None
    replication: ReplicateOnPush | None = None
    base_url: str = ""  # http.host when set: absolute URLs in events

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def push_needed(self, manifest: PushedManifest) -> bool:
        """Whether `pushed` may have work (no I/O)."""
        name, reference = manifest.name, manifest.reference
        return (
            self._event_needed("push", name)
            or (self.pull_gate is not None and self.pull_gate.push_needs_work(name))
            or (
                self.scans is not None
                and self.scans.wanted(name, reference, manifest.media_type, manifest.subject)
            )
            or (self.replication is not None and self.replication.wanted(name, reference))
        )

    def delete_needed(self, name: str, reference: str) -> bool:
        """Whether `deleted` may have work (no I/O)."""
        return self._event_needed("delete", name) or (
            self.replication is not None and self.replication.wanted(name, reference)
        )

    def pushed(
        self, manifest: PushedManifest, request: RequestInfo, actor: str, *, scan: bool = True
    ) -> None:
        """Everything that follows a stored push (a worker thread): the event first, recorded before
        the client is answered; then the jobs other features queue. Without `scan`, no scan on push
        (a tag set on an artifact already pushed: it was scanned then)."""
        name, reference, digest = manifest.name, manifest.reference, manifest.digest
        wanted, project = self._event("push", name)
        if wanted:
            target = content_target(
                self.url(f"/v2/{name}/manifests/{digest}"), name, digest, manifest.media_type, manifest.size
            )
            if is_tag(reference):
                target["tag"] = reference
            self._record(Event("push", target, request, actor, project=project))
        if self.pull_gate is not None and self.pull_gate.push_needs_work(name):
            self.pull_gate.pushed(name, reference, digest, manifest.subject)
        if (
            scan
            and self.scans is not None
            and self.scans.wanted(name, reference, manifest.media_type, manifest.subject)
        ):
            self.scans.pushed(name, digest)  # a job queued, when the project wants it
        if self.replication is not None and self.replication.wanted(name, reference):
            self.replication.pushed(name, reference)  # a job per event policy that selects it

    def deleted(self, name: str, reference: str, request: RequestInfo, actor: str) -> None:
        """Everything that follows a stored delete of a manifest or tag (a worker thread)."""
        wanted, project = self._event("delete", name)
        if wanted:
            # registry:2: a manifest delete names the digest; a tag delete (distribution v3) names the tag.
            target: dict[str, Any] = {"repository": name, "tag" if is_tag(reference) else "digest": reference}
            if project is not None:  # where a Harbor consumer finds the registry (registry:2's has no url)
                target["url"] = self.url(f"/v2/{name}/manifests/{reference}")
            self._record(Event("delete", target, request, actor, project=project))
        if self.replication is not None and self.replication.wanted(name, reference):
            self.replication.deleted(name, reference)  # a job per event policy propagating it

    def _event_needed(self, action: str, name: str) -> bool:
        outbox = self.notifications
        if outbox is None:
            return False
        if not outbox.policies_known(name):
            return True  # reading the project's policies is I/O: the worker thread does it
        return outbox.wants_endpoint(action) or outbox.project_wanting(action, name) is not None

    def _event(self, action: str, name: str) -> tuple[bool, str | None]:
        """Whether to record the event, and the project whose webhook policies want it."""
        outbox = self.notifications
        if outbox is None:
            return False, None
        project = outbox.project_wanting(action, name)
        return project is not None or outbox.wants_endpoint(action), project

    def _record(self, event: Event) -> None:
        assert self.notifications is not None
        self.notifications.record([event])
