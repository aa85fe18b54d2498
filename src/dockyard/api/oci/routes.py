"""The /v2 route table (OCI Distribution Spec v1.1) and its dispatcher.

Repository names contain slashes, so each path is matched once against one expression that
splits it into name and action, instead of trying a list of routes in turn: this is the hot path.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from dockyard.api.oci import blobs, listings, manifests, uploads
from dockyard.api.oci.auditing import AUDITED_METHODS, record_request
from dockyard.api.oci.context import OCIContext
from dockyard.api.oci.errors import error_response, render_error
from dockyard.api.oci.gate import PRINCIPAL_KEY, Gate
from dockyard.api.oci.limits import RequestLimits
from dockyard.api.oci.proxying import mirror_name, refuse_push
from dockyard.api.oci.request_bodies import finish_unread_body, watch_body
from dockyard.errors import OCICode

Handler = Callable[..., Awaitable[Response]]
ROUTE_KEY = "dockyard.route"  # the route template, read by the observability middleware
_MATCH_KEY = "dockyard.route_match"
_DENIALS = frozenset({401, 403})

_PATH = re.compile(
    r"^/v2/(?P<name>.+?)/(?:"
    r"blobs/uploads(?:/(?P<upload>[^/]*))?"
    r"|(?P<action>manifests|blobs|referrers)/(?P<ref>[^/]+)"
    r"|(?P<tags>tags/list)"
    r")$"
)


@dataclass(frozen=True)
class V2Route:
    template: str
    handlers: Mapping[str, Handler]


def _routes() -> dict[str, V2Route]:
    return {
        "base": V2Route("/v2/", {"GET": listings.base, "HEAD": listings.base}),
        "catalog": V2Route("/v2/_catalog", {"GET": listings.catalog}),
        "upload_start": V2Route("/v2/{name:path}/blobs/uploads/", {"POST": uploads.start_upload}),
        "upload": V2Route(
            "/v2/{name:path}/blobs/uploads/{upload_id}",
            {
                "GET": uploads.upload_status,
                "PATCH": uploads.patch_upload,
                "PUT": uploads.finish_upload,
                "DELETE": uploads.cancel_upload,
            },
        ),
        "blobs": V2Route(
            "/v2/{name:path}/blobs/{digest}",
            {"GET": blobs.get_blob, "HEAD": blobs.head_blob, "DELETE": blobs.delete_blob},
        ),
        "manifests": V2Route(
            "/v2/{name:path}/manifests/{reference}",
            {
                "GET": manifests.get_manifest,
                "HEAD": manifests.head_manifest,
                "PUT": manifests.put_manifest,
                "DELETE": manifests.delete_manifest,
            },
        ),
        "tags": V2Route("/v2/{name:path}/tags/list", {"GET": listings.tags_list}),
        "referrers": V2Route("/v2/{name:path}/referrers/{digest}", {"GET": listings.referrers}),
    }


_matched: dict[str, tuple[str, tuple[str, ...]] | None] = {}
_MAX_MATCHED = 10_000  # paths remembered, each under _MAX_KEPT_PATH characters: ~5 MiB at most
_MAX_KEPT_PATH = 256


def match(path: str) -> tuple[str, tuple[str, ...]] | None:
    """The route key and its path arguments for a /v2 path, or None. Clients read the same paths over
    and over (a tag, a layer): each is matched once per process."""
    try:
        return _matched[path]
    except KeyError:
        pass
    found = _match(path)
    if len(path) <= _MAX_KEPT_PATH:
        if len(_matched) >= _MAX_MATCHED:
            _matched.clear()
        _matched[path] = found
    return found


def _match(path: str) -> tuple[str, tuple[str, ...]] | None:
    if path in ("/v2/", "/v2"):
        return "base", ()
    if path == "/v2/_catalog":
        return "catalog", ()
    found = _PATH.match(path)
    if found is None:
        return None
    name = found.group("name")
    if found.group("tags"):
        return "tags", (name,)
    action = found.group("action")
    if action is not None:
        return action, (name, found.group("ref"))
    upload = found.group("upload")
    return ("upload", (name, upload)) if upload else ("upload_start", (name,))


class OCIRouter:
    """ASGI app for /v2: one match, then the handler; every error leaves as an OCI error body."""

    def __init__(
        self,
        ctx: OCIContext,
        fallback: ASGIApp,
        gate: Gate | None = None,
        limits: RequestLimits | None = None,
    ) -> None:
        self.ctx = ctx
        self.fallback = fallback
        self.gate = gate  # None: an open registry, like registry:2 without auth
        self.limits = limits  # None: no request-rate limits (the default)
        self.routes = _routes()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v2"):
            await self.fallback(scope, receive, send)
            return
        body = watch_body(scope, receive)
        response = await self._dispatch(scope, body or receive, scope["path"])
        if body is not None and not body.finished:
            await finish_unread_body(scope, body, response)
        await response(scope, receive, send)
        status = response.status_code
        if (
            self.ctx.audit is not None
            and (scope["method"] in AUDITED_METHODS or status in _DENIALS)  # not a pull: no call
            and (matched := scope.get(_MATCH_KEY)) is not None
        ):
            key, args = matched
            record_request(self.ctx.audit, scope, key, scope["method"], args, status)

    async def _dispatch(self, scope: Scope, receive: Receive, path: str) -> Response:
        matched = match(path)
        if matched is None:
            return error_response(OCICode.NAME_UNKNOWN, "no such endpoint or repository", 404)
        key, args = matched
        route = self.routes[key]
        scope[ROUTE_KEY] = route.template
        scope[_MATCH_KEY] = matched
        method = scope["method"]
        handler = route.handlers.get(method)
        if handler is None:
            allowed = ", ".join(sorted(route.handlers))
            return error_response(
                OCICode.UNSUPPORTED, f"{method} is not supported here", 405, headers={"Allow": allowed}
            )
        if b"%2" in scope.get("raw_path", b"") and _encoded_separator(scope):
            return error_response(
                OCICode.NAME_INVALID, "percent-encoded '/' or '.' is not allowed in names", 400
            )
        try:
            if self.ctx.proxy is not None and args and self.ctx.proxy.mirrors is not None:
                renamed = await mirror_name(
                    self.ctx.proxy, key, method, args[0], scope.get("query_string", b""), self.ctx.call
                )
                if renamed != args[0]:  # served inside a proxy project: the gate and audit see that name
                    args = (renamed, *args[1:])
                    scope[_MATCH_KEY] = (key, args)
            verdict: Response | None = None
            if self.gate is not None:  # inside: its database lookups fail the way handlers' do
                checked = await self.gate.check(scope, key, args, method)
                verdict = checked if isinstance(checked, Response) else None
            if self.limits is not None:  # after the gate: it knows who is asking (refused ones too)
                await self.limits.admit(scope, scope.get(PRINCIPAL_KEY))
            if verdict is not None:
                return verdict
            if self.ctx.proxy is not None and args:
                await refuse_push(self.ctx.proxy, key, method, args[0], self.ctx.call)
            return await handler(self.ctx, Request(scope, receive), *args)
        except Exception as exc:
            return render_error(exc)


def _encoded_separator(scope: Scope) -> bool:
    """Names must be spelled literally: an encoded '/' or '.' could smuggle path segments."""
    raw = scope["raw_path"].split(b"?", 1)[0].lower()
    return b"%2f" in raw or b"%2e" in raw
