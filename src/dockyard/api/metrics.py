"""GET /metrics: who may read it on the public port, and the separate listener (`metrics.listen`).

The metrics name every project (`dockyard_project_quota_used_bytes{project="..."}`) and its storage
use, private ones included, so by default `/metrics` on http.addr answers only:

- a system administrator's Basic credentials (password or personal access token; in htpasswd mode, any
  htpasswd user, who may do everything there), checked through the /v2 gate's remembered logins, so a
  scrape every 15 s costs no password hash after the first;
- `Authorization: Bearer <metrics.token>`, a secret for Prometheus alone.

With auth off (`auth.enabled: false`) anyone may pull anything, so `/metrics` stays open unless
`metrics.token` is set. `metrics.public: true` opens it whatever the mode.

`metrics.listen` serves the same text on a port of its own, without authentication (bind it to loopback
or a private network), and `/metrics` leaves http.addr. Every HTTP worker opens that port with
SO_REUSEPORT, and each answer adds up all the workers' values, so whichever worker the kernel picks,
the scrape is the same.
"""

from __future__ import annotations

import hmac
import logging
import socketserver
import threading
from collections.abc import Callable
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from dockyard.api.authorization import AuthorizationTooLarge, parse_authorization
from dockyard.auth.remembered import RememberedLogins
from dockyard.config.settings import split_addr

log = logging.getLogger("dockyard.metrics")

Render = Callable[[], tuple[bytes, str]]  # exposition text and its content type
CHALLENGE = {"WWW-Authenticate": 'Basic realm="dockyard metrics"'}


class MetricsAccess:
    """Decides who may read /metrics on the public port (see the module docstring)."""

    def __init__(
        self,
        *,
        open_to_all: bool,
        token: str | None = None,
        logins: RememberedLogins | None = None,
        admins_only: bool = True,
    ) -> None:
        self.open_to_all = open_to_all
        self.token = token.encode() if token else None
        self.logins = logins
        self.admins_only = admins_only

    async def allows(self, request: Request) -> bool:
        if self.open_to_all:
            return True
        try:
            authorization = parse_authorization(request.headers.get("authorization"))
        except AuthorizationTooLarge:
            return False
        if authorization is None:
            return False
        if authorization.is_bearer and self.token is not None:
            return hmac.compare_digest(authorization.credentials, self.token)
        if authorization.is_basic and self.logins is not None:
            client = request.client.host if request.client else None
            principal = await self.logins.principal(authorization.credentials, client)
            return principal is not None and (principal.is_admin or not self.admins_only)
        return False


def metrics_endpoint(render: Render, access: MetricsAccess) -> Callable[[Request], object]:
    """The Starlette endpoint for GET /metrics on the public port."""

    async def endpoint(request: Request) -> Response:
        if not await access.allows(request):
            return PlainTextResponse(
                "authentication required: a system administrator's credentials or the metrics token",
                status_code=401,
                headers=CHALLENGE,
            )
        body, content_type = await anyio.to_thread.run_sync(render)
        return Response(body, headers={"Content-Type": content_type})

    return endpoint


class _ReusePortServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_port = True  # every worker binds the same metrics.listen


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # scrapes every 15 s: not worth a line each
        return


class MetricsListener:
    """GET /metrics on `listen` (host:port), in a daemon thread: a plain HTTP server without auth."""

    def __init__(self, listen: str, render: Render) -> None:
        self.listen = listen
        self.render = render
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Open the port; a failure (the port taken by another program) is logged, not raised: the
        registry serves on without its metrics listener."""
        host, port = split_addr(self.listen)
        try:
            self._server = make_server(
                host, port, self._app, server_class=_ReusePortServer, handler_class=_QuietHandler
            )
        except OSError as exc:
            log.error("metrics.listen %s: cannot listen (%s); metrics are not served", self.listen, exc)
            return
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics-listen", daemon=True)
        self._thread.start()
        log.info("serving metrics on http://%s/metrics", self.listen)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def _app(self, environ: dict[str, object], start_response: Callable[..., object]) -> list[bytes]:
        if environ.get("PATH_INFO") != "/metrics" or environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found: GET /metrics\n"]
        try:
            body, content_type = self.render()
        except Exception:  # the database unreachable, say: Prometheus sees the scrape fail
            log.exception("metrics scrape failed")
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
            return [b"metrics are unavailable\n"]
        start_response("200 OK", [("Content-Type", content_type), ("Content-Length", str(len(body)))])
        return [body] if environ["REQUEST_METHOD"] == "GET" else []
