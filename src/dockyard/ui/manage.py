"""A project's people and robots in the portal: its members (add a user or a group with a role, change
the role, remove) and its robot accounts (create with actions and an expiry, disable or enable,
refresh the secret, delete). Every read and change is the management API's, made as the user: what the
pages show and allow is what the API shows and allows, and each change is audited there.

A robot's secret comes in the answer to the form that made or refreshed it (`Cache-Control:
no-store`, like every page) and in no other page: the API returns it once and the portal keeps none.
"""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from dockyard.ui import MOUNT_PATH
from dockyard.ui.handlers import expiry, form_text, project_and_page, submit

if TYPE_CHECKING:
    from dockyard.ui.interfaces import ApiAnswer, Caller
    from dockyard.ui.pages import Portal

ROLES = ("project_admin", "maintainer", "developer", "guest", "limited_guest")
ACTIONS = ("pull", "push", "delete")
MEMBER_ID = re.compile(r"[0-9]{1,18}")
ROBOT = re.compile(r"[A-Za-z0-9$+._-]{1,300}")  # a short or full robot name; it goes into the API's path


class ProjectPeoplePages:
    def __init__(self, portal: Portal) -> None:
        self.portal = portal

    def routes(self) -> list[BaseRoute]:
        p = "/projects/{project}"
        return [
            Route(f"{p}/members", self.members, methods=["GET"]),
            Route(f"{p}/members", self.add_member, methods=["POST"]),
            Route(f"{p}/members/{{member_id}}/role", self.change_role, methods=["POST"]),
            Route(f"{p}/members/{{member_id}}/delete", self.remove_member, methods=["POST"]),
            Route(f"{p}/robots", self.robots, methods=["GET"]),
            Route(f"{p}/robots", self.create_robot, methods=["POST"]),
            Route(f"{p}/robots/{{robot}}", self.robot, methods=["GET"]),
            Route(f"{p}/robots/{{robot}}/disabled", self.set_disabled, methods=["POST"]),
            Route(f"{p}/robots/{{robot}}/secret", self.new_secret, methods=["POST"]),
            Route(f"{p}/robots/{{robot}}/delete", self.delete_robot, methods=["POST"]),
        ]

    # --- members -----------------------------------------------------------------------------------
    async def members(self, request: Request, error: str | None = None, status: int = 200) -> Response:
        _, info, paged = await project_and_page(self.portal, request, "members")
        return self.portal.render(
            request,
            "members.html",
            status,
            project=info,
            members=paged.items,
            total=paged.total,
            paged=paged,
            roles=ROLES,
            can_manage="member.manage" in info.get("permissions", []),
            error=error,
        )

    async def add_member(self, request: Request) -> Response:
        caller, _, form = await self.portal.checked(request)
        project = request.path_params["project"]
        kind, name, role = form_text(form, "kind"), form_text(form, "name").strip(), form_text(form, "role")
        if kind not in ("user", "group") or not name or role not in ROLES:
            return await self.members(request, error="Name a user or a group, and a role.", status=400)
        body = {kind: name, "role": role}
        return await self._member_change(request, caller, "POST", f"/projects/{project}/members", body)

    async def change_role(self, request: Request) -> Response:
        caller, _, form = await self.portal.checked(request)
        project, member_id = request.path_params["project"], request.path_params["member_id"]
        role = form_text(form, "role")
        if not MEMBER_ID.fullmatch(member_id) or role not in ROLES:
            return await self.members(request, error="Choose a role.", status=400)
        path = f"/projects/{project}/members/{member_id}"
        return await self._member_change(request, caller, "PATCH", path, {"role": role})

    async def remove_member(self, request: Request) -> Response:
        caller, _, _ = await self.portal.checked(request)
        project, member_id = request.path_params["project"], request.path_params["member_id"]
        if not MEMBER_ID.fullmatch(member_id):
            raise self.portal.not_found()
        path = f"/projects/{project}/members/{member_id}"
        return await self._member_change(request, caller, "DELETE", path)

    async def _member_change(
        self, request: Request, caller: Caller, method: str, path: str, body: Any = None
    ) -> Response:
        done = f"{MOUNT_PATH}/projects/{quote(request.path_params['project'])}/members"
        return await submit(self.portal, request, caller, method, path, body, done=done, again=self.members)

    # --- robots ------------------------------------------------------------------------------------
    async def robots(
        self,
        request: Request,
        error: str | None = None,
        status: int = 200,
        created: dict[str, Any] | None = None,
    ) -> Response:
        _, info, paged = await project_and_page(self.portal, request, "robots")
        return self.portal.render(
            request,
            "robots.html",
            status,
            project=info,
            robots=paged.items,
            total=paged.total,
            paged=paged,
            actions=ACTIONS,
            can_manage="robot.manage" in info.get("permissions", []),
            created=created,
            error=error,
        )

    async def robot(
        self, request: Request, secret: str | None = None, error: str | None = None, status: int = 200
    ) -> Response:
        portal = self.portal
        caller, _ = portal.signed_in(request)
        project, name = request.path_params["project"], request.path_params["robot"]
        if not ROBOT.fullmatch(name):
            raise portal.not_found()
        info, robot = await asyncio.gather(
            portal.read(caller, f"/projects/{project}"),
            portal.read(caller, f"/projects/{project}/robots/{name}"),
        )
        permissions = info.json().get("permissions", [])
        return portal.render(
            request,
            "robot.html",
            status,
            project=info.json(),
            robot=robot.json(),
            can_manage="robot.manage" in permissions,
            secret=secret,
            error=error,
        )

    async def create_robot(self, request: Request) -> Response:
        caller, _, form = await self.portal.checked(request)
        project = request.path_params["project"]
        name = form_text(form, "name").strip()
        actions = [a for a in ACTIONS if a in form.getlist("actions")]
        description = form_text(form, "description").strip() or None
        try:
            expires_at = expiry(form_text(form, "expires_on").strip())
        except ValueError:
            return await self.robots(request, error="The expiry is a date, YYYY-MM-DD.", status=400)
        if not name or not actions:
            return await self.robots(request, error="Name the robot and tick what it may do.", status=400)
        body = {"name": name, "actions": actions, "description": description, "expires_at": expires_at}

        async def shown_once(answer: ApiAnswer) -> Response:
            # The secret is in this answer only (the API returns it once; Cache-Control: no-store).
            return await self.robots(request, created=answer.json())

        path = f"/projects/{project}/robots"
        return await submit(
            self.portal, request, caller, "POST", path, body, done=shown_once, again=self.robots
        )

    async def set_disabled(self, request: Request) -> Response:
        caller, _, form = await self.portal.checked(request)
        project, name = self._robot_of(request)
        body = {"disabled": form_text(form, "disabled") == "true"}
        path = f"/projects/{project}/robots/{name}"
        done = _robot_page(project, name)
        return await submit(self.portal, request, caller, "PATCH", path, body, done=done, again=None)

    async def new_secret(self, request: Request) -> Response:
        caller, _, _ = await self.portal.checked(request)
        project, name = self._robot_of(request)

        async def shown_once(answer: ApiAnswer) -> Response:
            return await self.robot(request, secret=answer.json()["secret"])

        path = f"/projects/{project}/robots/{name}/secret"
        return await submit(self.portal, request, caller, "POST", path, done=shown_once, again=None)

    async def delete_robot(self, request: Request) -> Response:
        caller, _, _ = await self.portal.checked(request)
        project, name = self._robot_of(request)
        path = f"/projects/{project}/robots/{name}"
        done = f"{MOUNT_PATH}/projects/{quote(project)}/robots"
        return await submit(self.portal, request, caller, "DELETE", path, done=done, again=None)

    def _robot_of(self, request: Request) -> tuple[str, str]:
        project, name = request.path_params["project"], request.path_params["robot"]
        if not ROBOT.fullmatch(name):
            raise self.portal.not_found()
        return project, name


def _robot_page(project: str, name: str) -> str:
    return f"{MOUNT_PATH}/projects/{quote(project)}/robots/{quote(name, safe='')}"
