"""The signed-in user's personal access tokens: list them (never their secrets), make one (its
secret shown once, in the answer to the form, with a copy button), revoke one. The API's
`/me/tokens` as the user: a token is made with the password a session was opened with, never with
another token (the API's rule, shown as its refusal)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from dockyard.ui import MOUNT_PATH
from dockyard.ui.handlers import expiry, form_text, read_page, submit

if TYPE_CHECKING:
    from dockyard.ui.interfaces import ApiAnswer
    from dockyard.ui.pages import Portal

TOKEN_ID = re.compile(r"[0-9]{1,18}")
PAGE_SIZE = 100


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
        paged = await read_page(portal, caller, request, "/me/tokens", PAGE_SIZE)
        return portal.render(
            request,
            "tokens.html",
            status,
            tokens=paged.items,
            total=paged.total,
            paged=paged,
            created=created,
            error=error,
        )

    async def create(self, request: Request) -> Response:
        caller, _, form = await self.portal.checked(request)
        name = form_text(form, "name").strip()
        try:
            expires_at = expiry(form_text(form, "expires_on").strip())
        except ValueError:
            return await self.tokens(request, error="The expiry is a date, YYYY-MM-DD.", status=400)
        if not name:
            return await self.tokens(request, error="Name the token.", status=400)

        async def shown_once(answer: ApiAnswer) -> Response:
            # The secret is in this answer only (the API returns it once; Cache-Control: no-store).
            return await self.tokens(request, created=answer.json())

        body = {"name": name, "expires_at": expires_at}
        return await submit(
            self.portal, request, caller, "POST", "/me/tokens", body, done=shown_once, again=self.tokens
        )

    async def revoke(self, request: Request) -> Response:
        caller, _, _ = await self.portal.checked(request)
        token_id = request.path_params["token_id"]
        if not TOKEN_ID.fullmatch(token_id):
            raise self.portal.not_found()
        path, done = f"/me/tokens/{token_id}", f"{MOUNT_PATH}/account/tokens"
        return await submit(self.portal, request, caller, "DELETE", path, done=done, again=None)
