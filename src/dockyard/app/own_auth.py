"""dockyard's own auth, as an HTTP worker builds it: the accounts, the token signing keys and /token,
the gate that checks those tokens, and the management API's services (the API itself is built on its
first request). Loaded by `app.auth.build_auth` only where this auth mode is configured.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from starlette.routing import BaseRoute, Mount
from starlette.types import ASGIApp

from dockyard import __version__
from dockyard.accounts.groups import GroupService
from dockyard.accounts.interfaces import LoginLimiter
from dockyard.accounts.limiter import InProcessLoginLimiter
from dockyard.accounts.personal_tokens import PersonalTokenService
from dockyard.accounts.robots import RobotService
from dockyard.accounts.sessions import LoginSessionService
from dockyard.accounts.users import UserService
from dockyard.api.auth_changes import AnnounceWrites
from dockyard.api.lazy import LazyApp
from dockyard.api.management import MOUNT_PATH, ManagementServices, SystemInfo
from dockyard.api.management.sessions import SessionCodec
from dockyard.api.manifest_effects import ManifestEffects
from dockyard.api.oci.gate import Challenge, TokenGate
from dockyard.api.token import TokenEndpoint
from dockyard.app.auth import REMEMBERED_LOGINS, Auth
from dockyard.app.features import build_mirrors
from dockyard.auth.interfaces import Scope
from dockyard.auth.local import LocalAuthenticator
from dockyard.auth.policy import AccessPolicy
from dockyard.auth.remembered import DEFAULT_TTL, RememberedLogins
from dockyard.auth.standing import PrincipalStanding
from dockyard.auth.tokens import KeyRing, TokenIssuer, TokenService
from dockyard.bootstrap import session_secret, signing_key_passphrases
from dockyard.config.settings import Settings
from dockyard.coordination.caches import GenerationCache, entries
from dockyard.coordination.interfaces import Topic, generation_of
from dockyard.db.session import Database
from dockyard.errors import ConfigError
from dockyard.projects.robots import RobotAccessService
from dockyard.projects.services import MemberService, ProjectService
from dockyard.proxy.services import ProxyProjects
from dockyard.registry.queries import RegistryQueries
from dockyard.services import (
    Services,
    build_endpoints,
    implicit_proxy,
    registry_url,
)
from dockyard.webhooks.services import DeliveryLog

if TYPE_CHECKING:  # ldap3 loads only where LDAP is configured, httpx where OIDC is used
    from dockyard.accounts.ldap import LDAPDirectory
    from dockyard.oidc.logins import OIDCLogins
    from dockyard.scans.scanners import Scanners
    from dockyard.webhooks.policy_sender import PolicySender


def dockyard_auth(services: Services, effects: ManifestEffects | None = None) -> Auth:
    settings, db, feed = services.settings, services.db, services.feed
    auth = settings.auth

    # Account and key changes reach every worker and node through the feed's AUTH topic.
    generation = generation_of(feed, Topic.AUTH)

    def announce() -> None:
        feed.bump(Topic.AUTH)

    users, robots, groups = UserService(db), RobotService(db), GroupService(db)
    tokens = PersonalTokenService(db)
    directory = _directory(settings)
    authenticator = LocalAuthenticator(users, groups, tokens, robots, _login_limiter(settings), directory)
    policy = AccessPolicy(db)
    passphrase, older = signing_key_passphrases(settings)
    keys = KeyRing(
        db, passphrase=passphrase, older_passphrases=older, generation=generation, announce=announce
    )
    token_service = TokenService(
        keys, issuer=auth.token.issuer, service=auth.token.service, lifetime=auth.token.expiration.seconds
    )
    issuer = TokenIssuer(token_service, authenticator, policy, lookup=authenticator, generation=generation)
    # One remembered login serves /v2, /api/v1 and /metrics alike.
    logins = RememberedLogins(authenticator, DEFAULT_TTL, REMEMBERED_LOGINS, time.time, generation)
    gate = TokenGate(
        token_service,
        Challenge(auth.token.service, auth.token.realm, settings.http.host),
        logins=logins,
        policy=policy,
        generation=generation,
        standing=PrincipalStanding(policy, authenticator, generation=generation),
    )
    sessions = SessionCodec(session_secret(settings))
    management = ManagementServices(
        db=db,
        driver=services.driver,
        registry=services.registry,
        manifest_effects=effects,
        blobs=services.blobs,
        queries=RegistryQueries(db),
        quotas=services.quotas,
        immutability=services.immutability,
        system=SystemInfo(
            __version__,
            settings.storage.driver_name,
            "dockyard",
            auth.ldap is not None,
            settings.storage.maintenance.readonly.enabled,
            settings.storage.delete.enabled,
        ),
        authenticator=authenticator,
        sessions=sessions,
        login_sessions=LoginSessionService(db),
        policy=policy,
        users=users,
        personal_tokens=tokens,
        robots=robots,
        robot_access=RobotAccessService(db, robots),
        # A deleted project's cached policies (quota limit, immutability rules) must go with it.
        projects=ProjectService(db, on_delete=lambda: feed.bump(Topic.POLICIES)),
        members=MemberService(db),
        audit=services.audit,
        keys=keys,
        forget_verified_tokens=gate.forget_verified_tokens,  # tokens of a retired key: refused at once
        jobs=services.jobs,
        logins=logins,
        # Open sessions, remembered as Basic logins are: one cache per worker, forgotten on the feed.
        remembered_sessions=GenerationCache(generation, entries(REMEMBERED_LOGINS), clock=time.time),
        endpoints=build_endpoints(settings, db),
        proxies=ProxyProjects(db, feed, implicit=implicit_proxy(settings)),
        notifications=DeliveryLog(db, settings.notifications) if settings.notifications.endpoints else None,
        webhooks=services.webhook_policies,
        webhook_sender=_webhook_sender(services),
        pull_policies=services.pull_gate.policies if services.pull_gate is not None else None,
        verdicts_changed=services.verdicts_changed,
        scanners=_scanners(services),
        layer_files=settings.layer_files,
        oidc=_oidc_logins(settings, db),
        oidc_onboard=auth.oidc.auto_onboard if auth.oidc is not None else True,
        groups=groups,
        ldap_settings=auth.ldap,
        oidc_settings=auth.oidc,
        oidc_redirect_uri=oidc_redirect_uri(settings),
        ldap=directory,
    )
    management_api = Mount(
        MOUNT_PATH, app=AnnounceWrites(LazyApp(lambda: _management_app(management)), announce)
    )
    routes: list[BaseRoute] = [
        *TokenEndpoint(
            issuer, auth.token.service, audit=services.audit, rename=scope_renamer(services)
        ).routes(),
        management_api,
    ]
    # The Mount itself is what the portal calls: a scope whose path starts with /api/v1 is routed
    # exactly as one that came over the network.
    return Auth(gate, routes, policy, logins, management=management_api, sessions=sessions)


def _webhook_sender(services: Services) -> Callable[[], PolicySender] | None:
    """What sends a policy's test delivery from the API, built on the first (it loads httpx)."""
    policies = services.webhook_policies
    if policies is None:
        return None
    settings = services.settings

    @functools.cache
    def build() -> PolicySender:
        from dockyard.webhooks.delivery import policy_post
        from dockyard.webhooks.policy_sender import PolicySender

        post = policy_post(settings.upstream.allowed_networks)
        return PolicySender(services.db, policies, settings.webhooks, post, registry_url(settings))

    return build


def _management_app(management: ManagementServices) -> ASGIApp:
    """FastAPI, built on the first request under /api/v1 in the worker that gets it (api/lazy.py); each
    router with its models on the first request under its paths (api/management/router_groups.py). A
    node only pushed to and pulled from never loads them."""
    from dockyard.api.management.app import create_lazy_management_app

    return create_lazy_management_app(management)


def _login_limiter(settings: Settings) -> LoginLimiter:
    """Shared by all workers and nodes through Redis when configured; else this process's own."""
    limit = settings.auth.login_limit
    window = limit.window.seconds
    per_address, per_account = limit.max_failures_per_address, limit.max_failures_per_account
    if settings.redis.url:
        from dockyard.accounts.limiter_redis import RedisLoginLimiter
        from dockyard.coordination.redis_client import connect

        client = connect(settings.redis.url)
        return RedisLoginLimiter(
            client, limit.max_failures, window, per_address=per_address, per_account=per_account
        )
    return InProcessLoginLimiter(limit.max_failures, window, per_address=per_address, per_account=per_account)


def _directory(settings: Settings) -> LDAPDirectory | None:
    if settings.auth.ldap is None:
        return None
    from dockyard.accounts.ldap import LDAPDirectory

    try:
        return LDAPDirectory(settings.auth.ldap)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def oidc_redirect_uri(settings: Settings) -> str | None:
    """Where the OpenID provider sends the browser back: configured, or `http.host`'s portal
    callback; never from a request's Host. None without single sign-on."""
    oidc = settings.auth.oidc
    if oidc is None:
        return None
    if oidc.redirect_uri:
        return oidc.redirect_uri
    if settings.http.host:
        return settings.http.host.rstrip("/") + "/ui/oidc/callback"
    raise ConfigError("auth.oidc needs auth.oidc.redirect_uri or http.host (the provider's redirect URI)")


def _oidc_logins(settings: Settings, db: Database) -> Callable[[], OIDCLogins] | None:
    """Single sign-on's logins, built on first use (httpx loads then)."""
    oidc, redirect_uri = settings.auth.oidc, oidc_redirect_uri(settings)
    if oidc is None or redirect_uri is None:
        return None

    @functools.cache
    def build() -> OIDCLogins:
        from dockyard.oidc.client import OIDCClient
        from dockyard.oidc.logins import OIDCLogins

        return OIDCLogins(db, OIDCClient(oidc, redirect_uri), oidc)

    return build


def _scanners(services: Services) -> Callable[[], Scanners]:
    """External scanners' registrations, built on first use (cryptography loads then): secrets sealed
    like endpoints' credentials, URLs behind the upstream address guard."""
    settings = services.settings

    @functools.cache
    def build() -> Scanners:
        from dockyard.endpoints.secrets import SecretBox
        from dockyard.scans.scanners import Scanners
        from dockyard.upstream.addresses import AddressGuard

        passphrase, older = signing_key_passphrases(settings)
        return Scanners(
            services.db, SecretBox(passphrase, older), AddressGuard(settings.upstream.allowed_networks)
        )

    return build


def scope_renamer(services: Services) -> Callable[[list[Scope]], list[Scope]] | None:
    """/token's view of docker's registry-mirror pulls (see Mirrors.rename_scopes)."""
    mirrors = build_mirrors(services)
    return mirrors.rename_scopes if mirrors is not None and mirrors.default_project else None
