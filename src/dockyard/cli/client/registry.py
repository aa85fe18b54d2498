"""A small client of a registry's `/v2` API, for the CLI commands that write artifacts (`dockyard artifact
sign`, `dockyard artifact tag`): read a manifest, push a small blob, put a manifest.

Authentication answers the registry's challenge, as docker does: a 401 with `Bearer realm=...` gets a
token for the repository's scope from the realm with the Basic credentials; a 401 with `Basic` gets the
credentials. Only small documents pass through it (manifests, signature payloads), read in memory.
"""

from __future__ import annotations

import base64
import hashlib
import ssl
from typing import Any

import httpx

from dockyard.cli.client.errors import CliError
from dockyard.cli.client.http import connect_message
from dockyard.cli.client.urls import segment
from dockyard.upstream.tokens import find_challenge, token_of

MANIFEST_ACCEPT = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)
MAX_MANIFEST_BYTES = 4 << 20
TIMEOUT_SECONDS = 60.0


def sha256(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


class RegistryClient:
    def __init__(
        self,
        server: str,
        auth: tuple[str, str] | None,
        verify: bool | ssl.SSLContext = True,
        timeout: float = TIMEOUT_SECONDS,
    ) -> None:
        self.server = server
        self._auth = auth
        self._http = httpx.Client(
            base_url=server, verify=verify, timeout=timeout, headers={"User-Agent": "dockyard-cli"}
        )
        self._authorization: dict[str, str] = {}  # per scope: the Authorization header to send

    def close(self) -> None:
        self._http.close()

    # --- the distribution API -----------------------------------------------------------------
    def get_manifest(self, repository: str, reference: str) -> tuple[bytes, str, str]:
        """(bytes, media type, digest) of a manifest, by tag or digest."""
        response = self._send(
            "GET", repository, f"manifests/{segment(reference)}", headers={"Accept": MANIFEST_ACCEPT}
        )
        data = response.content
        if len(data) > MAX_MANIFEST_BYTES:
            raise CliError(f"{repository}:{reference}: the manifest is larger than 4 MiB")
        media_type = response.headers.get("content-type", "").split(";")[0].strip()
        return data, media_type, sha256(data)

    def push_blob(self, repository: str, data: bytes) -> str:
        """Upload `data` (monolithic: POST then PUT) unless the repository has it; its digest."""
        digest = sha256(data)
        head = self._send("HEAD", repository, f"blobs/{digest}", allowed=(404,))
        if head.status_code == 200:
            return digest
        started = self._send("POST", repository, "blobs/uploads/")
        location = started.headers.get("location")
        if not location:
            raise CliError(f"{self.server} started an upload without a Location")
        self._send(
            "PUT",
            repository,
            location,
            params={"digest": digest},
            content=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        return digest

    def put_manifest(self, repository: str, reference: str, data: bytes, media_type: str) -> str:
        """Store a manifest under a tag (or its digest); the digest the registry computed."""
        response = self._send(
            "PUT",
            repository,
            f"manifests/{segment(reference)}",
            content=data,
            headers={"Content-Type": media_type},
        )
        return response.headers.get("docker-content-digest") or sha256(data)

    # --- requests with the registry's authentication ------------------------------------------
    def _send(
        self, method: str, repository: str, path: str, allowed: tuple[int, ...] = (), **kwargs: Any
    ) -> httpx.Response:
        url = path if path.startswith(("http://", "https://", "/")) else f"/v2/{repository}/{path}"
        actions = "pull" if method in ("GET", "HEAD") else "pull,push"
        scope = f"repository:{repository}:{actions}"
        response = self._request(method, url, scope, **kwargs)
        if response.status_code == 401:
            self._answer(response, scope)
            response = self._request(method, url, scope, **kwargs)
        if response.is_error and response.status_code not in allowed:
            raise _failure(response, self.server)
        return response

    def _request(
        self, method: str, url: str, scope: str, headers: dict[str, str] | None = None, **kwargs: Any
    ) -> httpx.Response:
        headers = dict(headers or {})
        if scope in self._authorization:
            headers["Authorization"] = self._authorization[scope]
        try:
            return self._http.request(method, url, headers=headers, **kwargs)
        except httpx.ConnectError as exc:
            raise CliError(connect_message(self.server, exc)) from None
        except httpx.HTTPError as exc:
            raise CliError(f"cannot talk to {self.server}: {exc or type(exc).__name__}") from None

    def _answer(self, response: httpx.Response, scope: str) -> None:
        """Learn from a 401 how to authenticate for `scope`."""
        headers = response.headers.get_list("www-authenticate")
        if self._auth is None:
            raise CliError(f"{self.server} asks for credentials: set DOCKYARD_USERNAME and DOCKYARD_PASSWORD")
        bearer = find_challenge(headers, "bearer")
        if bearer is None or not bearer.realm:
            pair = base64.b64encode(":".join(self._auth).encode()).decode()
            self._authorization[scope] = f"Basic {pair}"
            return
        params = {"scope": scope}
        if "service" in bearer.params:
            params["service"] = bearer.params["service"]
        try:
            answer = self._http.get(bearer.realm, params=params, auth=httpx.BasicAuth(*self._auth))
        except httpx.HTTPError as exc:
            raise CliError(f"cannot get a token from {bearer.realm}: {exc}") from None
        if answer.status_code == 401:
            raise CliError(f"{self.server} refused the credentials of {self._auth[0]} (HTTP 401)")
        if answer.is_error:
            raise _failure(answer, self.server)
        token = token_of(answer.json())
        if token is None:
            raise CliError(f"{bearer.realm} answered without a token")
        self._authorization[scope] = f"Bearer {token}"


class RegistryFailure(CliError):
    """The registry answered with an error (the spec's `{"errors": [...]}`)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _failure(response: httpx.Response, server: str) -> RegistryFailure:
    try:
        errors = response.json()["errors"]
        detail = "; ".join(f"{error['code']}: {error.get('message', '')}".rstrip(": ") for error in errors)
    except (ValueError, KeyError, IndexError, TypeError):
        detail = response.reason_phrase or "error"
    method, path = response.request.method, response.request.url.path
    return RegistryFailure(
        response.status_code, f"{server} refused {method} {path}: {detail} (HTTP {response.status_code})"
    )
