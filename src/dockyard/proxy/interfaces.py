"""What a proxy project is, the decisions the cache makes, and the errors it raises.

A proxy project mirrors one registry endpoint: `proxy-project/library/alpine:3.20` is
`library/alpine:3.20` on the endpoint (Docker Hub endpoints add `library/` to one-component names, as
docker does). Pushes into it are refused: its content is the upstream's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from dockyard.errors import Category, DockyardError, OCICode, Unsupported

# The endpoint of registry:2's `proxy:` section (proxy.remoteurl): not a stored endpoint (a stored
# endpoint's name cannot contain a colon).
IMPLICIT_ENDPOINT = "proxy:remoteurl"
DEFAULT_TAG_TTL = 300  # seconds: how long a cached tag is served without asking upstream
MAX_TAG_TTL = 30 * 24 * 3600


class ProxyPushDenied(DockyardError):
    """A push (upload, manifest PUT, mount) into a proxy project. DENIED, 403: the request is valid OCI
    and the registry supports it, but this project's policy forbids it (its content is the upstream's);
    UNSUPPORTED would say the registry does not implement pushes at all."""

    category = Category.DENIED
    oci_code = OCICode.DENIED
    message = "this project is a pull-through cache of an upstream registry: pushes are refused"


class MirrorPushUnsupported(Unsupported):
    """A push into a server that registry:2's `proxy:` section made one mirror: `405 UNSUPPORTED`, what
    registry:2 (2.8) answers in proxy mode, so clients and scripts see the same failure."""

    message = "this registry is a pull-through cache (proxy.remoteurl): pushes are unsupported"


class ProxyUpstreamFailed(DockyardError):
    """A cache miss that the upstream could not fill (down, timing out, 429, 5xx, refusing our
    credentials or address). The message names the upstream's failure."""

    category = Category.UNAVAILABLE
    oci_code = OCICode.UNAVAILABLE
    message = "the upstream registry of this proxy project failed"


class ProxySettingsInvalid(DockyardError):
    category = Category.INVALID
    message = "invalid proxy settings"


@dataclass(frozen=True, slots=True)
class ProxyConfig:
    """A proxy project as the cache needs it."""

    project: str
    project_id: int
    endpoint: str  # the endpoint's name
    docker_hub: bool  # the endpoint is Docker Hub: `library/` for one-component names
    tag_ttl: int  # seconds

    @property
    def whole_registry(self) -> bool:
        """registry:2's `proxy:` section: every repository, named as upstream (no project in front)."""
        return not self.project

    def upstream_repository(self, name: str) -> str:
        """The repository on the upstream for the local `name` (`<project>/<rest>`, or `name` itself
        for the whole-registry mirror)."""
        rest = name if self.whole_registry else name.split("/", 1)[1] if "/" in name else ""
        if not rest:
            raise ProxySettingsInvalid(f"{name!r} names no repository inside proxy project {self.project!r}")
        if self.docker_hub and "/" not in rest:
            return f"library/{rest}"
        return rest


class TagDecision(StrEnum):
    FRESH = "fresh"  # serve the cached manifest, ask nobody
    CHECK = "check"  # HEAD upstream; GET only when the digest changed
    FETCH = "fetch"  # nothing cached: GET upstream


def decide_tag(now: datetime, checked_at: datetime | None, cached: bool, ttl: int) -> TagDecision:
    """What a pull by tag does: nothing cached is a fetch; a tag checked less than `ttl` seconds ago is
    fresh; an older one (or one whose check time is unknown or in the future by a clock step) is
    checked. A ttl of 0 checks every time."""
    if not cached:
        return TagDecision.FETCH
    if checked_at is None or ttl <= 0:
        return TagDecision.CHECK
    age = now - checked_at
    if timedelta(0) <= age < timedelta(seconds=ttl):
        return TagDecision.FRESH
    return TagDecision.CHECK


class Outcome(StrEnum):
    """How a pull through the cache was answered (the label of `proxy_requests_total`)."""

    HIT = "hit"  # from the cache, fresh or by digest
    REVALIDATED = "revalidated"  # upstream HEAD said the cached tag is current
    FETCHED = "fetched"  # fetched from upstream and cached
    STALE = "stale"  # upstream failed; the cached copy was served
    FAILED = "failed"  # upstream failed and nothing was cached
    NOT_STORED = "not_stored"  # a blob verified and served to its client, whose store then failed


def stale_allowed(error: Exception) -> bool:
    """Whether an upstream failure lets the cache serve what it has: unavailability (down, timeouts,
    429, 5xx) and refusals (credentials revoked, address refused) do; an upstream that says the
    content is gone (404) does not: the caller reports that."""
    from dockyard.upstream.interfaces import UpstreamError, UpstreamNotFound

    return isinstance(error, UpstreamError) and not isinstance(error, UpstreamNotFound)
