"""The portal's pages. Each handler makes the /api/v1 calls its page shows (docs/ui.md lists them)
as the signed-in user and renders a template; a list answers an htmx request (`HX-Request`) with
its table alone. Refusals come from the API: 401 sends the browser to the login page, 404 shows a
page that names nothing, 403 says so.
"""

from __future__ import annotations

import asyncio
from typing import Any, NoReturn
from urllib.parse import quote, urlencode, urlsplit

from starlette.applications import Starlette
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp

from dockyard.api.management.sessions import CSRF_HEADER
from dockyard.ui import MOUNT_PATH
from dockyard.ui.admin import AdminPages
from dockyard.ui.browse import BrowsePages
from dockyard.ui.groups import GroupPages
from dockyard.ui.interfaces import ApiAnswer, Caller, ManagementApi, SessionReader
from dockyard.ui.listing import Listing, htmx
from dockyard.ui.maintenance import MaintenancePages
from dockyard.ui.manage import ProjectPeoplePages
from dockyard.ui.policies import PolicyPages
from dockyard.ui.projects import ProjectListPages
from dockyard.ui.replication import ReplicationPages
from dockyard.ui.security import (
    CSRF_FIELD,
    SecurityHeaders,
    binding_cookie,
    clear_binding_cookie,
    clear_session_cookie,
    csrf_matches,
    same_origin,
    session_cookie,
    set_binding_cookie,
    set_session_cookie,
)
from dockyard.ui.services import session_from_cookies
from dockyard.ui.sign_in import SignInPages
from dockyard.ui.tags import TagPages
from dockyard.ui.tokens import TokenPages
from dockyard.ui.views import STATIC, environment
from dockyard.ui.webhooks import WebhookPages


class LoginRequired(Exception):
    """No session, or the API no longer accepts it: to the login page, then back."""


class PageError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


NOT_FOUND = "Not found: it does not exist, or you may not see it."


class Portal:
    def __init__(
        self,
        api: ManagementApi,
        sessions: SessionReader,
        max_age: int,
        registry_host: str | None = None,
        sso_name: str | None = None,
    ) -> None:
        self.api = api
        self.sessions = sessions
        self.max_age = max_age
        self.registry_host = registry_host  # as clients name the registry (http.host), else the Host header
        self.sso_name = sso_name  # single sign-on's button label; None: no OIDC
        self.env = environment()

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/", self.home, methods=["GET"]),
            Route("/login", self.login_form, methods=["GET"]),
            Route("/login", self.login, methods=["POST"]),
            Route("/logout", self.logout, methods=["POST"]),
            Route("/oidc/login", self.oidc_login, methods=["GET"]),
            Route("/oidc/callback", self.oidc_callback, methods=["GET"]),
            Route("/account", self.account, methods=["GET"]),
            Route("/account/cli-secret", self.new_cli_secret, methods=["POST"]),
            *TokenPages(self).routes(),
            *AdminPages(self).routes(),
            *MaintenancePages(self).routes(),
            *GroupPages(self).routes(),
            *SignInPages(self).routes(),
            *ReplicationPages(self).routes(),
            *ProjectListPages(self).routes(),
            *ProjectPeoplePages(self).routes(),
            *PolicyPages(self).routes(),
            *WebhookPages(self).routes(),
            Route("/repositories/{name:path}/-/artifacts/{reference}", self.artifact, methods=["GET"]),
            Route("/repositories/{name:path}/-/tags/{tag}/delete", self.delete_tag, methods=["POST"]),
            *BrowsePages(self).routes(),
            *TagPages(self).routes(),
            Route("/repositories/{name:path}", self.repository, methods=["GET"]),
            Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
        ]

    # --- plumbing ----------------------------------------------------------------------------------
    def caller(self, request: Request, session: str | None, csrf_token: str | None = None) -> Caller:
        client = (request.client.host, request.client.port) if request.client else None
        host = request.headers.get("host", "")
        return Caller(
            session, csrf_token, client, request.url.scheme, host, request.headers.get("x-request-id")
        )

    def signed_in(self, request: Request) -> tuple[Caller, Any]:
        value = session_cookie(request)
        session = self.sessions.read(value) if value else None
        if session is None:
            raise LoginRequired()
        return self.caller(request, value, session.csrf_token), session

    async def checked(self, request: Request) -> tuple[Caller, Any, FormData]:
        """A state change: signed in, from this origin, with the session's CSRF token."""
        caller, session = self.signed_in(request)
        form = await request.form()
        if not same_origin(request) or not csrf_matches(request, form, session.csrf_token):
            raise PageError(403, "This form is out of date or came from another site: reload the page.")
        return caller, session, form

    async def read(
        self, caller: Caller, path: str, params: dict[str, str] | None = None, *, quiet: bool = False
    ) -> ApiAnswer:
        """A GET the page cannot do without (or, `quiet`, one it shows only if allowed)."""
        answer = await self.api.call(caller, "GET", path, params=params)
        if answer.status == 401:
            raise LoginRequired()
        if not answer.ok and not quiet:
            raise PageError(answer.status, NOT_FOUND if answer.status == 404 else answer.message)
        return answer

    def refused(self, answer: ApiAnswer) -> NoReturn:
        """A refusal as the page shows it: to the login page (401), a 404 naming nothing, the message."""
        if answer.status == 401:
            raise LoginRequired()
        raise PageError(answer.status, NOT_FOUND if answer.status == 404 else answer.message)

    def not_found(self) -> PageError:
        return PageError(404, NOT_FOUND)

    def render(self, request: Request, template: str, status: int = 200, **context: Any) -> Response:
        html = self.html(request, template, **context)
        return Response(html, status, media_type="text/html; charset=utf-8", headers={"Vary": "HX-Request"})

    def html(self, request: Request, template: str, **context: Any) -> str:
        value = session_cookie(request)
        session = self.sessions.read(value) if value else None
        return self.env.get_template(template).render(
            base=MOUNT_PATH,
            user=session.name if session else None,
            csrf_token=session.csrf_token if session else "",
            csrf_field=CSRF_FIELD,
            csrf_header=CSRF_HEADER,
            path=request.url.path,
            quote=quote,
            sso_name=self.sso_name,
            **context,
        )

    def pull_host(self, request: Request) -> str:
        return self.registry_host or request.headers.get("host", "")

    # --- session -----------------------------------------------------------------------------------
    async def home(self, request: Request) -> Response:
        return RedirectResponse(f"{MOUNT_PATH}/projects", 303)

    async def login_form(self, request: Request) -> Response:
        return self.render(request, "login.html", next=_local(request.query_params.get("next")), error=None)

    async def login(self, request: Request) -> Response:
        form = await request.form()
        target = _local(_text(form, "next"))
        if not same_origin(request):
            return self.render(
                request, "login.html", 403, next=target, error="This form came from another site."
            )
        username, password = _text(form, "username"), _text(form, "password")
        body = {"username": username, "password": password}
        answer = await self.api.call(self.caller(request, None), "POST", "/login", body=body)
        value = session_from_cookies(answer.cookies) if answer.ok else None
        if value is None:
            error = "Wrong username or password." if answer.status in (401, 422) else answer.message
            status = answer.status if answer.status >= 400 else 500
            return self.render(request, "login.html", status, next=target, error=error, username=username)
        response = RedirectResponse(target, 303)
        set_session_cookie(response, request, value, self.max_age)
        return response

    async def logout(self, request: Request) -> Response:
        try:
            caller, _, _ = await self.checked(request)
            await self.api.call(caller, "POST", "/logout")
        except LoginRequired:
            pass  # already gone: clear the cookie all the same
        response = RedirectResponse(f"{MOUNT_PATH}/login", 303)
        clear_session_cookie(response, request)
        return response

    # --- single sign-on (docs/auth.md#openid-connect-single-sign-on) --------------------------------
    async def oidc_login(self, request: Request) -> Response:
        """To the provider: the API starts the login; its binding goes into a cookie of this browser."""
        target = _local(request.query_params.get("next"))
        body = {"next": target}
        answer = await self.api.call(self.caller(request, None), "POST", "/oidc/authorize", body=body)
        if not answer.ok:
            return self.render(request, "login.html", answer.status, next=target, error=answer.message)
        started = answer.json()
        response = RedirectResponse(started["authorization_url"], 303)
        set_binding_cookie(response, request, started["binding"])
        return response

    async def oidc_callback(self, request: Request) -> Response:
        """Back from the provider: the API finishes the login with this browser's binding."""
        query = request.query_params
        binding = binding_cookie(request)
        error: str | None = None
        if query.get("error"):
            # The provider's own code only (access_denied, login_required...): its description is
            # its text, not shown.
            code = "".join(c for c in query.get("error", "")[:64] if c.isalnum() or c in "_-.")
            error, status = f"The single sign-on provider did not log you in ({code}).", 401
        elif not binding:
            error, status = "This login was started in another browser, or long ago: log in again.", 400
        else:
            body = {"code": query.get("code", ""), "state": query.get("state", ""), "binding": binding}
            answer = await self.api.call(self.caller(request, None), "POST", "/oidc/callback", body=body)
            value = session_from_cookies(answer.cookies) if answer.ok else None
            if value is not None:
                done = RedirectResponse(_local(answer.json().get("next")), 303)
                set_session_cookie(done, request, value, self.max_age)
                clear_binding_cookie(done, request)
                return done
            error = answer.message if answer.status != 422 else "The provider's answer is incomplete."
            status = answer.status if answer.status >= 400 else 500
        response = self.render(request, "login.html", status, next=_local(None), error=error)
        clear_binding_cookie(response, request)
        return response

    # --- the user's own account --------------------------------------------------------------------
    async def account(
        self, request: Request, secret: str | None = None, error: str | None = None, status: int = 200
    ) -> Response:
        caller, _ = self.signed_in(request)
        me = (await self.read(caller, "/me")).json()
        return self.render(request, "account.html", status, me=me, secret=secret, error=error)

    async def new_cli_secret(self, request: Request) -> Response:
        caller, _, _ = await self.checked(request)
        answer = await self.api.call(caller, "POST", "/me/cli-secret")
        if answer.status == 401:
            raise LoginRequired()
        if not answer.ok:
            return await self.account(request, error=answer.message, status=answer.status)
        # Shown in this answer only (Cache-Control: no-store); a reload does not show it again.
        return await self.account(request, secret=answer.json()["secret"])

    # --- repositories and artifacts ----------------------------------------------------------------
    async def repository(
        self, request: Request, errors: list[str] | None = None, notice: str | None = None
    ) -> Response:
        caller, _ = self.signed_in(request)
        name = request.path_params["name"]
        listing = Listing.of(request, sorts=ARTIFACT_SORTS, default="-pushed_at")
        repository_answer, answer, permissions = await asyncio.gather(
            self.read(caller, f"/repositories/{name}"),
            self.read(caller, f"/repositories/{name}/artifacts", listing.params()),
            self._permissions(caller, name.split("/", 1)[0]),
        )
        repository = repository_answer.json()
        return self.render(
            request,
            "repository.html",
            repository=repository,
            artifacts=answer.json(),
            listing=listing,
            pages=listing.pages(answer.total),
            total=answer.total,
            host=self.pull_host(request),
            can_delete="delete" in permissions,
            errors=errors or [],
            notice=notice or _deleted_notice(request.query_params.get("deleted")),
        )

    async def artifact(self, request: Request, error: str | None = None, status: int = 200) -> Response:
        caller, _ = self.signed_in(request)
        name, reference = request.path_params["name"], request.path_params["reference"]
        path = f"/repositories/{name}/artifacts/{reference}"
        # The calls at once. The artifact decides the page; the rest shows where the API gives it (an
        # index has no config, an unsigned image no verdict; the permissions: which forms to show).
        artifact_answer, signature, config_document, referrers, permissions = await asyncio.gather(
            self.read(caller, path),
            self.read(caller, f"{path}/signature", quiet=True),
            self.read(caller, f"{path}/config", quiet=True),
            self.read(caller, f"{path}/referrers", quiet=True),
            self._permissions(caller, name.split("/", 1)[0]),
        )
        artifact = artifact_answer.json()
        manifest = artifact["manifest"]
        image_config = config_document.json() if config_document.ok else None
        return self.render(
            request,
            "artifact.html",
            status,
            error=error,
            can_tag="push" in permissions and "pull" in permissions,
            can_delete="delete" in permissions,
            artifact=artifact,
            manifest=manifest,
            name=name,
            layers=manifest.get("layers") or [],
            children=manifest.get("manifests") or [],
            config=manifest.get("config"),
            host=self.pull_host(request),
            signature=signature.json() if signature.ok else None,
            image_config=image_config,
            history=_history(image_config),
            referrers=referrers.json() if referrers.ok else [],
        )

    async def delete_tag(self, request: Request) -> Response:
        caller, _, form = await self.checked(request)
        name, tag = request.path_params["name"], request.path_params["tag"]
        answer = await self.api.call(caller, "DELETE", f"/repositories/{name}/tags/{tag}")
        if answer.status == 401:
            raise LoginRequired()
        if not answer.ok:
            raise PageError(answer.status, NOT_FOUND if answer.status == 404 else answer.message)
        repository = f"{MOUNT_PATH}/repositories/{quote(name)}"
        back = _local(_text(form, "back"))  # the artifact page the form was on, if it was
        return RedirectResponse(back if back.startswith(repository + "/-/") else repository, 303)

    async def _permissions(self, caller: Caller, project: str) -> list[str]:
        answer = await self.read(caller, f"/projects/{project}", quiet=True)
        return list(answer.json().get("permissions", [])) if answer.ok else []

    # --- refusals ----------------------------------------------------------------------------------
    async def login_required(self, request: Request, exc: Exception) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        if htmx(request):  # an htmx swap would put the login page inside the table: redirect the page
            response: Response = Response(status_code=401, headers={"HX-Redirect": f"{MOUNT_PATH}/login"})
        else:
            response = RedirectResponse(f"{MOUNT_PATH}/login?{urlencode({'next': target})}", 303)
        clear_session_cookie(response, request)
        return response

    async def page_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, PageError)
        return self.render(request, "error.html", exc.status, message=exc.message)

    async def http_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        message = NOT_FOUND if exc.status_code == 404 else str(exc.detail)
        return self.render(request, "error.html", exc.status_code, message=message)


ARTIFACT_SORTS = ("-pushed_at", "pushed_at", "-size", "digest")


def _history(config: Any) -> list[dict[str, Any]]:
    """The image's build steps (`history` in its config), each with `created_by` and whether it made
    a layer; empty for anything else."""
    steps = config.get("history") if isinstance(config, dict) else None
    if not isinstance(steps, list):
        return []
    return [
        {
            "created": str(step.get("created", "")),
            "created_by": str(step.get("created_by", "")),
            "empty_layer": bool(step.get("empty_layer", False)),
        }
        for step in steps
        if isinstance(step, dict)
    ]


def _deleted_notice(value: str | None) -> str | None:
    count = _int(value, 0) if value else 0
    return f"Deleted {count} artifact{'' if count == 1 else 's'}." if count > 0 else None


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


def _local(target: str | None) -> str:
    """Where to go after login: a page of the portal, never another site (`//evil`, `https://...`)."""
    if target and target.startswith(MOUNT_PATH + "/") and not urlsplit(target).netloc and "\\" not in target:
        return target
    return f"{MOUNT_PATH}/projects"


def build_portal(
    api: ManagementApi,
    sessions: SessionReader,
    max_age: int,
    registry_host: str | None = None,
    sso_name: str | None = None,
) -> ASGIApp:
    portal = Portal(api, sessions, max_age, registry_host, sso_name)
    app = Starlette(
        routes=portal.routes(),
        exception_handlers={
            LoginRequired: portal.login_required,
            PageError: portal.page_error,
            HTTPException: portal.http_error,
        },
    )
    return SecurityHeaders(app, "/static/")
