"""How users sign in, in the portal (system administrators): the LDAP directory's and the OpenID
provider's settings as the API shows them (from the configuration file; secrets only said to be
set), each with a "Test" button that asks the directory or the provider now and shows what it
answered. Anyone else gets the API's refusal (403).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from dockyard.ui.handlers import form_text, submit

if TYPE_CHECKING:
    from dockyard.ui.interfaces import ApiAnswer
    from dockyard.ui.pages import Portal


class SignInPages:
    def __init__(self, portal: Portal) -> None:
        self.portal = portal

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/admin/sign-in", self.settings, methods=["GET"]),
            Route("/admin/sign-in/ldap-test", self.test_ldap, methods=["POST"]),
            Route("/admin/sign-in/oidc-test", self.test_oidc, methods=["POST"]),
        ]

    async def settings(self, request: Request, **results: Any) -> Response:
        portal = self.portal
        caller, _ = portal.signed_in(request)
        configured = (await portal.read(caller, "/system/sign-in")).json()
        context = {"ldap_result": None, "oidc_result": None, "username": "", **results}
        return portal.render(request, "admin_sign_in.html", settings=configured, **context)

    async def test_ldap(self, request: Request) -> Response:
        caller, _, form = await self.portal.checked(request)
        username = form_text(form, "username").strip()[:255]

        async def shown(answer: ApiAnswer) -> Response:
            return await self.settings(request, ldap_result=answer.json(), username=username)

        body = {"username": username or None}
        return await submit(
            self.portal, request, caller, "POST", "/system/ldap/test", body, done=shown, again=None
        )

    async def test_oidc(self, request: Request) -> Response:
        caller, _, _ = await self.portal.checked(request)

        async def shown(answer: ApiAnswer) -> Response:
            return await self.settings(request, oidc_result=answer.json())

        return await submit(self.portal, request, caller, "POST", "/system/oidc/test", done=shown, again=None)
