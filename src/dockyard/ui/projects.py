"""The projects in the portal: the list (search, sort, pages), a new project (system administrators:
public or private, a quota, and whether it is a pull-through cache of a registry endpoint), and a
project's page with its repositories. Each is the management API's call as the user.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from dockyard.ui import MOUNT_PATH
from dockyard.ui.handlers import form_text
from dockyard.ui.listing import Listing, htmx

if TYPE_CHECKING:
    from dockyard.ui.pages import Portal

GIB = 1024**3
PROJECT_SORTS = ("name", "-name", "created_at", "-created_at")
REPOSITORY_SORTS = ("name", "-name", "-artifact_count", "-size", "-created_at")


class ProjectListPages:
    def __init__(self, portal: Portal) -> None:
        self.portal = portal

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/projects", self.projects, methods=["GET"]),
            Route("/projects", self.create_project, methods=["POST"]),
            Route("/projects/{project}", self.project, methods=["GET"]),
        ]

    async def projects(self, request: Request, error: str | None = None, status: int = 200) -> Response:
        portal = self.portal
        caller, _ = portal.signed_in(request)
        listing = Listing.of(request, sorts=PROJECT_SORTS, default="name")
        answer, me_answer = await asyncio.gather(
            portal.read(caller, "/projects", listing.params()), portal.read(caller, "/me")
        )
        me = me_answer.json()
        template = "_projects_table.html" if htmx(request) else "projects.html"
        # The endpoints a new project may be a cache of: the form is a system administrator's.
        endpoints = None
        if me["admin"] and template == "projects.html":
            endpoints = await portal.read(caller, "/endpoints", quiet=True)
        return portal.render(
            request,
            template,
            status,
            projects=answer.json(),
            listing=listing,
            pages=listing.pages(answer.total),
            admin=me["admin"],
            endpoints=endpoints.json() if endpoints is not None and endpoints.ok else [],
            error=error,
            total=answer.total,
        )

    async def create_project(self, request: Request) -> Response:
        portal = self.portal
        caller, _, form = await portal.checked(request)
        name = form_text(form, "name").strip()
        body: dict[str, Any] = {"name": name, "public": form.get("public") == "on"}
        quota, endpoint = form_text(form, "quota_gib").strip(), form_text(form, "endpoint").strip()
        try:
            limit = round(float(quota) * GIB) if quota else None
            if endpoint:  # a pull-through cache of that endpoint from the start
                ttl = int(form_text(form, "tag_ttl_seconds").strip() or "300")
                body["proxy"] = {"endpoint": endpoint, "tag_ttl_seconds": ttl}
        except ValueError:
            message = "The quota is a number of GiB, the tag TTL a number of seconds."
            return await self.projects(request, error=message, status=400)
        answer = await portal.api.call(caller, "POST", "/projects", body=body)
        if answer.status == 401:
            portal.refused(answer)
        if not answer.ok:
            return await self.projects(request, error=answer.message, status=answer.status)
        if limit is not None:
            path = f"/projects/{name}/quota"
            quota_answer = await portal.api.call(caller, "PUT", path, body={"limit_bytes": limit})
            if not quota_answer.ok:
                message = f"Project created; its quota was not set: {quota_answer.message}"
                return await self.projects(request, error=message, status=400)
        return RedirectResponse(f"{MOUNT_PATH}/projects/{quote(name)}", 303)

    async def project(self, request: Request) -> Response:
        portal = self.portal
        caller, _ = portal.signed_in(request)
        name = request.path_params["project"]
        listing = Listing.of(request, sorts=REPOSITORY_SORTS, default="name")
        # Both at once: the list is filtered to what the caller may read, so it reveals nothing when
        # the project itself is refused (the page is then that refusal).
        project_answer, answer = await asyncio.gather(
            portal.read(caller, f"/projects/{name}"),
            portal.read(caller, "/repositories", {**listing.params(), "project": name}, quiet=True),
        )
        project = project_answer.json()
        if not answer.ok:
            portal.refused(answer)
        template = "_repositories_table.html" if htmx(request) else "project.html"
        return portal.render(
            request,
            template,
            project=project,
            repositories=answer.json(),
            listing=listing,
            pages=listing.pages(answer.total),
            total=answer.total,
        )
