"""Users (system administrators only), and the caller's own account and personal access tokens (/me)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field

from dockyard.accounts.interfaces import PersonalToken, User, UserSource
from dockyard.api.management.audit import audited
from dockyard.api.management.context import ManagementServices, services_of
from dockyard.api.management.errors import ApiError
from dockyard.api.management.ids import ResourceId
from dockyard.api.management.listing import ListParams, list_params, page_in_memory, set_page_headers
from dockyard.api.management.security import Admin, SignedIn, session_key
from dockyard.audit.interfaces import AuditAction, ResourceType
from dockyard.auth.interfaces import Credential, CredentialKind, Principal, PrincipalKind

router = APIRouter(tags=["users"])
Services = Annotated[ManagementServices, Depends(services_of)]
USER_SORTS = ("username", "created_at", "last_login_at")


class UserOut(BaseModel):
    id: int
    username: str
    email: str | None
    display_name: str | None
    source: str  # "local" | "ldap" | "oidc"
    admin: bool  # a system administrator (granted here, or by a directory admin group)
    disabled: bool
    created_at: datetime
    last_login_at: datetime | None


class UserCreate(BaseModel):
    username: str = Field(min_length=1, max_length=255)
    password: str | None = Field(
        default=None, min_length=1, max_length=1024, description="Required for local users; none for oidc."
    )
    source: Literal["local", "oidc"] = Field(
        default="local",
        description="`oidc`: a single sign-on user who logs in at the OpenID provider (for "
        "`auth.oidc.auto_onboard: false`); bound to the provider's subject at their first login.",
    )
    email: str | None = Field(default=None, max_length=255)
    display_name: str | None = Field(default=None, max_length=255)
    admin: bool = False


class UserUpdate(BaseModel):
    """Only the fields sent change."""

    email: str | None = Field(default=None, max_length=255)
    display_name: str | None = Field(default=None, max_length=255)
    admin: bool | None = None
    disabled: bool | None = None


class PasswordSet(BaseModel):
    password: str = Field(min_length=1, max_length=1024)


class PasswordChange(BaseModel):
    current_password: str = Field(min_length=1, max_length=1024)
    new_password: str = Field(min_length=1, max_length=1024)


class MeOut(BaseModel):
    kind: str  # "user" | "robot"
    name: str
    admin: bool
    user: UserOut | None  # for users


class TokenCreate(BaseModel):
    name: str = Field(min_length=1, max_length=255)
    expires_at: datetime | None = None


class TokenOut(BaseModel):
    id: int
    name: str
    hint: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None


class NewTokenOut(TokenOut):
    secret: str = Field(description="Shown this once; use it as the password with your username.")


def user_out(user: User) -> UserOut:
    return UserOut(
        id=user.id,
        username=user.username,
        email=user.email,
        display_name=user.display_name,
        source=user.source.value,
        admin=user.is_admin,
        disabled=user.disabled,
        created_at=user.created_at,
        last_login_at=user.last_login_at,
    )


def token_out(token: PersonalToken) -> TokenOut:
    return TokenOut(
        id=token.id,
        name=token.name,
        hint=token.hint,
        created_at=token.created_at,
        expires_at=token.expires_at,
        last_used_at=token.last_used_at,
    )


# --- users (admins) ---------------------------------------------------------------------------
@router.get("/users", response_model=list[UserOut])
def list_users(
    request: Request,
    response: Response,
    principal: Admin,
    services: Services,
    params: Annotated[ListParams, Depends(list_params(USER_SORTS, "username"))],
    admin: Annotated[bool | None, Query(description="Only administrators (true) or others (false).")] = None,
    disabled: Annotated[bool | None, Query(description="Only disabled (true) or enabled (false).")] = None,
) -> list[UserOut]:
    """`q` matches part of the username, email or display name."""
    page = services.users.list(
        search=params.q,
        admin=admin,
        disabled=disabled,
        offset=params.offset,
        limit=params.limit,
        sort=params.sort_key,
        descending=params.descending,
    )
    set_page_headers(request, response, params, page.total)
    return [user_out(user) for user in page.items]


@router.post("/users", response_model=UserOut, status_code=201)
def create_user(body: UserCreate, request: Request, principal: Admin, services: Services) -> UserOut:
    detail = {"admin": body.admin, "source": body.source}
    with audited(services, request, principal, AuditAction.CREATE, ResourceType.USER, body.username, detail):
        source = UserSource(body.source)
        if (body.password is None) != (source is UserSource.OIDC):
            raise ApiError(400, "a local user needs a password; a single sign-on (oidc) user has none")
        user = services.users.create(
            body.username,
            body.password,
            email=body.email,
            display_name=body.display_name,
            admin=body.admin,
            source=source,
        )
    return user_out(user)


@router.get("/users/{username}", response_model=UserOut)
def get_user(username: str, principal: Admin, services: Services) -> UserOut:
    return user_out(services.users.get(username))


@router.patch("/users/{username}", response_model=UserOut)
def update_user(
    username: str, body: UserUpdate, request: Request, principal: Admin, services: Services
) -> UserOut:
    """Change email, display name, admin flag or disable/enable the account."""
    changes = body.model_dump(exclude_unset=True)
    with audited(services, request, principal, AuditAction.UPDATE, ResourceType.USER, username, changes):
        user = services.users.update(username, **changes)
    return user_out(user)


@router.put("/users/{username}/password", status_code=204)
def set_user_password(
    username: str, body: PasswordSet, request: Request, principal: Admin, services: Services
) -> None:
    detail = {"field": "password"}
    with audited(services, request, principal, AuditAction.UPDATE, ResourceType.USER, username, detail):
        credential = services.users.set_password(username, body.password)
    _keep_this_session(request, services, principal, username, credential)


@router.delete("/users/{username}", status_code=204)
def delete_user(username: str, request: Request, principal: Admin, services: Services) -> None:
    with audited(services, request, principal, AuditAction.DELETE, ResourceType.USER, username):
        services.users.delete(username)


# --- me -----------------------------------------------------------------------------------------
@router.get("/me", response_model=MeOut)
def me(principal: SignedIn, services: Services) -> MeOut:
    user = services.users.get(principal.name) if principal.kind is PrincipalKind.USER else None
    return MeOut(
        kind=principal.kind.value,
        name=principal.name,
        admin=principal.is_admin,
        user=user_out(user) if user else None,
    )


@router.put("/me/password", status_code=204)
def change_my_password(
    body: PasswordChange, request: Request, principal: SignedIn, services: Services
) -> None:
    _user_only(principal.kind)
    detail = {"field": "password"}
    with audited(services, request, principal, AuditAction.UPDATE, ResourceType.USER, principal.name, detail):
        credential = services.users.set_password(
            principal.name, body.new_password, current_password=body.current_password
        )
    _keep_this_session(request, services, principal, principal.name, credential)


@router.get("/me/tokens", response_model=list[TokenOut])
def list_my_tokens(
    request: Request,
    response: Response,
    principal: SignedIn,
    services: Services,
    params: Annotated[ListParams, Depends(list_params(("created_at", "name", "expires_at"), "created_at"))],
) -> list[TokenOut]:
    """Your personal access tokens (never their secrets). `q` matches part of the name."""
    _user_only(principal.kind)
    tokens = services.personal_tokens.list(principal.name)
    sorts = {"created_at": _created, "name": _name, "expires_at": _expires}
    page, total = page_in_memory(tokens, params, sorts, text=_name)
    set_page_headers(request, response, params, total)
    return [token_out(token) for token in page]


@router.post("/me/tokens", response_model=NewTokenOut, status_code=201)
def create_my_token(
    body: TokenCreate, request: Request, principal: SignedIn, services: Services
) -> NewTokenOut:
    """A personal access token to use instead of your password (CLI, docker login). Shown once.
    Made with your password (Basic, or a session opened with it), never with another token: a leaked
    token revoked must not leave tokens it made behind (as on GitHub)."""
    _user_only(principal.kind)
    resource = f"{principal.name}/{body.name}"
    with audited(services, request, principal, AuditAction.CREATE, ResourceType.PERSONAL_TOKEN, resource):
        made_with = principal.credential.kind if principal.credential is not None else None
        if made_with in (CredentialKind.PERSONAL_TOKEN, CredentialKind.CLI_SECRET):
            raise ApiError(403, "personal access tokens are made with your password, not with another token")
        created = services.personal_tokens.create(principal.name, body.name, body.expires_at)
    return NewTokenOut(secret=created.secret, **token_out(created.token).model_dump())


@router.delete("/me/tokens/{token_id}", status_code=204)
def revoke_my_token(token_id: ResourceId, request: Request, principal: SignedIn, services: Services) -> None:
    _user_only(principal.kind)
    resource = f"{principal.name}/{token_id}"
    with audited(services, request, principal, AuditAction.DELETE, ResourceType.PERSONAL_TOKEN, resource):
        services.personal_tokens.revoke(principal.name, token_id)


def _keep_this_session(
    request: Request,
    services: ManagementServices,
    principal: Principal,
    username: str,
    credential: Credential,
) -> None:
    """A user who changes the password their session was opened with, in that session, stays logged
    in there; every other session and refresh token of the old password ends."""
    key = session_key(request)
    opened_with = principal.credential
    if key is None or principal.name != username or opened_with is None:
        return
    if principal.kind is PrincipalKind.USER and opened_with.kind is CredentialKind.PASSWORD:
        services.login_sessions.rebind(key, credential)


def _user_only(kind: PrincipalKind) -> None:
    if kind is not PrincipalKind.USER:
        raise ApiError(403, "only users have passwords and personal access tokens")


def _created(token: PersonalToken) -> datetime:
    return token.created_at


def _name(token: PersonalToken) -> str:
    return token.name


def _expires(token: PersonalToken) -> datetime | None:
    return token.expires_at
