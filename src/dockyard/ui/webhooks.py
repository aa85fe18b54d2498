"""A project's webhooks in the portal (project administrators; docs/webhooks.md): list them, add one
(target URL, events, format, an optional signing secret and custom headers), see one with its
delivery log, change it, turn it off or on, send a test delivery, delete it. The API's
`/projects/{project}/webhooks` as the user: others get its refusal (403). The secret and the headers'
values are write-only: typed once into the form, never shown again (the API answers only whether a
secret is set and the headers' names).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from dockyard.ui import MOUNT_PATH
from dockyard.ui.handlers import form_text, submit

if TYPE_CHECKING:
    from dockyard.ui.interfaces import ApiAnswer
    from dockyard.ui.pages import Portal

NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,99}")
# The API's event types (webhooks.interfaces.EVENT_TYPES; the portal imports no domain package): a name
# it does not know is refused with a message naming the ones it does.
EVENTS = (
    "push",
    "pull",
    "delete",
    "quota_warning",
    "quota_exceeded",
    "retention_run",
    "immutable_refusal",
    "scan_finished",
    "replication_finished",
)
FORMATS = ("harbor", "cloudevents", "slack")
RECENT_DELIVERIES = 20


class WebhookPages:
    def __init__(self, portal: Portal) -> None:
        self.portal = portal

    def routes(self) -> list[BaseRoute]:
        w = "/projects/{project}/webhooks"
        return [
            Route(w, self.webhooks, methods=["GET"]),
            Route(w, self.create, methods=["POST"]),
            Route(f"{w}/{{name}}", self.webhook, methods=["GET"]),
            Route(f"{w}/{{name}}/enabled", self.set_enabled, methods=["POST"]),
            Route(f"{w}/{{name}}/edit", self.edit, methods=["POST"]),
            Route(f"{w}/{{name}}/test", self.test, methods=["POST"]),
            Route(f"{w}/{{name}}/delete", self.delete, methods=["POST"]),
        ]

    async def webhooks(self, request: Request, error: str | None = None, status: int = 200) -> Response:
        portal = self.portal
        caller, _ = portal.signed_in(request)
        project = request.path_params["project"]
        # The project first: a project one may not see is that refusal (the list is not paged: a few).
        info = (await portal.read(caller, f"/projects/{project}")).json()
        hooks = (await portal.read(caller, f"/projects/{project}/webhooks")).json()
        return portal.render(
            request,
            "webhooks.html",
            status,
            project=info,
            hooks=hooks,
            events=EVENTS,
            formats=FORMATS,
            error=error,
        )

    async def create(self, request: Request) -> Response:
        caller, _, form = await self.portal.checked(request)
        project = request.path_params["project"]
        body: dict[str, Any] = {
            "name": form_text(form, "name").strip(),
            "url": form_text(form, "url").strip(),
            "events": [e for e in EVENTS if e in form.getlist("events")],
            "format": form_text(form, "format") if form_text(form, "format") in FORMATS else "harbor",
            "secret": form_text(form, "secret") or None,
            "skip_tls_verify": form.get("skip_tls_verify") == "on",
        }
        if not body["name"] or not body["url"] or not body["events"]:
            missing = "Name it, give its URL and tick its events."
            return await self.webhooks(request, error=missing, status=400)
        headers = parse_headers(form_text(form, "headers"))
        if isinstance(headers, str):
            return await self.webhooks(request, error=headers, status=400)
        body["headers"] = headers
        path, done = f"/projects/{project}/webhooks", _webhook_page(project, body["name"])
        return await submit(self.portal, request, caller, "POST", path, body, done=done, again=self.webhooks)

    async def webhook(
        self,
        request: Request,
        tested: dict[str, Any] | None = None,
        error: str | None = None,
        status: int = 200,
    ) -> Response:
        portal = self.portal
        caller, _ = portal.signed_in(request)
        project, name = self._names(request)
        base = f"/projects/{project}/webhooks/{name}"
        info = (await portal.read(caller, f"/projects/{project}")).json()
        hook = (await portal.read(caller, base)).json()
        deliveries = await portal.read(caller, f"{base}/deliveries", {"limit": str(RECENT_DELIVERIES)})
        return portal.render(
            request,
            "webhook.html",
            status,
            project=info,
            hook=hook,
            deliveries=deliveries.json(),
            tested=tested,
            events=EVENTS,
            formats=FORMATS,
            error=error,
        )

    async def set_enabled(self, request: Request) -> Response:
        caller, _, form = await self.portal.checked(request)
        project, name = self._names(request)
        body = {"enabled": form_text(form, "enabled") == "true"}
        path, done = f"/projects/{project}/webhooks/{name}", _webhook_page(project, name)
        return await submit(self.portal, request, caller, "PUT", path, body, done=done, again=None)

    async def edit(self, request: Request) -> Response:
        """Change its URL, events, format, certificate check, its secret (a new one typed, or removed;
        left empty: kept) and its custom headers (new ones replace them all, or removed; empty: kept)."""
        caller, _, form = await self.portal.checked(request)
        project, name = self._names(request)
        body: dict[str, Any] = {
            "url": form_text(form, "url").strip(),
            "events": [e for e in EVENTS if e in form.getlist("events")],
            "format": form_text(form, "format") if form_text(form, "format") in FORMATS else "harbor",
            "skip_tls_verify": form.get("skip_tls_verify") == "on",
        }
        if form.get("remove_secret") == "on":
            body["secret"] = ""
        elif form_text(form, "secret"):
            body["secret"] = form_text(form, "secret")
        headers = parse_headers(form_text(form, "headers"))
        if isinstance(headers, str):
            return await self.webhook(request, error=headers, status=400)
        if form.get("remove_headers") == "on":
            body["headers"] = {}
        elif headers:
            body["headers"] = headers
        if not body["url"] or not body["events"]:
            return await self.webhook(request, error="Give its URL and tick its events.", status=400)
        path, done = f"/projects/{project}/webhooks/{name}", _webhook_page(project, name)
        return await submit(self.portal, request, caller, "PUT", path, body, done=done, again=self.webhook)

    async def test(self, request: Request) -> Response:
        caller, _, _ = await self.portal.checked(request)
        project, name = self._names(request)

        async def shown(answer: ApiAnswer) -> Response:
            return await self.webhook(request, tested=answer.json())

        path = f"/projects/{project}/webhooks/{name}/test"
        return await submit(self.portal, request, caller, "POST", path, done=shown, again=None)

    async def delete(self, request: Request) -> Response:
        caller, _, _ = await self.portal.checked(request)
        project, name = self._names(request)
        path = f"/projects/{project}/webhooks/{name}"
        done = f"{MOUNT_PATH}/projects/{quote(project)}/webhooks"
        return await submit(self.portal, request, caller, "DELETE", path, done=done, again=None)

    def _names(self, request: Request) -> tuple[str, str]:
        project, name = request.path_params["project"], request.path_params["name"]
        if not NAME.fullmatch(name):
            raise self.portal.not_found()
        return project, name


def _webhook_page(project: str, name: str) -> str:
    return f"{MOUNT_PATH}/projects/{quote(project)}/webhooks/{quote(name, safe='')}"


def parse_headers(text: str) -> dict[str, str] | str:
    """`Name: value` lines as the API's headers; a line without a name and a colon: the message. The
    API decides which names may be set."""
    headers: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        name, colon, value = line.partition(":")
        if not colon or not name.strip():
            return "Custom headers are one Name: value per line."
        headers[name.strip()] = value.strip()
    return headers
