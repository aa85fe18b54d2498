"""What a remote registry answers, as the pull-through cache and replication need it.

Every call is bounded in time (the real client's connect, read and total timeouts), so none hangs. Errors
are the ones below: an unreachable, slow, rate-limiting or failing upstream is `UpstreamUnavailable`; one
that refuses our credentials `UpstreamUnauthorized`; what it does not have `UpstreamNotFound`; an address
the server must not fetch (loopback, link-local, private, unless allowed) `UpstreamAddressRefused`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from dockyard.errors import Category, DockyardError

# Manifests are small (the registry refuses more than 4 MiB); a larger answer is not a manifest.
MAX_MANIFEST_BYTES = 4 << 20
# What a manifest GET accepts when the caller names nothing: every type the registry stores.
DEFAULT_ACCEPT: tuple[str, ...] = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)


class UpstreamError(DockyardError):
    """A remote registry did not answer as asked."""

    category = Category.UNAVAILABLE
    message = "the upstream registry failed"


class UpstreamUnavailable(UpstreamError):
    """Unreachable, timed out, 429 or 5xx: the same request may work shortly."""

    message = "the upstream registry is unavailable"

    def __init__(self, message: str | None = None, detail: object = None, status: int | None = None) -> None:
        super().__init__(message, detail)
        self.status = status


class UpstreamUnauthorized(UpstreamError):
    """The upstream refused the endpoint's credentials (or asks for some it has none of)."""

    message = "the upstream registry refused the credentials"


class UpstreamNotFound(UpstreamError):
    """The upstream does not have the repository, manifest or blob."""

    category = Category.NOT_FOUND
    message = "not found on the upstream registry"


class UpstreamInvalid(UpstreamError):
    """An endpoint URL or answer the client will not use: not http(s), credentials in the URL, a
    manifest over the size limit, a malformed challenge."""

    category = Category.INVALID
    message = "invalid upstream endpoint"


class UpstreamAddressRefused(UpstreamInvalid):
    """The endpoint (or a redirect) resolves to an address the server must not fetch from (SSRF)."""

    message = "the upstream address is not allowed"


@dataclass(frozen=True)
class Credentials:
    """`basic`: a user name and password (or access token used as one: Docker Hub, GHCR), sent to the
    token server, or to the registry when it asks for Basic. `token`: a bearer token used as it is."""

    kind: Literal["basic", "token"]
    username: str = ""
    secret: str = field(default="", repr=False)


@dataclass(frozen=True)
class TLSOptions:
    """`ca_pem`: extra CA certificates (PEM text) trusted besides the system's; `verify` False skips
    verification (test setups only)."""

    ca_pem: str | None = None
    verify: bool = True


@dataclass(frozen=True)
class Timeouts:
    """Seconds. `connect`: to open a connection; `read`: between two reads (a stalled stream fails);
    `total`: a whole request with a small body (manifests, tags, HEADs), and a blob's headers."""

    connect: float = 10.0
    read: float = 30.0
    total: float = 60.0


@dataclass(frozen=True)
class ManifestInfo:
    """What a HEAD (or a GET) says about a manifest. `digest` is the upstream's Docker-Content-Digest,
    or computed from the bytes on a GET without one; `None` for a HEAD without the header."""

    media_type: str
    digest: str | None
    size: int


@dataclass(frozen=True)
class Manifest:
    media_type: str
    digest: str
    data: bytes


@dataclass(frozen=True)
class Check:
    """A successful health check: the API version the upstream announced, and how we authenticated."""

    api_version: str | None
    auth: Literal["none", "basic", "bearer"]


class BlobStream(Protocol):
    """An open blob download: use as a context manager, read with `chunks()`, never whole in memory.

    `offset` is where the bytes start (the range asked for, or 0 when the upstream ignored the range and
    sends the whole blob: then callers skip what they have); `size` the blob's full size when known."""

    offset: int
    size: int | None

    def chunks(self, chunk_size: int = 1 << 20) -> Iterator[bytes]: ...

    def close(self) -> None: ...

    def __enter__(self) -> BlobStream: ...

    def __exit__(self, *exc: object) -> None: ...


class RemoteRegistry(Protocol):
    """One remote registry (an endpoint), spoken to with the OCI distribution API."""

    def check(self) -> Check:
        """`GET /v2/`, authenticating as the registry asks: the health check."""
        ...

    def head_manifest(
        self, repository: str, reference: str, accept: Sequence[str] = DEFAULT_ACCEPT
    ) -> ManifestInfo:
        """`HEAD` a manifest by tag or digest (Docker Hub does not count it against the pull limit)."""
        ...

    def get_manifest(
        self, repository: str, reference: str, accept: Sequence[str] = DEFAULT_ACCEPT
    ) -> Manifest:
        """`GET` a manifest's exact bytes; a digest reference is verified against them."""
        ...

    def head_blob(self, repository: str, digest: str) -> int:
        """The blob's size."""
        ...

    def open_blob(self, repository: str, digest: str, offset: int = 0) -> BlobStream:
        """Stream a blob from `offset` (a Range request), following redirects to object storage."""
        ...

    def list_tags(self, repository: str, limit: int = 10_000) -> list[str]:
        """The repository's tags, following `Link` pages, at most `limit`."""
        ...

    def close(self) -> None: ...
