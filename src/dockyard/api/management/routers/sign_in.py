"""How users sign in, for system administrators: the LDAP directory's and the OpenID provider's
settings as the configuration has them (never their secrets: the bind password and the client
secret are only said to be set), and a test of the directory as it answers now. The provider's test
is `POST /system/oidc/test` (routers/oidc.py). Both come from the configuration file: they change
with it and a restart, not through the API.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from dockyard.api.management.audit import audited
from dockyard.api.management.context import ManagementServices, services_of
from dockyard.api.management.errors import ApiError
from dockyard.api.management.security import Admin
from dockyard.audit.interfaces import AuditAction, ResourceType

router = APIRouter(tags=["system"])
Services = Annotated[ManagementServices, Depends(services_of)]


class LDAPOut(BaseModel):
    url: str
    starttls: bool
    ca_file: str | None
    bind_dn: str | None = Field(description="The service account; none: an anonymous bind.")
    bind_password_set: bool
    user_base_dn: str
    user_filter: str
    email_attribute: str
    display_name_attribute: str
    group_base_dn: str | None
    group_filter: str
    group_name_attribute: str
    admin_groups: list[str]
    timeout: float


class OIDCOut(BaseModel):
    issuer: str
    client_id: str
    client_secret_set: bool
    redirect_uri: str | None = Field(description="The one in use: configured, or from `http.host`.")
    display_name: str
    scopes: list[str]
    username_claim: str
    groups_claim: str | None
    admin_groups: list[str]
    auto_onboard: bool
    timeout: float
    ca_file: str | None


class SignInOut(BaseModel):
    ldap: LDAPOut | None = Field(description="None: no LDAP directory configured.")
    oidc: OIDCOut | None = Field(description="None: no single sign-on configured.")


class LDAPTestIn(BaseModel):
    username: str | None = Field(
        default=None, max_length=255, description="Also find this user and their groups (no password)."
    )


class LDAPTestOut(BaseModel):
    ok: bool
    error: str | None = Field(description="What failed, when something did.")
    user_dn: str | None = None
    groups: list[str] = Field(default_factory=list)
    admin: bool = Field(default=False, description="The user is in one of `admin_groups`.")


@router.get("/system/sign-in", response_model=SignInOut)
def sign_in_settings(principal: Admin, services: Services) -> SignInOut:
    ldap, oidc = services.ldap_settings, services.oidc_settings
    return SignInOut(
        ldap=None
        if ldap is None
        else LDAPOut(
            **ldap.model_dump(exclude={"bind_password", "ca_file"}),
            ca_file=str(ldap.ca_file) if ldap.ca_file else None,
            bind_password_set=bool(ldap.bind_password),
        ),
        oidc=None
        if oidc is None
        else OIDCOut(
            **oidc.model_dump(exclude={"client_secret", "ca_file", "redirect_uri"}),
            ca_file=str(oidc.ca_file) if oidc.ca_file else None,
            client_secret_set=bool(oidc.client_secret),
            redirect_uri=services.oidc_redirect_uri,
        ),
    )


@router.post("/system/ldap/test", response_model=LDAPTestOut)
def test_directory(
    request: Request, principal: Admin, services: Services, body: LDAPTestIn | None = None
) -> LDAPTestOut:
    """Ask the LDAP directory now: connect, bind as the service account, read the user base, and
    (`username`) find that user and their groups as a login would. 200 whatever the directory
    answered (`ok`, and `error` saying what failed); 404 when no directory is configured."""
    if services.ldap is None:
        raise ApiError(404, "no LDAP directory is configured")
    username = body.username if body is not None else None
    detail = {"username": username} if username else {}
    with audited(
        services, request, principal, AuditAction.CHECK, ResourceType.SETTINGS, "auth.ldap", detail
    ) as extra:
        found = services.ldap.check(username or None)
        extra.update(ok=found["ok"], error=found["error"])
    return LDAPTestOut(**found)
