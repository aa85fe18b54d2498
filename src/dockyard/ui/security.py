"""The portal's own locks, on top of the API's: its session cookie, CSRF and Origin checks on every
state change, and the security headers on every answer.

- The cookie holds the signed session value POST /api/v1/login issued (the API checks it, its row and
  the account, remembered per worker until an account change is announced, so logout, a disabled or
  deleted user and a changed password end it).
  HttpOnly, SameSite=Lax (a link from a chat or a mail opens the page signed in; a cross-site form
  post carries no cookie), and over TLS `Secure` with the `__Host-` prefix (no subdomain can set it).
- Unsafe methods need the session's CSRF token (a hidden form field, or htmx's `X-CSRF-Token` header
  from the page's meta tag) and an `Origin` (else `Referer`) naming this server: either alone would do
  in today's browsers; both cost nothing. The login form has no session yet: Origin only.
- Content-Security-Policy allows scripts, styles and forms from this origin only, no inline code, no
  plugins, no framing; so a string the autoescape missed still could not run.
"""

from __future__ import annotations

import hmac
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dockyard.api.management.sessions import CSRF_HEADER

PLAIN_COOKIE = "dockyard_ui"
TLS_COOKIE = "__Host-dockyard_ui"
# A single sign-on login under way: the binding of its state to this browser (api routers/oidc.py).
PLAIN_BINDING_COOKIE = "dockyard_oidc"
TLS_BINDING_COOKIE = "__Host-dockyard_oidc"
BINDING_MAX_AGE = 600  # the login's state lives 10 minutes on the server
CSRF_FIELD = "csrf_token"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
    (b"cache-control", b"no-store"),  # pages show what this user may see: no shared or back-button copies
]
STATIC_CACHE = b"public, max-age=3600"


def cookie_name(request: Request) -> str:
    return TLS_COOKIE if request.url.scheme == "https" else PLAIN_COOKIE


def session_cookie(request: Request) -> str | None:
    return request.cookies.get(cookie_name(request))


def set_session_cookie(response: Response, request: Request, value: str, max_age: int) -> None:
    response.set_cookie(
        cookie_name(request),
        value,
        max_age=max_age,
        path="/",  # the __Host- prefix requires it
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="lax",
    )


def clear_session_cookie(response: Response, request: Request) -> None:
    response.delete_cookie(
        cookie_name(request), path="/", secure=request.url.scheme == "https", httponly=True, samesite="lax"
    )


def _binding_name(request: Request) -> str:
    return TLS_BINDING_COOKIE if request.url.scheme == "https" else PLAIN_BINDING_COOKIE


def binding_cookie(request: Request) -> str | None:
    return request.cookies.get(_binding_name(request))


def set_binding_cookie(response: Response, request: Request, value: str) -> None:
    # SameSite=Lax: the provider's redirect back is a top-level GET from its site, which Lax lets
    # through (Strict would not); a cross-site POST or a subresource carries no cookie.
    response.set_cookie(
        _binding_name(request),
        value,
        max_age=BINDING_MAX_AGE,
        path="/",
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="lax",
    )


def clear_binding_cookie(response: Response, request: Request) -> None:
    response.delete_cookie(
        _binding_name(request), path="/", secure=request.url.scheme == "https", httponly=True, samesite="lax"
    )


def same_origin(request: Request) -> bool:
    """The request's Origin (or, without one, its Referer) names this server as the browser reached it."""
    sent = request.headers.get("origin") or request.headers.get("referer")
    if not sent or sent == "null":
        return False
    parts = urlsplit(sent)
    return (parts.scheme, parts.netloc) == (request.url.scheme, request.headers.get("host", ""))


def csrf_matches(request: Request, form: Any, expected: str) -> bool:
    sent = request.headers.get(CSRF_HEADER) or (form.get(CSRF_FIELD) if form is not None else None) or ""
    return isinstance(sent, str) and hmac.compare_digest(sent.encode(), expected.encode())


class SecurityHeaders:
    """Adds the headers above to every answer of the portal (static files get a cache lifetime)."""

    def __init__(self, app: ASGIApp, static_prefix: str) -> None:
        self.app = app
        self.static_prefix = static_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, root = scope["path"], scope.get("root_path", "")
        static = (path[len(root) :] if path.startswith(root) else path).startswith(self.static_prefix)

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0].lower() != b"cache-control"]
                own = {name.lower() for name, _ in headers}  # a download sets a stricter policy itself
                headers += [
                    h
                    for h in SECURITY_HEADERS
                    if h[0] not in own and not (static and h[0] == b"cache-control")
                ]
                if static:
                    headers.append((b"cache-control", STATIC_CACHE))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)
