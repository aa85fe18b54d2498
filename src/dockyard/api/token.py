"""The token endpoint (Docker token spec): `GET /token` and the OAuth2 `POST /token` form.

GET (docker, podman, skopeo, buildah, oras): `service`, `scope` (repeated), `offline_token=true`,
`client_id`, `account`; Basic credentials, or none for an anonymous token.
POST (docker with a refresh token, containerd): form `grant_type=password|refresh_token`,
`username`/`password` or `refresh_token`, `service`, `client_id`, `scope` (space separated),
`access_type=offline` (or `offline_token=true`) for a refresh token.

The answer is `{token, access_token, expires_in, issued_at[, refresh_token]}` (POST adds `scope`).
Asking for more than allowed is not an error: the token carries the intersection. Wrong credentials
are a 401 that never says which part was wrong. Errors carry the registry's `errors` list and the
OAuth2 `error` member, so both kinds of client can show them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dockyard.accounts.names import is_robot_name
from dockyard.api.authorization import AuthorizationTooLarge, parse_authorization
from dockyard.audit.interfaces import (
    ActorKind,
    AuditAction,
    AuditEvent,
    AuditRecorder,
    AuditResult,
    ResourceType,
)
from dockyard.auth.interfaces import AuthenticationFailed, Scope
from dockyard.auth.remembered import decode_basic
from dockyard.auth.scopes import ScopeInvalid, format_scope, format_scopes, parse_scopes
from dockyard.auth.tokens import TokenGrant, TokenIssuer
from dockyard.errors import OCICode

log = logging.getLogger("dockyard.api.token")

MAX_FORM_BYTES = 64 * 1024
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_TRUE = frozenset({"true", "1", "yes"})


class TokenEndpoint:
    def __init__(
        self,
        issuer: TokenIssuer,
        service: str,
        path: str = "/token",
        audit: AuditRecorder | None = None,
        rename: Callable[[list[Scope]], list[Scope]] | None = None,
    ) -> None:
        self.issuer = issuer
        # Mirror mode (proxy.default_namespace): scopes as the router will check them (blocking: a thread).
        self.rename = rename
        self.service = service
        self.path = path
        self.audit = audit

    def routes(self) -> list[Route]:
        return [Route(self.path, self.handle, methods=["GET", "POST"])]

    async def handle(self, request: Request) -> Response:
        if request.method == "POST":
            return await self.post(request)
        return await self.get(request)

    async def get(self, request: Request) -> Response:
        params = request.query_params
        refused = self._check_service(params.get("service"), oauth=False)
        if refused:
            return refused
        try:
            requested = parse_scopes(params.getlist("scope"))
        except ScopeInvalid as exc:
            return _error(400, "invalid_scope", exc.message, oauth=False)
        if self.rename is not None and requested:
            requested = await anyio.to_thread.run_sync(self.rename, requested)
        header = request.headers.get("authorization")
        offline = params.get("offline_token", "").lower() in _TRUE
        if header is None:
            grant = await anyio.to_thread.run_sync(self.issuer.anonymous, requested)
            return _granted(grant, oauth=False)
        credentials = _basic_credentials(header)
        if credentials is None:
            return self._unauthorized(oauth=False)
        username, secret = credentials
        return await self._by_password(username, secret, requested, _client_ip(request), offline, oauth=False)

    async def post(self, request: Request) -> Response:
        form = await _read_form(request)
        if isinstance(form, Response):
            return form
        refused = self._check_service(_first(form, "service"), oauth=True)
        if refused:
            return refused
        try:
            requested = parse_scopes(form.get("scope", []))
        except ScopeInvalid as exc:
            return _error(400, "invalid_scope", exc.message, oauth=True)
        if self.rename is not None and requested:
            requested = await anyio.to_thread.run_sync(self.rename, requested)
        grant_type = _first(form, "grant_type")
        offline = _first(form, "access_type") == "offline" or _first(form, "offline_token").lower() in _TRUE
        if grant_type == "password":
            username, password = _first(form, "username"), _first(form, "password")
            if not username or not password:
                return _error(400, "invalid_request", "username and password are required", oauth=True)
            return await self._by_password(
                username, password, requested, _client_ip(request), offline, oauth=True
            )
        if grant_type == "refresh_token":
            refresh_token = _first(form, "refresh_token")
            if not refresh_token:
                return _error(400, "invalid_request", "refresh_token is required", oauth=True)
            try:
                grant = await anyio.to_thread.run_sync(self.issuer.by_refresh_token, refresh_token, requested)
            except AuthenticationFailed:
                return _error(400, "invalid_grant", "the refresh token is invalid or expired", oauth=True)
            return _granted(grant, oauth=True)
        return _error(
            400, "unsupported_grant_type", "grant_type must be password or refresh_token", oauth=True
        )

    async def _by_password(
        self,
        username: str,
        secret: str,
        requested: list[Scope],
        client_ip: str | None,
        offline: bool,
        oauth: bool,
    ) -> Response:
        try:
            grant = await anyio.to_thread.run_sync(
                self.issuer.by_password, username, secret, requested, client_ip, offline
            )
        except AuthenticationFailed:
            self._record(AuditAction.LOGIN_FAILED, username, client_ip, AuditResult.DENIED)
            return self._unauthorized(oauth)
        self._record(
            AuditAction.TOKEN_ISSUED,
            username,
            client_ip,
            AuditResult.OK,
            {"scopes": [format_scope(scope) for scope in grant.scopes]},
        )
        return _granted(grant, oauth)

    def _record(
        self,
        action: AuditAction,
        username: str,
        client_ip: str | None,
        result: AuditResult,
        detail: dict[str, Any] | None = None,
    ) -> None:
        if self.audit is None:
            return
        kind = ActorKind.ROBOT if is_robot_name(username) else ActorKind.USER
        self.audit.record(
            AuditEvent(
                action=action,
                actor=username[:255],
                actor_kind=kind,
                result=result,
                resource_type=ResourceType.TOKEN,
                client_ip=client_ip,
                detail=detail,
            )
        )

    def _check_service(self, service: str | None, oauth: bool) -> Response | None:
        if service and service != self.service:
            return _error(400, "invalid_request", f"this token service serves {self.service!r}", oauth)
        return None

    def _unauthorized(self, oauth: bool) -> Response:
        headers = {"WWW-Authenticate": f'Basic realm="{self.service}"'}
        return _error(
            401, "invalid_grant" if oauth else "unauthorized", "authentication required", oauth, headers
        )


def _granted(grant: TokenGrant, oauth: bool) -> Response:
    body: dict[str, Any] = {
        "token": grant.token.token,
        "access_token": grant.token.token,
        "expires_in": grant.token.expires_in,
        "issued_at": grant.token.issued_at,
    }
    if grant.refresh_token:
        body["refresh_token"] = grant.refresh_token
    if oauth:
        body["scope"] = format_scopes(grant.scopes)
    return Response(json.dumps(body), media_type="application/json", headers=_NO_STORE)


def _error(
    status: int, oauth_error: str, message: str, oauth: bool, headers: dict[str, str] | None = None
) -> Response:
    code = OCICode.UNAUTHORIZED if status == 401 else OCICode.DENIED if status == 403 else OCICode.UNSUPPORTED
    body: dict[str, Any] = {"errors": [{"code": code, "message": message}]}
    if oauth:
        body["error"] = oauth_error
        body["error_description"] = message
    return Response(
        json.dumps(body),
        status_code=status,
        media_type="application/json",
        headers={**_NO_STORE, **(headers or {})},
    )


def _basic_credentials(header: str) -> tuple[str, str] | None:
    try:
        authorization = parse_authorization(header)
    except AuthorizationTooLarge:
        return None
    if authorization is None or not authorization.is_basic:
        return None
    return decode_basic(authorization.credentials)


async def _read_form(request: Request) -> dict[str, list[str]] | Response:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        return _error(
            400, "invalid_request", "expected an application/x-www-form-urlencoded body", oauth=True
        )
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            return _error(413, "invalid_request", "the form is too large", oauth=True)
    try:
        return parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=200)
    except (UnicodeDecodeError, ValueError):
        return _error(400, "invalid_request", "the form cannot be parsed", oauth=True)


def _first(form: dict[str, list[str]], name: str) -> str:
    values = form.get(name)
    return values[0] if values else ""


def _client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None
