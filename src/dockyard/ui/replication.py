"""Replication in the portal (system administrators, as the API: docs/replication.md): the policies
(add one with every setting, see and change one, turn it off or on, run it now, delete it) and the
runs, newest first, each with its artifacts' outcomes; a run's job page follows it live. Anyone else
gets the API's refusal (403).
"""

from __future__ import annotations

import asyncio
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

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
NUMBER = re.compile(r"[0-9]{1,18}")
RUNS_PAGE = 20
HOME = f"{MOUNT_PATH}/admin/replication"


class ReplicationPages:
    def __init__(self, portal: Portal) -> None:
        self.portal = portal

    def routes(self) -> list[BaseRoute]:
        p = "/admin/replication/policies/{name}"
        return [
            Route("/admin/replication", self.replication, methods=["GET"]),
            Route("/admin/replication", self.create, methods=["POST"]),
            Route(p, self.policy, methods=["GET"]),
            Route(f"{p}/edit", self.edit, methods=["POST"]),
            Route(f"{p}/enabled", self.set_enabled, methods=["POST"]),
            Route(f"{p}/run", self.run, methods=["POST"]),
            Route(f"{p}/delete", self.delete, methods=["POST"]),
            Route("/admin/replication/runs/{run_id}", self.run_page, methods=["GET"]),
        ]

    async def replication(self, request: Request, error: str | None = None, status: int = 200) -> Response:
        portal = self.portal
        caller, _ = portal.signed_in(request)
        policies, endpoints, runs = await asyncio.gather(
            portal.read(caller, "/replication/policies"),
            portal.read(caller, "/endpoints", quiet=True),
            read_page(portal, caller, request, "/replication/runs", RUNS_PAGE),
        )
        return portal.render(
            request,
            "admin_replication.html",
            status,
            policies=policies.json(),
            endpoints=endpoints.json() if endpoints.ok else [],
            runs=runs,
            error=error,
        )

    async def create(self, request: Request) -> Response:
        caller, _, form = await self.portal.checked(request)
        fields = policy_fields(form)
        if isinstance(fields, str):
            return await self.replication(request, error=fields, status=400)
        body = {"name": form_text(form, "name").strip(), **fields}
        if not body["name"] or not body["endpoint"]:
            missing = "Name the policy and choose an endpoint."
            return await self.replication(request, error=missing, status=400)
        path, again = "/replication/policies", self.replication
        return await submit(self.portal, request, caller, "POST", path, body, done=HOME, again=again)

    async def policy(self, request: Request, error: str | None = None, status: int = 200) -> Response:
        portal = self.portal
        caller, _ = portal.signed_in(request)
        policy, endpoints = await asyncio.gather(
            portal.read(caller, f"/replication/policies/{self._name(request)}"),
            portal.read(caller, "/endpoints", quiet=True),
        )
        return portal.render(
            request,
            "admin_replication_policy.html",
            status,
            policy=policy.json(),
            endpoints=endpoints.json() if endpoints.ok else [],
            error=error,
        )

    async def edit(self, request: Request) -> Response:
        """Every setting at once (the form shows them all); the API checks them, its 4xx on the page."""
        caller, _, form = await self.portal.checked(request)
        fields = policy_fields(form)
        if isinstance(fields, str):
            return await self.policy(request, error=fields, status=400)
        path = f"/replication/policies/{self._name(request)}"
        return await submit(self.portal, request, caller, "PATCH", path, fields, done=HOME, again=self.policy)

    async def set_enabled(self, request: Request) -> Response:
        caller, _, form = await self.portal.checked(request)
        body = {"enabled": form_text(form, "enabled") == "true"}
        path = f"/replication/policies/{self._name(request)}"
        return await submit(self.portal, request, caller, "PATCH", path, body, done=HOME, again=None)

    async def run(self, request: Request) -> Response:
        caller, _, _ = await self.portal.checked(request)

        async def to_job(answer: ApiAnswer) -> Response:  # its live page
            return RedirectResponse(f"{MOUNT_PATH}/admin/jobs/{int(answer.json()['job_id'])}", 303)

        path = f"/replication/policies/{self._name(request)}/run"
        # A policy turned off (409) is said on the list, as the API says it.
        return await submit(self.portal, request, caller, "POST", path, done=to_job, again=self.replication)

    async def delete(self, request: Request) -> Response:
        caller, _, _ = await self.portal.checked(request)
        path = f"/replication/policies/{self._name(request)}"
        return await submit(self.portal, request, caller, "DELETE", path, done=HOME, again=self.replication)

    async def run_page(self, request: Request) -> Response:
        portal = self.portal
        caller, _ = portal.signed_in(request)
        run_id = request.path_params["run_id"]
        if not NUMBER.fullmatch(run_id):
            raise portal.not_found()
        run = (await portal.read(caller, f"/replication/runs/{run_id}")).json()
        return portal.render(request, "admin_replication_run.html", run=run)

    def _name(self, request: Request) -> str:
        name: str = request.path_params["name"]
        if not NAME.fullmatch(name):
            raise self.portal.not_found()
        return quote(name, safe="")


TRIGGERS = ("manual", "cron", "event")
MIB = 1024 * 1024


def policy_fields(form: Any) -> dict[str, Any] | str:
    """A policy's settings from the add or change form; a field that is not a number: the message.
    Without a trigger chosen (an older form), a schedule means the cron trigger."""
    schedule = form_text(form, "schedule").strip() or None
    trigger = form_text(form, "trigger")
    if trigger not in TRIGGERS:
        trigger = "cron" if schedule else "manual"
    try:
        concurrency = int(form_text(form, "concurrency").strip() or "8")
        bandwidth_mib = form_text(form, "bandwidth_mib").strip()
        bandwidth = round(float(bandwidth_mib) * MIB) if bandwidth_mib else None
    except ValueError:
        return "Artifacts at once is a number, the bandwidth a number of MiB/s."
    return {
        "description": form_text(form, "description").strip(),
        "direction": "pull" if form_text(form, "direction") == "pull" else "push",
        "endpoint": form_text(form, "endpoint").strip(),
        "repositories": form_text(form, "repositories").strip() or "**",
        "tags": form_text(form, "tags").strip() or "**",
        "artifact_types": [t.strip() for t in form_text(form, "artifact_types").split(",") if t.strip()],
        "labels": [line.strip() for line in form_text(form, "labels").splitlines() if line.strip()],
        "dest_namespace": form_text(form, "dest_namespace").strip() or None,
        "trigger": trigger,
        "schedule": schedule if trigger == "cron" else None,
        "override": form.get("override") == "on",
        "propagate_deletes": form.get("propagate_deletes") == "on",
        "concurrency": concurrency,
        "bandwidth": bandwidth,
    }
