"""The signed-in user's personal access tokens: list them (never their secrets), make one (its
secret shown once, in the answer to the form, with a copy button), revoke one. The API's
`/me/tokens` as the user: a token is made with the password a session was opened with, never with
another token (the API's rule, shown as its refusal)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from dockyard.ui import MOUNT_PATH
from dockyard.ui.manage import expiry, form_text

if TYPE_CHECKING:
    from dockyard.ui.pages import Portal

TOKEN_ID = re.compile(r"[0-9]{1,18}")


class TokenPages:
    def __init__(self, portal: Portal) -> None:
        self.portal = portal

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/account/tokens", self.tokens, methods=["GET"]),
            Route("/account/tokens", self.create, methods=["POST"]),
            Route("/account/tokens/{token_id}/revoke", self.revoke, methods=["POST"]),
        ]

    async def tokens(
        self,
        request: Request,
        created: dict[str, Any] | None = None,
        error: str | None = None,
        status: int = 200,
    ) -> Response:
        portal = self.portal
        caller, _ = portal.signed_in(request)
        answer = await portal.read(caller, "/me/tokens", {"page": "1", "page_size": "100"})
        return portal.render(
            request,
            "tokens.html",
            status,
            tokens=answer.json(),
            total=answer.total,
            created=created,
            error=error,
        )

    async def create(self, request: Request) -> Response:
        portal = self.portal
        caller, _, form = await portal.checked(request)
        name = form_text(form, "name").strip()
        try:
            expires_at = expiry(form_text(form, "expires_on").strip())
        except ValueError:
            return await self.tokens(request, error="The expiry is a date, YYYY-MM-DD.", status=400)
        if not name:
            return await self.tokens(request, error="Name the token.", status=400)
        answer = await portal.api.call(
            caller, "POST", "/me/tokens", body={"name": name, "expires_at": expires_at}
        )
        if answer.status in (401, 403, 404):
            portal.refused(answer)
        if not answer.ok:
            return await self.tokens(request, error=answer.message, status=answer.status)
        # The secret is in this answer only (the API returns it once; Cache-Control: no-store).
        return await self.tokens(request, created=answer.json())

    async def revoke(self, request: Request) -> Response:
        portal = self.portal
        caller, _, _ = await portal.checked(request)
        token_id = request.path_params["token_id"]
        if not TOKEN_ID.fullmatch(token_id):
            raise portal.not_found()
        answer = await portal.api.call(caller, "DELETE", f"/me/tokens/{token_id}")
        if not answer.ok:
            portal.refused(answer)
        return RedirectResponse(f"{MOUNT_PATH}/account/tokens", 303)
