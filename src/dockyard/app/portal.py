"""The web portal (`dockyard.ui`) wired to the management API: `/ui` answers with its pages, built on
the first request there (Jinja2 and the templates load then, as FastAPI does for /api/v1), and `/`
sends a browser to them."""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp

from dockyard.api.lazy import LazyApp
from dockyard.api.management.sessions import SessionCodec
from dockyard.config.settings import Settings
from dockyard.ui import MOUNT_PATH


def portal_routes(settings: Settings, management: ASGIApp, sessions: SessionCodec) -> list[BaseRoute]:
    # Pull commands name the registry as clients do: http.host when set (behind a proxy), else the
    # Host the browser used.
    host = urlsplit(settings.http.host).netloc if settings.http.host else None
    sso_name = settings.auth.oidc.display_name if settings.auth.oidc is not None else None

    def build() -> ASGIApp:
        from dockyard.ui.pages import build_portal
        from dockyard.ui.services import InProcessApi

        return build_portal(InProcessApi(management), sessions, sessions.max_age, host, sso_name)

    async def home(request: Request) -> Response:
        return RedirectResponse(f"{MOUNT_PATH}/", 302)

    return [Route("/", home, methods=["GET", "HEAD"]), Mount(MOUNT_PATH, app=LazyApp(build))]
