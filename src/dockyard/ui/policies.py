"""A project's policies in the portal: tag immutability rules (add, remove), the retention policy
(edit it as the API's JSON, preview it with a dry run, read each run's report) and the storage quota.
Each read and change is the management API's as the user: project admins change rules and the
policy, system administrators the quota, whoever sees the project reads the retention policy and its
runs (the page shows each part only when the API gives it).
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from dockyard.ui import MOUNT_PATH
from dockyard.ui.handlers import form_text, submit
from dockyard.ui.retention_form import ACTIONS, MAX_RULES, policy_from_form
from dockyard.ui.views import pretty_json

if TYPE_CHECKING:
    from dockyard.ui.interfaces import ApiAnswer, Caller
    from dockyard.ui.pages import Portal

NUMBER = re.compile(r"[0-9]{1,18}")
GIB = 1024**3
NONE: dict[str, object] = {"rules": [], "schedule": None}  # no policy: what the form starts from


class PolicyPages:
    def __init__(self, portal: Portal) -> None:
        self.portal = portal

    def routes(self) -> list[BaseRoute]:
        p = "/projects/{project}"
        return [
            Route(f"{p}/policies", self.policies, methods=["GET"]),
            Route(f"{p}/immutable-rules", self.add_rule, methods=["POST"]),
            Route(f"{p}/immutable-rules/{{rule_id}}/delete", self.remove_rule, methods=["POST"]),
            Route(f"{p}/retention", self.set_retention, methods=["POST"]),
            Route(f"{p}/retention/dry-run", self.dry_run, methods=["POST"]),
            Route(f"{p}/retention/runs/{{run_id}}", self.run, methods=["GET"]),
            Route(f"{p}/quota", self.set_quota, methods=["POST"]),
            Route(f"{p}/proxy", self.set_proxy, methods=["POST"]),
        ]

    async def policies(
        self, request: Request, error: str | None = None, status: int = 200, draft: str | None = None
    ) -> Response:
        portal = self.portal
        caller, _ = portal.signed_in(request)
        project = request.path_params["project"]
        base = f"/projects/{project}"
        # The project decides the page (whoever sees it reads its retention policy and runs: the same
        # permission); the rest shows where the API gives it: rules and quota to project admins.
        # The registry endpoints a project may proxy: system administrators', who alone set it.
        info, retention, runs, rules, quota, endpoints = await asyncio.gather(
            portal.read(caller, base),
            portal.read(caller, f"{base}/retention", quiet=True),
            portal.read(caller, f"{base}/retention/runs", {"limit": "10"}, quiet=True),
            portal.read(caller, f"{base}/immutable-rules", quiet=True),
            portal.read(caller, f"{base}/quota", quiet=True),
            portal.read(caller, "/endpoints", quiet=True),
        )
        if not retention.ok and retention.status != 404:  # 404: the project has no policy yet
            portal.refused(retention)
        permissions = info.json().get("permissions", [])
        job = request.query_params.get("job", "")
        return portal.render(
            request,
            "policies.html",
            status,
            project=info.json(),
            policy=draft if draft is not None else pretty_json(retention.json() if retention.ok else NONE),
            retention=_shown_policy(draft, retention.json() if retention.ok else NONE),
            actions=ACTIONS,
            max_rules=MAX_RULES,
            runs=runs.json() if runs.ok else [],
            rules=rules.json() if rules.ok else None,
            quota=quota.json() if quota.ok else None,
            endpoints=endpoints.json() if endpoints.ok else None,
            can_update="project.update" in permissions,
            job=job if NUMBER.fullmatch(job) else None,
            error=error,
        )

    async def add_rule(self, request: Request) -> Response:
        portal = self.portal
        caller, _, form = await portal.checked(request)
        project = request.path_params["project"]
        body = {
            "repository_pattern": form_text(form, "repository_pattern").strip() or "**",
            "repository_excluding": form.get("repository_excluding") == "on",
            "tag_pattern": form_text(form, "tag_pattern").strip() or "**",
            "tag_excluding": form.get("tag_excluding") == "on",
        }
        return await self._then(request, caller, "POST", f"/projects/{project}/immutable-rules", body)

    async def remove_rule(self, request: Request) -> Response:
        portal = self.portal
        caller, _, _ = await portal.checked(request)
        project, rule_id = request.path_params["project"], request.path_params["rule_id"]
        if not NUMBER.fullmatch(rule_id):
            raise portal.not_found()
        return await self._then(request, caller, "DELETE", f"/projects/{project}/immutable-rules/{rule_id}")

    async def set_retention(self, request: Request) -> Response:
        portal = self.portal
        caller, _, form = await portal.checked(request)
        project = request.path_params["project"]
        if "policy" not in form:  # the rules' form, not the JSON one
            built = policy_from_form(form)
            if isinstance(built, str):
                return await self.policies(request, error=built, status=400)
            text = pretty_json(built)
            policy: Any = built
        else:
            text = form_text(form, "policy")
            try:
                policy = json.loads(text) if text.strip() else {"rules": []}
            except ValueError as error:
                return await self.policies(
                    request, error=f"The policy is not JSON: {error}", status=400, draft=text
                )
        path, done = f"/projects/{project}/retention", f"{MOUNT_PATH}/projects/{project}/policies"

        async def again(request: Request, **refusal: Any) -> Response:  # a wrong policy: fix the draft
            return await self.policies(request, draft=text, **refusal)

        return await submit(portal, request, caller, "PUT", path, policy, done=done, again=again)

    async def dry_run(self, request: Request) -> Response:
        portal = self.portal
        caller, _, _ = await portal.checked(request)
        project = request.path_params["project"]
        path = f"/projects/{project}/retention/run"

        async def to_policies(answer: ApiAnswer) -> Response:
            job = answer.json()["job_id"]
            return RedirectResponse(f"{MOUNT_PATH}/projects/{project}/policies?job={job}", 303)

        body = {"dry_run": True}
        return await submit(portal, request, caller, "POST", path, body, done=to_policies, again=None)

    async def run(self, request: Request) -> Response:
        portal = self.portal
        caller, _ = portal.signed_in(request)
        project, run_id = request.path_params["project"], request.path_params["run_id"]
        if not NUMBER.fullmatch(run_id):
            raise portal.not_found()
        run = (await portal.read(caller, f"/projects/{project}/retention/runs/{run_id}")).json()
        return portal.render(request, "retention_run.html", project_name=project, run=run)

    async def set_quota(self, request: Request) -> Response:
        portal = self.portal
        caller, _, form = await portal.checked(request)
        project = request.path_params["project"]
        limit, warn = form_text(form, "limit_gib").strip(), form_text(form, "warn_percent").strip()
        try:
            limit_bytes = round(float(limit) * GIB) if limit else None
            body: dict[str, int | None] = {"limit_bytes": limit_bytes, "warn_percent": int(warn or "80")}
        except ValueError:
            return await self.policies(request, error="The quota is a number of GiB.", status=400)
        return await self._then(request, caller, "PUT", f"/projects/{project}/quota", body)

    async def set_proxy(self, request: Request) -> Response:
        """Make the project a pull-through cache of an endpoint, change its tag TTL, or (no endpoint)
        an ordinary project again (its cache stays). System administrators: the API refuses others."""
        caller, _, form = await self.portal.checked(request)
        project = request.path_params["project"]
        endpoint, ttl = form_text(form, "endpoint").strip(), form_text(form, "tag_ttl_seconds").strip()
        try:
            proxy = {"endpoint": endpoint, "tag_ttl_seconds": int(ttl or "300")} if endpoint else None
        except ValueError:
            return await self.policies(request, error="The tag TTL is a number of seconds.", status=400)
        return await self._then(request, caller, "PATCH", f"/projects/{project}", {"proxy": proxy})

    async def _then(
        self, request: Request, caller: Caller, method: str, path: str, body: Any = None
    ) -> Response:
        done = f"{MOUNT_PATH}/projects/{request.path_params['project']}/policies"
        return await submit(self.portal, request, caller, method, path, body, done=done, again=self.policies)


def _shown_policy(draft: str | None, stored: Any) -> Any:
    """What the rules' form shows: a refused draft (to fix it), else the stored policy."""
    if draft is not None:
        try:
            parsed = json.loads(draft)
        except ValueError:
            return stored
        if isinstance(parsed, dict) and isinstance(parsed.get("rules"), list):
            return parsed
    return stored
