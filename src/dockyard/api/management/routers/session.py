"""Browser sessions: POST /login sets a signed, HttpOnly, SameSite=Strict cookie and opens the session;
POST /logout ends it (server side: a kept copy of the cookie is refused too) and clears the cookie."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field

from dockyard.accounts.names import is_robot_name
from dockyard.api.management.audit import AUDITED_STATE
from dockyard.api.management.context import ManagementServices, services_of
from dockyard.api.management.errors import ApiError
from dockyard.api.management.security import client_ip
from dockyard.api.management.sessions import COOKIE_NAME, CSRF_HEADER
from dockyard.audit.interfaces import ActorKind, AuditAction, AuditEvent, AuditResult
from dockyard.auth.interfaces import AuthenticationFailed, Principal, PrincipalKind

router = APIRouter(tags=["session"])


class LoginIn(BaseModel):
    username: str = Field(min_length=1, max_length=255)
    password: str = Field(min_length=1, max_length=1024)


class SessionOut(BaseModel):
    username: str
    admin: bool
    csrf_token: str = Field(description=f"Send it back in the {CSRF_HEADER} header on unsafe methods.")
    expires_at: datetime


@router.post("/login", response_model=SessionOut)
def login(
    credentials: LoginIn,
    request: Request,
    response: Response,
    services: Annotated[ManagementServices, Depends(services_of)],
) -> SessionOut:
    """Open a session with a password (or a personal access token). Robots use Basic auth instead."""
    setattr(request.state, AUDITED_STATE, True)
    try:
        principal = services.authenticator.authenticate(
            credentials.username, credentials.password, client_ip(request)
        )
    except AuthenticationFailed:
        record_login(services, request, credentials.username, AuditAction.LOGIN_FAILED, AuditResult.FAILED)
        raise
    if principal.kind is not PrincipalKind.USER:
        record_login(services, request, principal.name, AuditAction.LOGIN_FAILED, AuditResult.DENIED)
        raise ApiError(403, "robot accounts cannot open sessions; send Basic credentials with each request")
    if principal.id is None or principal.credential is None:  # not a dockyard account
        raise ApiError(403, "this account cannot open sessions; send Basic credentials with each request")
    record_login(services, request, principal.name, AuditAction.LOGIN, AuditResult.OK)
    return open_session(services, request, response, principal)


def open_session(
    services: ManagementServices, request: Request, response: Response, principal: Principal
) -> SessionOut:
    """Open a session for a user who just logged in (a password, a token, single sign-on): its row,
    its cookie, its CSRF token."""
    assert principal.id is not None and principal.credential is not None
    value, session = services.sessions.issue(principal.kind.value, principal.name, principal.id)
    expires_at = datetime.fromtimestamp(session.expires_at, UTC)
    services.login_sessions.open(session.key, principal.id, principal.credential, expires_at)
    response.set_cookie(
        COOKIE_NAME,
        value,
        max_age=services.sessions.max_age,
        path=_cookie_path(request),
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )
    return SessionOut(
        username=principal.name,
        admin=principal.is_admin,
        csrf_token=session.csrf_token,
        expires_at=expires_at,
    )


@router.post("/logout", status_code=204)
def logout(
    request: Request, response: Response, services: Annotated[ManagementServices, Depends(services_of)]
) -> None:
    """End the session and clear its cookie: a copy of the cookie kept elsewhere is refused too."""
    cookie = request.cookies.get(COOKIE_NAME)
    session = services.sessions.read(cookie) if cookie else None
    if session is not None:
        services.login_sessions.close(session.key)
    response.delete_cookie(COOKIE_NAME, path=_cookie_path(request), httponly=True, samesite="strict")


def record_login(
    services: ManagementServices,
    request: Request,
    name: str,
    action: AuditAction,
    result: AuditResult,
    via: str = "management session",
) -> None:
    services.audit.record(
        AuditEvent(
            action=action,
            actor=name,
            actor_kind=ActorKind.ROBOT if is_robot_name(name) else ActorKind.USER,
            result=result,
            client_ip=client_ip(request),
            detail={"via": via},
        )
    )


def _cookie_path(request: Request) -> str:
    # Only the API needs the cookie: scope it to where this app is mounted (/api/v1).
    return request.scope.get("root_path") or "/"
