"""OpenID Connect single sign-on (the portal's "Log in with ..."), and an OIDC user's CLI secret.

`POST /oidc/authorize` starts a login: the provider's URL to send the browser to, and a binding the
caller keeps in the browser (the portal: an HttpOnly cookie) and hands back with the provider's
`code` and `state` to `POST /oidc/callback`, which checks it all and opens a session like
`POST /login`. 404 when single sign-on is not configured.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field

from dockyard.accounts.interfaces import InvalidName, UserExists, UserNotFound
from dockyard.api.management.audit import AUDITED_STATE, audited
from dockyard.api.management.context import ManagementServices, services_of
from dockyard.api.management.errors import ApiError
from dockyard.api.management.routers.session import SessionOut, open_session, record_login
from dockyard.api.management.security import Admin, SignedIn
from dockyard.audit.interfaces import AuditAction, AuditResult, ResourceType
from dockyard.auth.interfaces import AuthenticationFailed, CredentialKind, PrincipalKind
from dockyard.oidc.interfaces import OIDCAccountRefused, OIDCLoginFailed

if TYPE_CHECKING:  # httpx loads with the provider's client, on the first single sign-on
    from dockyard.oidc.logins import OIDCLogins

router = APIRouter(tags=["session"])
Services = Annotated[ManagementServices, Depends(services_of)]
VIA = "oidc"


class AuthorizeIn(BaseModel):
    next: str = Field(
        default="/",
        max_length=2048,
        description="Where to go after logging in: a path on this server (anything else becomes `/`).",
    )


class AuthorizeOut(BaseModel):
    authorization_url: str = Field(description="Send the browser here (a 303 or a link).")
    binding: str = Field(
        description="Keep it in the browser that goes there (an HttpOnly cookie) and send it back with "
        "the callback's code and state: the login finishes in that browser only."
    )


class CallbackIn(BaseModel):
    code: str = Field(min_length=1, max_length=4096)
    state: str = Field(min_length=1, max_length=4096)
    binding: str = Field(min_length=1, max_length=256)


class CallbackOut(SessionOut):
    next: str = Field(description="Where the login was asked to go after (`next` of the authorize call).")


class CLISecretOut(BaseModel):
    secret: str = Field(
        description="Shown this once: use it as the password with your username (docker login, "
        "/token, Basic on the API). The previous one stopped working."
    )


class ProviderCheckOut(BaseModel):
    ok: bool
    error: str | None = Field(description="What failed, when something did.")
    issuer: str
    redirect_uri: str = Field(description="Register exactly this with the provider.")
    authorization_endpoint: str | None = None
    token_endpoint: str | None = None
    userinfo_endpoint: str | None = None
    signing_keys: int = Field(default=0, description="Keys in the provider's JWKS that can sign ID tokens.")


def _logins(services: ManagementServices) -> OIDCLogins:
    if services.oidc is None:
        raise ApiError(404, "single sign-on (OIDC) is not configured")
    return services.oidc()


@router.post("/oidc/authorize", response_model=AuthorizeOut)
def authorize(body: AuthorizeIn, services: Services) -> AuthorizeOut:
    """Start a single sign-on login (anyone may: it only sends the browser to the provider)."""
    url, binding = _logins(services).start(local_path(body.next))
    return AuthorizeOut(authorization_url=url, binding=binding)


@router.post("/oidc/callback", response_model=CallbackOut)
def callback(body: CallbackIn, request: Request, response: Response, services: Services) -> CallbackOut:
    """Finish a single sign-on login: the provider's code and state, the binding from `authorize`.
    Opens a session (its cookie, its CSRF token) for the user the provider vouched for, their account
    created or refreshed, their groups and system-administrator standing as the provider says now."""
    setattr(request.state, AUDITED_STATE, True)
    logins = _logins(services)
    try:
        finished = logins.finish(body.code, body.state, body.binding)
    except OIDCLoginFailed:
        record_login(services, request, "", AuditAction.LOGIN_FAILED, AuditResult.FAILED, VIA)
        raise
    identity = finished.identity
    try:
        principal = services.authenticator.single_sign_on(identity, onboard=services.oidc_onboard)
    except (UserExists, UserNotFound, InvalidName, AuthenticationFailed) as error:
        record_login(services, request, identity.username, AuditAction.LOGIN_FAILED, AuditResult.DENIED, VIA)
        raise OIDCAccountRefused(error.message, detail={"username": identity.username}) from None
    record_login(services, request, principal.name, AuditAction.LOGIN, AuditResult.OK, VIA)
    session = open_session(services, request, response, principal)
    return CallbackOut(next=finished.next_path, **session.model_dump())


@router.post("/me/cli-secret", response_model=CLISecretOut)
def new_cli_secret(request: Request, principal: SignedIn, services: Services) -> CLISecretOut:
    """A new CLI secret for you, a single sign-on user; the old one dies at once (with the tokens and
    sessions it opened). Made in a session you opened at the provider: neither a CLI secret nor a
    personal access token can make one (a leaked one, replaced, leaves nothing behind)."""
    if principal.kind is not PrincipalKind.USER:
        raise ApiError(403, "only users have CLI secrets")
    with audited(
        services,
        request,
        principal,
        AuditAction.UPDATE,
        ResourceType.USER,
        principal.name,
        {"field": "cli_secret"},
    ):
        credential = principal.credential
        if credential is None or credential.kind is not CredentialKind.OIDC:
            raise ApiError(403, "a CLI secret is made in a session opened with single sign-on")
        secret, _ = services.users.new_cli_secret(principal.name)
    return CLISecretOut(secret=secret)


@router.post("/system/oidc/test", response_model=ProviderCheckOut)
def test_provider(request: Request, principal: Admin, services: Services) -> ProviderCheckOut:
    """Ask the OpenID provider now (system administrators): its discovery document and JWKS, fetched
    afresh. 200 whatever the provider answered (`ok`, and `error` saying what failed); 404 when
    single sign-on is not configured."""
    with audited(
        services, request, principal, AuditAction.CHECK, ResourceType.SETTINGS, "auth.oidc"
    ) as detail:
        found = _logins(services).check()
        detail.update(ok=found["ok"], error=found["error"])
    return ProviderCheckOut(**found)


def local_path(target: str) -> str:
    """`target` when it is a path on this server; `/` for anything that could leave it (`//evil`,
    `https://...`, `/\\evil`, control characters)."""
    if (
        target.startswith("/")
        and not target.startswith(("//", "/\\"))
        and "\\" not in target
        and target.isprintable()
        and target.isascii()
    ):
        return target
    return "/"
