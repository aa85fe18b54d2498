"""Registry maintenance in the portal, for system administrators: the keys registry tokens are signed
with (rotate, retire; never their material) and garbage collection (a dry run or a real run, as a job
whose page follows it live; its schedule set or removed). Each is the management API's call as the
user: anyone else gets the API's refusal (403).
"""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from dockyard.ui import MOUNT_PATH
from dockyard.ui.handlers import form_text, submit

if TYPE_CHECKING:
    from dockyard.ui.interfaces import ApiAnswer
    from dockyard.ui.pages import Portal

KID = re.compile(r"[A-Za-z0-9:._-]{1,64}")  # libtrust's kid: base32 groups joined by colons
MIN_AGE = re.compile(r"[0-9]{1,6}[smh]?")  # what GCOptions' min_age takes: "2h", "90m", "0s", seconds
GC_SWITCHES = ("delete_untagged", "delete_referrers_with_subject")
RECENT_RUNS = 10


class MaintenancePages:
    def __init__(self, portal: Portal) -> None:
        self.portal = portal

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/admin/signing-keys", self.signing_keys, methods=["GET"]),
            Route("/admin/signing-keys/rotate", self.rotate, methods=["POST"]),
            Route("/admin/signing-keys/{kid}/retire", self.retire, methods=["POST"]),
            Route("/admin/gc", self.gc, methods=["GET"]),
            Route("/admin/gc", self.run_gc, methods=["POST"]),
            Route("/admin/gc/schedule", self.set_gc_schedule, methods=["POST"]),
            Route("/admin/gc/schedule/delete", self.delete_gc_schedule, methods=["POST"]),
        ]

    # --- token signing keys ------------------------------------------------------------------------
    async def signing_keys(self, request: Request, error: str | None = None, status: int = 200) -> Response:
        portal = self.portal
        caller, _ = portal.signed_in(request)
        keys = (await portal.read(caller, "/system/signing-keys")).json()
        return portal.render(request, "admin_keys.html", status, keys=keys, error=error)

    async def rotate(self, request: Request) -> Response:
        caller, _, _ = await self.portal.checked(request)
        done = f"{MOUNT_PATH}/admin/signing-keys"
        return await submit(
            self.portal, request, caller, "POST", "/system/signing-keys/rotate", done=done, again=None
        )

    async def retire(self, request: Request) -> Response:
        caller, _, _ = await self.portal.checked(request)
        kid = request.path_params["kid"]
        if not KID.fullmatch(kid):
            raise self.portal.not_found()
        path, done = f"/system/signing-keys/{kid}/retire", f"{MOUNT_PATH}/admin/signing-keys"
        # 409 (the signing key, or retired already): said on the list, as the API says it.
        return await submit(self.portal, request, caller, "POST", path, done=done, again=self.signing_keys)

    # --- garbage collection ------------------------------------------------------------------------
    async def gc(self, request: Request, error: str | None = None, status: int = 200) -> Response:
        portal = self.portal
        caller, _ = portal.signed_in(request)
        params = {"kind": "gc", "page": "1", "page_size": str(RECENT_RUNS)}
        runs, schedule = await asyncio.gather(
            portal.read(caller, "/jobs", params), portal.read(caller, "/jobs/schedules/gc", quiet=True)
        )
        return portal.render(
            request,
            "admin_gc.html",
            status,
            runs=runs.json(),
            total=runs.total,
            schedule=schedule.json() if schedule.ok else None,
            error=error,
        )

    async def run_gc(self, request: Request) -> Response:
        caller, _, form = await self.portal.checked(request)
        params = gc_params(form)
        if params is None:
            return await self.gc(request, error=BAD_MIN_AGE, status=400)

        async def to_job(answer: ApiAnswer) -> Response:
            return RedirectResponse(f"{MOUNT_PATH}/admin/jobs/{int(answer.json()['id'])}", 303)

        body = {"kind": "gc", "params": params}
        return await submit(self.portal, request, caller, "POST", "/jobs", body, done=to_job, again=self.gc)

    async def set_gc_schedule(self, request: Request) -> Response:
        """The schedule's cron (the API checks it: its 400 is said on the page) and the runs' options."""
        caller, _, form = await self.portal.checked(request)
        params = gc_params(form)
        if params is None:
            return await self.gc(request, error=BAD_MIN_AGE, status=400)
        body = {
            "cron": form_text(form, "cron").strip(),
            "params": params,
            "enabled": form.get("enabled") == "on",
        }
        done = f"{MOUNT_PATH}/admin/gc"
        return await submit(
            self.portal, request, caller, "PUT", "/jobs/schedules/gc", body, done=done, again=self.gc
        )

    async def delete_gc_schedule(self, request: Request) -> Response:
        caller, _, _ = await self.portal.checked(request)
        done = f"{MOUNT_PATH}/admin/gc"
        return await submit(
            self.portal, request, caller, "DELETE", "/jobs/schedules/gc", done=done, again=None
        )


BAD_MIN_AGE = "The safety window is a duration: 2h, 90m, 0s."


def gc_params(form: Any) -> dict[str, Any] | None:
    """A GC run's options from the form (mode, switches, safety window); None: a bad safety window."""
    min_age = form_text(form, "min_age").strip()
    if min_age and not MIN_AGE.fullmatch(min_age):
        return None
    params: dict[str, Any] = {"dry_run": form_text(form, "mode") != "delete"}
    params.update({name: form.get(name) == "on" for name in GC_SWITCHES})
    if min_age:
        params["min_age"] = min_age
    return params
