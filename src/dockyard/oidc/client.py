"""The provider, spoken to over HTTPS with httpx: its discovery document and JWKS (cached; the JWKS
fetched again when a token names a key it does not hold, at most once per `JWKS_REFETCH` seconds),
the code exchange and userinfo. Every call has the configured timeout, follows no redirect, reads at
most `MAX_DOCUMENT` bytes and ignores proxy variables' hosts no more than httpx does."""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote_plus, urlsplit

import httpx

from dockyard.config.auth_settings import OIDCSettings
from dockyard.observability.logging import get_logger
from dockyard.oidc.interfaces import OIDCLoginFailed, OIDCUnavailable

log = get_logger("dockyard.oidc.client")
METADATA_TTL = 3600.0
JWKS_TTL = 3600.0
JWKS_REFETCH = 10.0  # a storm of tokens with unknown kids fetches the JWKS at most this often
MAX_DOCUMENT = 1024 * 1024


@dataclass(frozen=True, slots=True)
class ProviderMetadata:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    userinfo_endpoint: str | None
    token_auth_methods: tuple[str, ...]


class OIDCClient:
    def __init__(
        self,
        settings: OIDCSettings,
        redirect_uri: str,
        http: httpx.Client | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self.redirect_uri = redirect_uri
        self._http = http or httpx.Client(
            timeout=httpx.Timeout(settings.timeout),
            verify=_verify(settings),
            follow_redirects=False,
        )
        self._clock = clock
        self._lock = threading.Lock()
        self._metadata: tuple[float, ProviderMetadata] | None = None
        self._jwks: tuple[float, dict[str, Any]] | None = None

    # --- discovery and keys -------------------------------------------------------------------------
    def metadata(self) -> ProviderMetadata:
        with self._lock:
            cached = self._metadata
        if cached is not None and self._clock() - cached[0] < METADATA_TTL:
            return cached[1]
        url = self._settings.issuer.rstrip("/") + "/.well-known/openid-configuration"
        document = self._get_json(url)
        metadata = _metadata(document, self._settings.issuer)
        with self._lock:
            self._metadata = (self._clock(), metadata)
        return metadata

    def jwks(self, refresh: bool = False) -> dict[str, Any]:
        with self._lock:
            cached = self._jwks
        now = self._clock()
        if cached is not None:
            age = now - cached[0]
            if age < JWKS_TTL and (not refresh or age < JWKS_REFETCH):
                return cached[1]
        document = self._get_json(self.metadata().jwks_uri)
        if not isinstance(document.get("keys"), list):
            raise OIDCUnavailable("the provider's JWKS has no keys", detail={"url": self.metadata().jwks_uri})
        with self._lock:
            self._jwks = (self._clock(), document)
        return document

    def check(self) -> dict[str, Any]:
        """Ask the provider now, its discovery document and JWKS afresh (they replace the cached ones):
        what an administrator's "test" shows. `ok` false with `error` when it fails."""
        with self._lock:
            self._metadata = self._jwks = None
        found: dict[str, Any] = {"ok": False, "error": None, "issuer": self._settings.issuer}
        found["redirect_uri"] = self.redirect_uri
        try:
            metadata = self.metadata()
            found.update(
                authorization_endpoint=metadata.authorization_endpoint,
                token_endpoint=metadata.token_endpoint,
                userinfo_endpoint=metadata.userinfo_endpoint,
            )
            keys = self.jwks()["keys"]
        except OIDCUnavailable as error:
            detail = f" ({error.detail})" if error.detail else ""
            found["error"] = f"{error.message}{detail}"
            return found
        usable = [key for key in keys if isinstance(key, dict) and key.get("kty") in ("RSA", "EC", "OKP")]
        found.update(ok=bool(usable), signing_keys=len(usable))
        if not usable:
            found["error"] = "the provider's JWKS has no RSA, EC or OKP key to verify ID tokens with"
        return found

    # --- the code flow ------------------------------------------------------------------------------
    def exchange(self, code: str, code_verifier: str) -> dict[str, Any]:
        """The token endpoint's answer for this code (PKCE's verifier, the fixed redirect URI)."""
        metadata = self.metadata()
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.redirect_uri,
            "code_verifier": code_verifier,
        }
        auth: httpx.BasicAuth | None = None
        settings = self._settings
        if "client_secret_basic" in metadata.token_auth_methods or not metadata.token_auth_methods:
            # RFC 6749 2.3.1: both are form-urlencoded before they are joined.
            auth = httpx.BasicAuth(_form(settings.client_id), _form(settings.client_secret))
        else:
            form.update(client_id=settings.client_id, client_secret=settings.client_secret)
        status, body = self._request("POST", metadata.token_endpoint, data=form, auth=auth)
        if 400 <= status < 500:
            log.warning("oidc: the token endpoint refused the code", status=status, error=_error_code(body))
            raise OIDCLoginFailed("the provider refused the authorization code")
        return _json(status, body, metadata.token_endpoint)

    def userinfo(self, access_token: str) -> dict[str, Any] | None:
        endpoint = self.metadata().userinfo_endpoint
        if endpoint is None:
            return None
        status, body = self._request("GET", endpoint, headers={"Authorization": f"Bearer {access_token}"})
        if 400 <= status < 500:
            raise OIDCLoginFailed("the provider refused the access token at its userinfo endpoint")
        return _json(status, body, endpoint)

    # --- plumbing -----------------------------------------------------------------------------------
    def _get_json(self, url: str) -> dict[str, Any]:
        return _json(*self._request("GET", url), url)

    def _request(self, method: str, url: str, **kwargs: Any) -> tuple[int, bytes]:
        """(status, body) of one call; OIDCUnavailable when the provider cannot be reached or sends
        more than MAX_DOCUMENT bytes."""
        try:
            with self._http.stream(method, url, **kwargs) as response:
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > MAX_DOCUMENT:
                        raise OIDCUnavailable("the provider's answer is too large", detail={"url": url})
                return response.status_code, bytes(body)
        except httpx.HTTPError as error:
            log.warning("oidc: provider unreachable", url=url, error=str(error))
            raise OIDCUnavailable(detail={"url": url, "error": str(error)}) from error


def _json(status: int, body: bytes, url: str) -> dict[str, Any]:
    if status != 200:
        raise OIDCUnavailable(f"the provider answered {status}", detail={"url": url})
    try:
        document = json.loads(body)
    except ValueError:
        raise OIDCUnavailable("the provider's answer is not JSON", detail={"url": url}) from None
    if not isinstance(document, dict):
        raise OIDCUnavailable("the provider's answer is not a JSON object", detail={"url": url})
    return document


def _metadata(document: dict[str, Any], issuer: str) -> ProviderMetadata:
    """The discovery document, checked: its issuer is exactly the configured one (Discovery 4.3), and
    every endpoint is https (http only on loopback, as the issuer may be)."""
    if document.get("issuer") != issuer:
        raise OIDCUnavailable(
            "the provider's discovery document names another issuer",
            detail={"expected": issuer, "got": str(document.get("issuer"))[:200]},
        )
    endpoints: dict[str, str | None] = {}
    for name in ("authorization_endpoint", "token_endpoint", "jwks_uri", "userinfo_endpoint"):
        value = document.get(name)
        if value is None and name == "userinfo_endpoint":
            endpoints[name] = None
            continue
        if not isinstance(value, str) or not _safe_url(value):
            raise OIDCUnavailable(f"the provider's discovery document has no usable {name}")
        endpoints[name] = value
    methods = document.get("token_endpoint_auth_methods_supported") or []
    return ProviderMetadata(
        issuer=issuer,
        authorization_endpoint=str(endpoints["authorization_endpoint"]),
        token_endpoint=str(endpoints["token_endpoint"]),
        jwks_uri=str(endpoints["jwks_uri"]),
        userinfo_endpoint=endpoints["userinfo_endpoint"],
        token_auth_methods=tuple(str(method) for method in methods if isinstance(method, str)),
    )


def _safe_url(url: str) -> bool:
    parts = urlsplit(url)
    loopback = parts.hostname in ("127.0.0.1", "::1", "localhost")
    return bool(parts.hostname) and (parts.scheme == "https" or (parts.scheme == "http" and loopback))


def _verify(settings: OIDCSettings) -> ssl.SSLContext | bool:
    if settings.ca_file is None:
        return True
    return ssl.create_default_context(cafile=str(settings.ca_file))


def _form(value: str) -> str:
    return quote_plus(value)


def _error_code(body: bytes) -> str:
    try:
        return str(json.loads(body).get("error", ""))[:64]
    except (ValueError, AttributeError):
        return ""
