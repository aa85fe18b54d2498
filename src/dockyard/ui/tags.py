"""Changing what a repository holds from the portal: add or move a tag (the artifact page's form) and
delete several artifacts at once (the repository page's checkboxes). Each is a state change (session,
CSRF token, Origin) made as the user through the management API, so each tag and each deletion is
authorized, refused by immutability rules and audited as it would be from the API.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from dockyard.ui import MOUNT_PATH

if TYPE_CHECKING:
    from dockyard.ui.pages import Portal

MAX_BULK = 100  # artifacts one bulk delete may name: a page of the list at most
TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")  # the OCI distribution spec's tags
DIGEST = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[A-Za-z0-9=_-]{1,128}")


class TagPages:
    def __init__(self, portal: Portal) -> None:
        self.portal = portal

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/repositories/{name:path}/-/artifacts/{reference}/tags", self.set_tag, methods=["POST"]),
            Route("/repositories/{name:path}/-/delete", self.delete_artifacts, methods=["POST"]),
        ]

    async def set_tag(self, request: Request) -> Response:
        """Tag the artifact (`move` ticked: even if the tag names another artifact now)."""
        portal = self.portal
        caller, _, form = await portal.checked(request)
        name, reference = request.path_params["name"], request.path_params["reference"]
        tag = str(form.get("tag") or "").strip()
        move = form.get("move") == "on"
        if not TAG.fullmatch(tag):  # the API refuses it too; and it goes into the API's path
            message = "A tag is 1 to 128 letters, digits, `_`, `.` and `-`, not starting with `.` or `-`."
            return await portal.artifact(request, error=message, status=400)
        artifact = (await portal.read(caller, f"/repositories/{name}/artifacts/{reference}")).json()
        body = {"digest": artifact["digest"], "move": move}
        path = f"/repositories/{name}/tags/{tag}"
        answer = await portal.api.call(caller, "PUT", path, body=body)
        if answer.status in (401, 404):
            portal.refused(answer)
        if not answer.ok:
            message = answer.message
            if answer.status == 409:
                message = f"The tag {tag} names another artifact: tick “move” to move it here."
            return await portal.artifact(request, error=message, status=answer.status)
        page = f"{MOUNT_PATH}/repositories/{quote(name)}/-/artifacts/{artifact['digest']}"
        return RedirectResponse(page, 303)

    async def delete_artifacts(self, request: Request) -> Response:
        """Delete the ticked artifacts (by digest, each with all its tags), one API call each."""
        portal = self.portal
        caller, _, form = await portal.checked(request)
        name = request.path_params["name"]
        digests = list(dict.fromkeys(d for d in form.getlist("digest") if isinstance(d, str)))
        if not all(DIGEST.fullmatch(d) for d in digests):
            return await portal.repository(request, errors=["Those are not digests."])
        if not digests:
            return await portal.repository(request, errors=["Tick the artifacts to delete first."])
        if len(digests) > MAX_BULK:
            return await portal.repository(request, errors=[f"At most {MAX_BULK} artifacts at once."])
        deleted, errors, refusals = 0, [], []
        for digest in digests:
            answer = await portal.api.call(caller, "DELETE", f"/repositories/{name}/artifacts/{digest}")
            if answer.ok:
                deleted += 1
                continue
            if answer.status == 401:
                portal.refused(answer)
            refusals.append(answer)
            errors.append(f"{digest}: {'not found' if answer.status == 404 else answer.message}")
        if not deleted:
            portal.refused(refusals[0])  # nothing done: the refusal is the page (a 404 names nothing)
        repository = f"{MOUNT_PATH}/repositories/{quote(name)}"
        if not errors:
            return RedirectResponse(f"{repository}?deleted={deleted}", 303)
        notice = f"Deleted {deleted} artifact{'' if deleted == 1 else 's'}."
        return await portal.repository(request, errors=errors, notice=notice)
