"""Groups of users in the portal (system administrators): list and search them, create a local group,
see a group's members, add and remove members of a local group, delete a group. The API's `/groups`
as the user: anyone else gets its refusal (403); a directory or single sign-on group's members are
its provider's, which the API says (409) when asked to change them.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from dockyard.ui import MOUNT_PATH
from dockyard.ui.handlers import form_text, read_page, submit

if TYPE_CHECKING:
    from dockyard.ui.interfaces import ApiAnswer
    from dockyard.ui.pages import Portal

GROUP_ID = re.compile(r"[0-9]{1,18}")
USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,254}")
PAGE_SIZE = 50


class GroupPages:
    def __init__(self, portal: Portal) -> None:
        self.portal = portal

    def routes(self) -> list[BaseRoute]:
        g = "/admin/groups/{group_id}"
        return [
            Route("/admin/groups", self.groups, methods=["GET"]),
            Route("/admin/groups", self.create, methods=["POST"]),
            Route(g, self.group, methods=["GET"]),
            Route(f"{g}/members", self.add_member, methods=["POST"]),
            Route(f"{g}/members/{{username}}/remove", self.remove_member, methods=["POST"]),
            Route(f"{g}/delete", self.delete, methods=["POST"]),
        ]

    async def groups(self, request: Request, error: str | None = None, status: int = 200) -> Response:
        portal = self.portal
        caller, _ = portal.signed_in(request)
        q = request.query_params.get("q", "")[:255]
        paged = await read_page(portal, caller, request, "/groups", PAGE_SIZE, {"q": q})
        return portal.render(request, "admin_groups.html", status, paged=paged, q=q, error=error)

    async def create(self, request: Request) -> Response:
        caller, _, form = await self.portal.checked(request)
        name = form_text(form, "name").strip()
        if not name:
            return await self.groups(request, error="Name the group.", status=400)

        async def to_group(answer: ApiAnswer) -> Response:
            return RedirectResponse(_group_page(answer.json()["id"]), 303)

        return await submit(
            self.portal, request, caller, "POST", "/groups", {"name": name}, done=to_group, again=self.groups
        )

    async def group(self, request: Request, error: str | None = None, status: int = 200) -> Response:
        portal = self.portal
        caller, _ = portal.signed_in(request)
        group = (await portal.read(caller, f"/groups/{self._group_id(request)}")).json()
        return portal.render(request, "admin_group.html", status, group=group, error=error)

    async def add_member(self, request: Request) -> Response:
        caller, _, form = await self.portal.checked(request)
        group_id = self._group_id(request)
        username = form_text(form, "username").strip()
        if not USERNAME.fullmatch(username):
            return await self.group(request, error="Name a user.", status=400)
        return await self._change(request, caller, "PUT", f"/groups/{group_id}/members/{username}")

    async def remove_member(self, request: Request) -> Response:
        caller, _, _ = await self.portal.checked(request)
        group_id, username = self._group_id(request), request.path_params["username"]
        if not USERNAME.fullmatch(username):
            raise self.portal.not_found()
        return await self._change(request, caller, "DELETE", f"/groups/{group_id}/members/{username}")

    async def delete(self, request: Request) -> Response:
        caller, _, _ = await self.portal.checked(request)
        path, done = f"/groups/{self._group_id(request)}", f"{MOUNT_PATH}/admin/groups"
        return await submit(self.portal, request, caller, "DELETE", path, done=done, again=None)

    async def _change(self, request: Request, caller: Any, method: str, path: str) -> Response:
        done = _group_page(request.path_params["group_id"])
        # A username nobody has (404) is the form's mistake: said on the group's page (a group that is
        # gone makes that page the 404).
        mistakes = frozenset({404}) if method == "PUT" else frozenset()
        return await submit(
            self.portal, request, caller, method, path, done=done, again=self.group, mistakes=mistakes
        )

    def _group_id(self, request: Request) -> str:
        group_id: str = request.path_params["group_id"]
        if not GROUP_ID.fullmatch(group_id):
            raise self.portal.not_found()
        return group_id


def _group_page(group_id: object) -> str:
    return f"{MOUNT_PATH}/admin/groups/{quote(str(group_id))}"
