"""The real RemoteRegistry, on httpx: the distribution API with Docker's token flow or Basic auth.

Authentication follows the registry's challenge: a 401 with `Bearer realm=...` gets a token from the realm
(for the request's scope, with the endpoint's Basic credentials if any), cached and sent up front to later
requests of the same scope until shortly before it expires, then renewed up front; a 401 to a token drops
it and asks once more (the upstream may have revoked it). A 401 with `Basic` gets the credentials, sent
up front from then on. Redirects (blobs to object storage) are followed; httpx drops the Authorization
header when a redirect leaves the registry's origin, so presigned URLs never see our credentials.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Literal

import httpcore
import httpx

from dockyard.content.digest import looks_like_digest, parse_digest
from dockyard.content.reference import validate_name
from dockyard.upstream.addresses import AddressGuard, check_url
from dockyard.upstream.interfaces import (
    DEFAULT_ACCEPT,
    MAX_MANIFEST_BYTES,
    Check,
    Credentials,
    Manifest,
    ManifestInfo,
    Timeouts,
    TLSOptions,
    UpstreamError,
    UpstreamInvalid,
    UpstreamNotFound,
    UpstreamUnauthorized,
    UpstreamUnavailable,
)
from dockyard.upstream.tokens import TokenCache, find_challenge, token_lifetime, token_of
from dockyard.upstream.transport import DeadlineStream, deadline, guarded_transport

MAX_REDIRECTS = 5
DEFAULT_TLS = TLSOptions()
DEFAULT_TIMEOUTS = Timeouts()
MAX_TOKEN_ANSWER = 1 << 20
MAX_TAGS_PAGE = 4 << 20


class HttpBlobStream:
    def __init__(self, response: httpx.Response, offset: int, size: int | None) -> None:
        self.response = response
        self.offset = offset
        self.size = size

    def chunks(self, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        try:
            if self.response.headers.get("content-encoding", "identity").lower() != "identity":
                yield from self.response.iter_bytes(chunk_size)  # decoded (no registry does this)
                return
            length, stream = self._raw_body(chunk_size)
            if stream is None:
                yield from rechunk(self.response.iter_raw(), chunk_size)
            else:
                yield from self._socket_chunks(stream, length, chunk_size)
        except (httpx.TimeoutException, httpcore.TimeoutException):
            raise UpstreamUnavailable("the upstream stalled while sending a blob") from None
        except (httpx.HTTPError, httpcore.NetworkError) as exc:
            raise UpstreamUnavailable(f"the upstream failed while sending a blob: {exc}") from None

    def _raw_body(self, chunk_size: int) -> tuple[int, DeadlineStream | None]:
        """The body's length and the connection's stream, when the body is better read straight off
        the socket: HTTP/1.1 with a Content-Length of more than one chunk (else None: through httpx)."""
        stream = self.response.extensions.get("network_stream")
        length = self.response.headers.get("content-length", "")
        if (
            self.response.http_version != "HTTP/1.1"
            or not isinstance(stream, DeadlineStream)
            or not stream.can_read_into()
            or not length.isdigit()
            or int(length) <= chunk_size
        ):
            return 0, None
        return int(length), stream

    def _socket_chunks(self, stream: DeadlineStream, length: int, chunk_size: int) -> Iterator[bytes]:
        """The body in chunks of `chunk_size`, received straight into a buffer: one copy out of the
        kernel and one into each chunk, where httpx's parser (h11) copies each byte three times and
        runs Python for every 256 KiB read (64 MiB from docker-registry: 16-20 ms of CPU, against
        29-45 ms through the parser). The parser gives what it had read with the headers first; the
        connection is then not reused (its parser never saw the body end): a new connection per blob
        of more than one chunk."""
        timeout = self.response.request.extensions.get("timeout", {}).get("read")
        # What the parser holds already. Its iterator stays referenced until the end: dropped, it
        # closes the connection (which is all it is good for then).
        pieces = self.response.iter_raw()
        first = next(pieces, b"")
        while len(first) >= chunk_size:
            yield first[:chunk_size]
            first = first[chunk_size:]
            length -= chunk_size
        buffer = bytearray(chunk_size)
        view = memoryview(buffer)
        held = len(first)
        view[:held] = first
        remaining = length - held
        while remaining > 0:
            want = min(chunk_size - held, remaining)
            received = stream.read_into(view[held : held + want], timeout)
            if not received:
                raise UpstreamUnavailable("the upstream closed the connection in the middle of a blob")
            held += received
            remaining -= received
            if held == chunk_size or remaining == 0:
                yield bytes(view[:held])
                held = 0
        if held:  # the parser had the whole rest already
            yield bytes(view[:held])
        del pieces

    def close(self) -> None:
        self.response.close()

    def __enter__(self) -> HttpBlobStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def rechunk(pieces: Iterable[bytes], chunk_size: int) -> Iterator[bytes]:
    """The pieces as the connection received them (64 KiB each from httpcore), joined into chunks of
    `chunk_size` bytes (the last one shorter), copying each byte once. httpx's own chunking
    (`iter_bytes(chunk_size)`) copies it three times (into a buffer, out of it, then sliced): measured,
    that was as much CPU as the receiving itself, on the hot path of a first pull through the cache."""
    if chunk_size <= 0:
        raise ValueError("chunk_size must be positive")
    parts: list[bytes | memoryview] = []
    held = 0
    for piece in pieces:
        view = memoryview(piece)
        while len(view) >= chunk_size - held:
            cut = chunk_size - held
            parts.append(view[:cut])
            yield b"".join(parts)
            parts, held, view = [], 0, view[cut:]
        if view:
            parts.append(view)
            held += len(view)
    if parts:
        yield b"".join(parts)


class _NoCookies(httpx.Cookies):
    """Registries need no cookies (docker and containerd keep none). httpx's jar looks at every answer
    through urllib's views of it (the request's URL parsed again): 5% of a replication run's CPU."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None


class _Client(httpx.Client):
    """httpx's client without a cookie jar."""

    _no_cookies = _NoCookies()

    @property
    def cookies(self) -> httpx.Cookies:
        return self._no_cookies

    @cookies.setter
    def cookies(self, cookies: object) -> None:
        pass  # none kept


class HttpRemoteRegistry:
    def __init__(
        self,
        url: str,
        credentials: Credentials | None = None,
        *,
        guard: AddressGuard,
        tls: TLSOptions = DEFAULT_TLS,
        timeouts: Timeouts = DEFAULT_TIMEOUTS,
        user_agent: str = "dockyard",
    ) -> None:
        self.base = check_url(url)
        self._origin = _origin(httpx.URL(self.base))
        self.credentials = credentials
        self.timeouts = timeouts
        self.tokens = TokenCache()
        self._bearer: tuple[str, str] | None = None  # (realm, service) once the registry named them
        self._basic = False  # the registry asked for Basic: send it up front
        self.http = _Client(
            transport=guarded_transport(guard, tls),
            timeout=httpx.Timeout(timeouts.read, connect=timeouts.connect),
            follow_redirects=True,
            max_redirects=MAX_REDIRECTS,
            trust_env=False,
            headers={"User-Agent": user_agent},
        )

    # --- the API -----------------------------------------------------------------------------
    def check(self) -> Check:
        with deadline(self.timeouts.total):
            response = self._send("GET", f"{self.base}/v2/", "")
            response.close()
        self._raise_for(response, "the registry API")
        mode: Literal["none", "basic", "bearer"] = "none"
        if "authorization" in response.request.headers:
            mode = "bearer" if response.request.headers["authorization"].startswith("Bearer") else "basic"
        return Check(response.headers.get("docker-distribution-api-version"), mode)

    def head_manifest(
        self, repository: str, reference: str, accept: Sequence[str] = DEFAULT_ACCEPT
    ) -> ManifestInfo:
        url = self._manifest_url(repository, reference)
        with deadline(self.timeouts.total):
            response = self._send("HEAD", url, _pull(repository), {"Accept": ", ".join(accept)})
            response.close()
        self._raise_for(response, f"manifest {repository}:{reference}")
        digest = response.headers.get("docker-content-digest")
        if looks_like_digest(reference) and digest and digest != reference:
            raise UpstreamError(f"the upstream answered {digest} for {reference}")
        return ManifestInfo(
            _media_type(response.headers.get("content-type", "")),
            digest or (reference if looks_like_digest(reference) else None),
            int(response.headers.get("content-length") or 0),
        )

    def get_manifest(
        self, repository: str, reference: str, accept: Sequence[str] = DEFAULT_ACCEPT
    ) -> Manifest:
        url = self._manifest_url(repository, reference)
        with deadline(self.timeouts.total):
            response = self._send("GET", url, _pull(repository), {"Accept": ", ".join(accept)})
            try:
                self._raise_for(response, f"manifest {repository}:{reference}")
                data = self._read_limited(response, MAX_MANIFEST_BYTES, "manifest")
            finally:
                response.close()
        expected = (
            reference if looks_like_digest(reference) else response.headers.get("docker-content-digest")
        )
        digest = _verified_digest(data, expected)
        media_type = _media_type(response.headers.get("content-type", "")) or _declared_type(data)
        return Manifest(media_type, digest, data)

    def head_blob(self, repository: str, digest: str) -> int:
        url = self._blob_url(repository, digest)
        with deadline(self.timeouts.total):
            response = self._send("HEAD", url, _pull(repository))
            response.close()
        self._raise_for(response, f"blob {digest}")
        length = response.headers.get("content-length")
        if length is None or not length.isdigit():
            raise UpstreamError(f"the upstream gave no size for blob {digest}")
        return int(length)

    def open_blob(self, repository: str, digest: str, offset: int = 0) -> HttpBlobStream:
        if offset < 0:
            raise ValueError("offset must not be negative")
        url = self._blob_url(repository, digest)
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        # The deadline covers the answer's headers; the body is bounded by the read timeout per chunk
        # (a blob may rightly take longer than any total).
        with deadline(self.timeouts.total):
            response = self._send("GET", url, _pull(repository), headers)
        try:
            self._raise_for(response, f"blob {digest}")
            start, size = _content_range(response)
        except BaseException:
            response.close()
            raise
        return HttpBlobStream(response, start, size)

    def list_tags(self, repository: str, limit: int = 10_000) -> list[str]:
        validate_name(repository)
        url: str | None = f"{self.base}/v2/{repository}/tags/list"
        tags: list[str] = []
        while url is not None and len(tags) < limit:
            with deadline(self.timeouts.total):
                response = self._send("GET", url, _pull(repository))
                try:
                    self._raise_for(response, f"repository {repository}")
                    page = _json(self._read_limited(response, MAX_TAGS_PAGE, "tag list"))
                finally:
                    response.close()
            tags.extend(tag for tag in (page.get("tags") or []) if isinstance(tag, str))
            url = self._next_page(response)
        return tags[:limit]

    def catalog(self, limit: int = 100_000) -> list[str]:
        """The registry's repositories (`/v2/_catalog`, following `Link` pages), at most `limit`. A
        registry without a catalog (Docker Hub) answers UpstreamUnauthorized or UpstreamNotFound."""
        url: str | None = f"{self.base}/v2/_catalog?n=1000"
        names: list[str] = []
        while url is not None and len(names) < limit:
            with deadline(self.timeouts.total):
                response = self._send("GET", url, "registry:catalog:*")
                try:
                    self._raise_for(response, "the catalog")
                    page = _json(self._read_limited(response, MAX_TAGS_PAGE, "catalog"))
                finally:
                    response.close()
            names.extend(name for name in (page.get("repositories") or []) if isinstance(name, str))
            url = self._next_page(response)
        return names[:limit]

    def referrers(self, repository: str, digest: str) -> list[dict[str, Any]] | None:
        """The descriptors of the manifests whose `subject` is `digest` (the OCI referrers API); None
        when the registry has no referrers API (a 404 that is not an OCI image index)."""
        validate_name(repository)
        parse_digest(digest)
        with deadline(self.timeouts.total):
            response = self._send("GET", f"{self.base}/v2/{repository}/referrers/{digest}", _pull(repository))
            try:
                if response.status_code == 404:
                    return None
                self._raise_for(response, f"the referrers of {digest}")
                index = _json(self._read_limited(response, MAX_MANIFEST_BYTES, "referrers"))
            finally:
                response.close()
        manifests = index.get("manifests")
        if not isinstance(manifests, list):
            return None
        return [item for item in manifests if isinstance(item, dict) and isinstance(item.get("digest"), str)]

    # --- writing (replication's push direction) -----------------------------------------------------
    def has_blob(self, repository: str, digest: str) -> bool:
        try:
            self.head_blob(repository, digest)
        except UpstreamNotFound:
            return False
        return True

    def mount_blob(self, repository: str, digest: str, source: str) -> bool:
        """A cross-repository mount of `digest` from `source`: whether the registry linked it (201);
        False when it offers an upload instead (which is cancelled)."""
        response = self._mount(repository, digest, source)
        if response.status_code == 201:
            return True
        if response.headers.get("location"):  # 202: an upload was started for us; we upload elsewhere
            self.cancel_upload(repository, self._location(response))
        return False

    def mount_or_upload(self, repository: str, digest: str, source: str) -> str | None:
        """POST `?mount=<digest>&from=<source>`: None when the registry linked the blob (201), else the
        URL of the upload it started instead (202), which the caller sends the blob to or cancels.
        `source` may be `repository` itself: a registry that mounts says 201 when the repository has
        the blob, an upload when it has not, in one request where a HEAD and a POST take two."""
        response = self._mount(repository, digest, source)
        return None if response.status_code == 201 else self._location(response)

    def _mount(self, repository: str, digest: str, source: str) -> httpx.Response:
        validate_name(repository)
        validate_name(source)
        parse_digest(digest)
        url = f"{self.base}/v2/{repository}/blobs/uploads/?mount={digest}&from={source}"
        scope = _push(repository) if source == repository else f"{_push(repository)} {_pull(source)}"
        with deadline(self.timeouts.total):
            response = self._send("POST", url, scope)
            response.close()
        self._raise_for(response, f"a mount of {digest}")
        return response

    def cancel_upload(self, repository: str, location: str) -> None:
        """DELETE an upload we will not finish (best effort: the registry expires it anyway)."""
        with contextlib.suppress(UpstreamError), deadline(self.timeouts.total):
            self._upload_request("DELETE", location, repository).close()

    def push_blob(self, repository: str, digest: str, size: int, chunks: Iterable[bytes]) -> None:
        """Upload a blob from `chunks`: a POST for the session, then one PUT with the digest and the
        body (streamed, with its Content-Length), which the registry verifies. Bounded by the read
        timeout per write, not by a total."""
        parse_digest(digest)
        self.finish_upload(repository, self.start_upload(repository), digest, size, chunks)

    def start_upload(self, repository: str) -> str:
        """POST for an upload session; the URL to send its bytes to."""
        validate_name(repository)
        with deadline(self.timeouts.total):
            response = self._send("POST", f"{self.base}/v2/{repository}/blobs/uploads/", _push(repository))
            response.close()
        self._raise_for(response, f"an upload to {repository}")
        return self._location(response)

    def upload_status(self, repository: str, location: str) -> tuple[int, str]:
        """(bytes the registry holds of an upload, the URL to continue it at): a GET on the upload's
        URL, answered with `Range: 0-<last byte>` (the OCI spec's chunked upload). An upload the
        registry dropped (registry:2 drops one whose PUT or PATCH was cut off) is UpstreamNotFound
        or another UpstreamError."""
        with deadline(self.timeouts.total):
            response = self._upload_request("GET", location, repository)
            response.close()
        if response.status_code == 200:  # not 204: something else than an upload's status
            raise UpstreamError("the upstream answered an upload's status with 200")
        self._raise_for(response, "an upload's status")
        first, _, last = response.headers.get("range", "").partition("-")
        if first != "0" or not last.isdigit():
            raise UpstreamError("the upstream answered an upload's status without a valid Range")
        # "0-0" is what registries say of an empty upload (and of one of one byte: sent again).
        held = int(last) + 1 if int(last) > 0 else 0
        return held, self._location(response) if response.headers.get("location") else location

    def patch_upload(
        self, repository: str, location: str, offset: int, size: int, chunks: Iterable[bytes]
    ) -> str:
        """Send the upload's bytes from `offset` to the end (`size`) in one PATCH with a Content-Range;
        the URL to continue at."""
        headers = {
            "Content-Type": "application/octet-stream",
            "Content-Range": f"{offset}-{size - 1}",
            "Content-Length": str(size - offset),
        }
        response = self._upload_request("PATCH", location, repository, headers, chunks)
        response.close()
        self._raise_for(response, "a chunk of an upload")
        return self._location(response) if response.headers.get("location") else location

    def finish_upload(
        self, repository: str, location: str, digest: str, size: int = 0, chunks: Iterable[bytes] = ()
    ) -> None:
        """PUT `?digest=`, with the upload's last `size` bytes as the body (none: all were sent): the
        registry verifies the digest and records the blob."""
        target = httpx.URL(location).copy_merge_params({"digest": digest})  # parsed once, sent as is
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
        response = self._upload_request("PUT", target, repository, headers, chunks if size else b"")
        response.close()
        self._raise_for(response, f"the upload of {digest}")

    def _upload_request(
        self,
        method: str,
        location: str | httpx.URL,
        repository: str,
        headers: dict[str, str] | None = None,
        content: bytes | Iterable[bytes] | None = None,
    ) -> httpx.Response:
        """A request on an upload's URL; one on another host than the endpoint's (object storage, say)
        gets no credentials of ours."""
        url = location if isinstance(location, httpx.URL) else httpx.URL(location)
        if _origin(url) == self._origin:
            return self._send(method, url, _push(repository), headers, content=content)
        return self._once(method, url, headers or {}, content)

    def put_manifest(self, repository: str, reference: str, media_type: str, data: bytes) -> str:
        """PUT a manifest's exact bytes by tag or digest; the digest the registry answered."""
        url = self._manifest_url(repository, reference)
        with deadline(self.timeouts.total):
            response = self._send("PUT", url, _push(repository), {"Content-Type": media_type}, content=data)
            response.close()
        self._raise_for(response, f"manifest {repository}:{reference}")
        return response.headers.get("docker-content-digest") or _verified_digest(data, None)

    def delete_manifest(self, repository: str, reference: str) -> None:
        """DELETE a manifest (by digest) or a tag (registries that allow it)."""
        url = self._manifest_url(repository, reference)
        with deadline(self.timeouts.total):
            response = self._send("DELETE", url, f"repository:{repository}:delete")
            response.close()
        self._raise_for(response, f"manifest {repository}:{reference}")

    def close(self) -> None:
        self.http.close()

    def _location(self, response: httpx.Response) -> str:
        location = response.headers.get("location")
        if not location:
            raise UpstreamError("the upstream started an upload without a Location")
        # Every connection to it goes through the address guard as any other; one on another host than
        # the endpoint's gets no credentials (as httpx drops them on redirects there).
        return str(response.request.url.join(location))

    # --- requests and authentication -------------------------------------------------------------
    def _send(
        self,
        method: str,
        url: str | httpx.URL,
        scope: str,
        headers: dict[str, str] | None = None,
        content: bytes | Iterable[bytes] | None = None,
    ) -> httpx.Response:
        """The answer, streamed (callers read bodies with a limit, or close them): an upstream cannot
        fill our memory. A streamed `content` is sent once: a 401 to it is the answer (send a request
        without a body first, so the credentials are known up front)."""
        headers = dict(headers or {})
        sent = self._authorization_for(scope)
        response = self._once(method, url, {**headers, **sent}, content)
        if response.status_code != 401 or (self.credentials is not None and self.credentials.kind == "token"):
            return response
        if content is not None and not isinstance(content, bytes):
            return response
        challenges = response.headers.get_list("www-authenticate")
        response.close()
        authorization = self._answer_challenge(challenges, scope, retry=bool(sent))
        if authorization is None:
            return response  # nothing to answer with: the caller reports the 401
        response = self._once(method, url, {**headers, "Authorization": authorization}, content)
        if response.status_code == 401 and self._bearer is not None:
            self.tokens.drop((*self._bearer, scope))
        return response

    def _once(
        self,
        method: str,
        url: str | httpx.URL,
        headers: dict[str, str],
        content: bytes | Iterable[bytes] | None = None,
    ) -> httpx.Response:
        try:
            request = self.http.build_request(method, url, headers=headers, content=content)
            response = self.http.send(request, stream=True)
            if method == "HEAD" or response.headers.get("content-length") == "0":
                # Read the end of an answer with no body: closed unread, its connection would be
                # closed with it (httpcore keeps one only once both messages are complete), and the
                # next request would open another (a HEAD, POST and PUT per blob copied: three).
                response.read()
            return response
        except UpstreamError:
            raise
        except httpx.TimeoutException:
            raise UpstreamUnavailable(
                f"the upstream did not answer in time ({method} {_where(url)})"
            ) from None
        except httpx.TooManyRedirects:
            raise UpstreamError(f"too many redirects ({method} {_where(url)})") from None
        except httpx.UnsupportedProtocol as exc:
            raise UpstreamInvalid(f"the upstream redirected to an unsupported URL: {exc}") from None
        except httpx.HTTPError as exc:
            raise UpstreamUnavailable(f"cannot reach the upstream: {exc}") from None

    def _authorization_for(self, scope: str) -> dict[str, str]:
        credentials = self.credentials
        if credentials is not None and credentials.kind == "token":
            return {"Authorization": f"Bearer {credentials.secret}"}
        if self._bearer is not None:
            # The registry named its token server before: a token for this scope up front (renewed when
            # the cached one is near its expiry), saving the 401 round trip.
            token = self.tokens.get((*self._bearer, scope))
            if token is None:
                token, lifetime = self._fetch_token(*self._bearer, scope)
                self.tokens.put((*self._bearer, scope), token, lifetime)
            return {"Authorization": f"Bearer {token}"}
        if self._basic and credentials is not None:
            return {"Authorization": _basic(credentials)}
        return {}

    def _answer_challenge(self, challenges: list[str], scope: str, retry: bool) -> str | None:
        bearer = find_challenge(challenges, "bearer")
        if bearer is not None and bearer.realm:
            service = bearer.params.get("service", "")
            self._bearer = (bearer.realm, service)
            self.tokens.drop((bearer.realm, service, scope))  # refused: a fresh one, once
            token, lifetime = self._fetch_token(bearer.realm, service, bearer.params.get("scope") or scope)
            self.tokens.put((bearer.realm, service, scope), token, lifetime)
            return f"Bearer {token}"
        if find_challenge(challenges, "basic") is not None and self.credentials is not None:
            if retry and self._basic:
                return None  # the same credentials were just refused
            self._basic = True
            return _basic(self.credentials)
        return None

    def _fetch_token(self, realm: str, service: str, scope: str) -> tuple[str, float]:
        params: list[tuple[str, str | int | float | bool | None]] = [("service", service)] if service else []
        params += [("scope", part) for part in scope.split(" ") if part]
        headers = {"Authorization": _basic(self.credentials)} if self.credentials is not None else {}
        try:
            url = str(httpx.URL(realm).copy_merge_params(params))
        except (httpx.InvalidURL, TypeError) as exc:
            raise UpstreamInvalid(f"the upstream named an invalid token realm: {exc}") from None
        response = self._once("GET", url, headers)
        try:
            if response.status_code in (401, 403):
                raise UpstreamUnauthorized("the token server refused the endpoint's credentials")
            self._raise_for(response, "a token")
            answer = _json(self._read_limited(response, MAX_TOKEN_ANSWER, "token answer"))
        finally:
            response.close()
        token = token_of(answer)
        if token is None:
            raise UpstreamError("the token server answered without a token")
        return token, token_lifetime(answer)

    # --- answers ---------------------------------------------------------------------------------
    def _raise_for(self, response: httpx.Response, what: str) -> None:
        status = response.status_code
        if 200 <= status < 300:
            return
        if status == 404:
            raise UpstreamNotFound(f"{what} is not on the upstream")
        if status in (401, 403):
            raise UpstreamUnauthorized(f"the upstream refused access to {what} ({status})")
        if status == 429 or status >= 500:
            raise UpstreamUnavailable(f"the upstream answered {status} for {what}", status=status)
        raise UpstreamError(f"the upstream answered {status} for {what}")

    def _read_limited(self, response: httpx.Response, limit: int, what: str) -> bytes:
        body = bytearray()
        try:
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > limit:
                    raise UpstreamInvalid(f"the upstream's {what} is larger than {limit} bytes")
        except httpx.TimeoutException:
            raise UpstreamUnavailable(f"the upstream did not send the {what} in time") from None
        except httpx.HTTPError as exc:
            raise UpstreamUnavailable(f"the upstream failed while sending the {what}: {exc}") from None
        return bytes(body)

    def _next_page(self, response: httpx.Response) -> str | None:
        link = response.headers.get("link")
        if not link or 'rel="next"' not in link:
            return None
        target = response.request.url.join(link.split(";", 1)[0].strip().strip("<>"))
        if (target.scheme, target.netloc) != (response.request.url.scheme, response.request.url.netloc):
            raise UpstreamError("the upstream's next page is on another host")
        return str(target)

    def _manifest_url(self, repository: str, reference: str) -> str:
        validate_name(repository)
        if looks_like_digest(reference) or ":" in reference:
            parse_digest(reference)
        elif not reference or "/" in reference or len(reference) > 128:
            raise UpstreamInvalid(f"invalid reference {reference!r}")
        return f"{self.base}/v2/{repository}/manifests/{reference}"

    def _blob_url(self, repository: str, digest: str) -> str:
        validate_name(repository)
        parse_digest(digest)
        return f"{self.base}/v2/{repository}/blobs/{digest}"


def _pull(repository: str) -> str:
    return f"repository:{repository}:pull"


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host, url.port


def _push(repository: str) -> str:
    return f"repository:{repository}:pull,push"


def _basic(credentials: Credentials | None) -> str:
    assert credentials is not None
    raw = f"{credentials.username}:{credentials.secret}".encode()
    return "Basic " + base64.b64encode(raw).decode()


def _where(url: str | httpx.URL) -> str:
    parsed = httpx.URL(url)
    return f"{parsed.scheme}://{parsed.netloc.decode()}{parsed.path}"


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip()


def _declared_type(data: bytes) -> str:
    try:
        media_type = json.loads(data).get("mediaType")
    except (ValueError, AttributeError):
        return ""
    return media_type if isinstance(media_type, str) else ""


def _json(data: bytes) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except ValueError:
        raise UpstreamError("the upstream answered with invalid JSON") from None
    if not isinstance(value, dict):
        raise UpstreamError("the upstream answered with JSON that is not an object")
    return value


def _verified_digest(data: bytes, expected: str | None) -> str:
    """The manifest's digest: `expected` (the reference, or the upstream's header) when the bytes match
    it, else an error; sha256 of the bytes when nothing was expected."""
    if not expected:
        return "sha256:" + hashlib.sha256(data).hexdigest()
    digest = parse_digest(expected)
    actual = f"{digest.algorithm}:{hashlib.new(digest.algorithm, data).hexdigest()}"
    if actual != expected:
        raise UpstreamError(f"the upstream's manifest bytes do not match {expected}")
    return expected


def _content_range(response: httpx.Response) -> tuple[int, int | None]:
    """(where the body starts, the blob's full size) from a 200 or 206 answer."""
    if response.status_code == 206:
        unit, _, spec = response.headers.get("content-range", "").partition(" ")
        first, _, rest = spec.partition("-")
        total = rest.partition("/")[2]
        if unit != "bytes" or not first.isdigit():
            raise UpstreamError("the upstream answered a range without a valid Content-Range")
        return int(first), int(total) if total.isdigit() else None
    length = response.headers.get("content-length")
    return 0, int(length) if length and length.isdigit() else None
