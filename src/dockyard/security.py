"""Composition of authentication and authorization from Settings: which /v2 gate, the token endpoint,
the management API, and the first administrator. Part of the composition root (with `app`)."""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from starlette.routing import BaseRoute, Mount
from starlette.types import ASGIApp

from dockyard import __version__
from dockyard.accounts.bootstrap import bootstrap_admin
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
from dockyard.api.oci.gate import BasicGate, Challenge, Gate, TokenGate
from dockyard.api.token import TokenEndpoint
from dockyard.audit.services import AuditLog
from dockyard.auth.external import ExternalTokenVerifier
from dockyard.auth.htpasswd import HtpasswdAuthenticator
from dockyard.auth.interfaces import Principal
from dockyard.auth.keystore import encrypt_at_rest
from dockyard.auth.local import LocalAuthenticator
from dockyard.auth.policy import AccessPolicy
from dockyard.auth.standing import PrincipalStanding
from dockyard.auth.tokens import KeyRing, TokenIssuer, TokenService
from dockyard.config.settings import Settings
from dockyard.db.session import Database
from dockyard.errors import ConfigError
from dockyard.jobs.queue import JobQueue
from dockyard.projects.immutability import ImmutabilityRules
from dockyard.projects.quotas import Quotas
from dockyard.projects.robots import RobotAccessService
from dockyard.projects.services import MemberService, ProjectService
from dockyard.registry.cache import ChangeFeed, Topic
from dockyard.registry.queries import RegistryQueries
from dockyard.registry.services import Registry
from dockyard.storage.driver.base import StorageDriver

if TYPE_CHECKING:  # ldap3 and redis-py load only where LDAP or Redis is configured
    from dockyard.accounts.ldap import LDAPDirectory

SESSION_SECRET_FILE = "session-secret"
KEY_SECRET_FILE = "signing-key-secret"


@dataclass
class Security:
    gate: Gate | None  # None: the registry is open
    routes: list[BaseRoute] = field(default_factory=list)  # /token and /api/v1
    policy: AccessPolicy | None = None

    def visible_projects(self, principal: Principal) -> frozenset[str] | None:
        if self.policy is None:
            return None
        visibility = self.policy.visible_projects(principal)
        return None if visibility.all else visibility.projects


def auth_mode(settings: Settings) -> str:
    auth = settings.auth
    if auth.htpasswd is not None:
        return "htpasswd"
    if auth.token.rootcertbundle is not None:
        return "token"
    return "dockyard" if auth.enabled else "none"


def build_security(
    settings: Settings,
    db: Database,
    driver: StorageDriver,
    registry: Registry,
    quotas: Quotas,
    immutability: ImmutabilityRules,
    audit: AuditLog,
    jobs: JobQueue | None = None,
    feed: ChangeFeed | None = None,
) -> Security:
    auth = settings.auth
    mode = auth_mode(settings)
    if mode == "htpasswd":
        assert auth.htpasswd is not None
        return Security(BasicGate(HtpasswdAuthenticator(auth.htpasswd.path), auth.htpasswd.realm))
    if mode == "token":
        assert auth.token.rootcertbundle is not None
        verifier = ExternalTokenVerifier.from_bundle(
            auth.token.rootcertbundle, issuer=auth.token.issuer, service=auth.token.service
        )
        return Security(TokenGate(verifier, Challenge(auth.token.service, auth.token.realm)))
    if mode == "none":
        return Security(None)
    return _dockyard_security(settings, db, driver, registry, quotas, immutability, audit, jobs, feed)


def _dockyard_security(
    settings: Settings,
    db: Database,
    driver: StorageDriver,
    registry: Registry,
    quotas: Quotas,
    immutability: ImmutabilityRules,
    audit: AuditLog,
    jobs: JobQueue | None = None,
    feed: ChangeFeed | None = None,
) -> Security:
    auth = settings.auth
    # Account and key changes reach every worker and node through the feed's AUTH topic.
    generation = (lambda: feed.generation(Topic.AUTH)) if feed is not None else None
    announce = (lambda: feed.bump(Topic.AUTH)) if feed is not None else None
    # A deleted project's cached policies (quota limit, immutability rules) must go with it.
    policies_changed = (lambda: feed.bump(Topic.POLICIES)) if feed is not None else None
    users, robots = UserService(db), RobotService(db)
    tokens = PersonalTokenService(db)
    limiter = _login_limiter(settings)
    directory = _directory(settings)
    authenticator = LocalAuthenticator(users, GroupService(db), tokens, robots, limiter, directory)
    policy = AccessPolicy(db)
    passphrase, older = signing_key_passphrases(settings)
    keys = KeyRing(
        db, passphrase=passphrase, older_passphrases=older, generation=generation, announce=announce
    )
    token_service = TokenService(
        keys,
        issuer=auth.token.issuer,
        service=auth.token.service,
        lifetime=auth.token.expiration.seconds,
    )
    issuer = TokenIssuer(token_service, authenticator, policy, lookup=authenticator, generation=generation)
    gate = TokenGate(
        token_service,
        Challenge(auth.token.service, auth.token.realm, settings.http.host),
        authenticator=authenticator,
        policy=policy,
        generation=generation,
        standing=PrincipalStanding(policy, authenticator, generation=generation),
    )
    management = ManagementServices(
        db=db,
        driver=driver,
        registry=registry,
        queries=RegistryQueries(db),
        quotas=quotas,
        immutability=immutability,
        system=SystemInfo(
            __version__,
            settings.storage.driver_name,
            "dockyard",
            settings.auth.ldap is not None,
            settings.storage.maintenance.readonly.enabled,
            settings.storage.delete.enabled,
        ),
        authenticator=authenticator,
        sessions=SessionCodec(session_secret(settings)),
        login_sessions=LoginSessionService(db),
        policy=policy,
        users=users,
        personal_tokens=tokens,
        robots=robots,
        robot_access=RobotAccessService(db, robots),
        projects=ProjectService(db, on_delete=policies_changed),
        members=MemberService(db),
        audit=audit,
        keys=keys,
        forget_verified_tokens=lambda: gate.tokens.clear(),  # tokens of a retired key: refused at once
        jobs=jobs,
        logins=gate.basic,  # one remembered login serves /v2 and /api/v1 alike
    )
    routes: list[BaseRoute] = [
        *TokenEndpoint(issuer, auth.token.service, audit=audit).routes(),
        Mount(MOUNT_PATH, app=_announcing(LazyApp(lambda: _management_app(management)), announce)),
    ]
    return Security(gate, routes, policy)


def _management_app(management: ManagementServices) -> ASGIApp:
    """FastAPI and the API's routers and models: built on the first request under /api/v1, in the
    worker that gets it (api/lazy.py). A node only pushed to and pulled from never loads them."""
    from dockyard.api.management.app import create_management_app

    return create_management_app(management)


def _announcing(app: ASGIApp, announce: Callable[[], None] | None) -> ASGIApp:
    return AnnounceWrites(app, announce) if announce is not None else app


def _login_limiter(settings: Settings) -> LoginLimiter:
    """Shared by all workers and nodes through Redis when configured; else this process's own."""
    limit = settings.auth.login_limit
    window = limit.window.seconds
    per_address, per_account = limit.max_failures_per_address, limit.max_failures_per_account
    if settings.redis.url:
        from dockyard.accounts.limiter_redis import RedisLoginLimiter
        from dockyard.registry.cache_redis import connect

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


def session_secret(settings: Settings) -> bytes:
    """Shared by every worker (and node): http.secret when long enough, else a file in the datadir."""
    if settings.http.secret and len(settings.http.secret.encode()) >= 32:
        return settings.http.secret.encode()
    return _datadir_secret(settings.datadir / SESSION_SECRET_FILE)


def signing_key_passphrases(settings: Settings) -> tuple[bytes, list[bytes | None]]:
    """What the token signing keys are encrypted under at rest, never a value in the database:
    http.secret (the same on every node), else a secret generated once in the datadir (0600). Then
    what stored keys may still be under: that datadir secret (from before http.secret was set), and
    nothing (keys older versions stored in the clear)."""
    path = settings.datadir / KEY_SECRET_FILE
    if settings.http.secret:
        older: list[bytes | None] = [path.read_text().strip().encode()] if path.is_file() else []
        return settings.http.secret.encode(), [*older, None]
    return _datadir_secret(path), [None]


def encrypt_signing_keys(settings: Settings, db: Database) -> int:
    """At start, before the workers: keys in the clear or under an older passphrase are re-encrypted
    under the current one. Returns how many were."""
    passphrase, older = signing_key_passphrases(settings)
    return encrypt_at_rest(db, passphrase, older)


def _datadir_secret(path: Path) -> bytes:
    """The random secret in `path` (made once, mode 0600, by whichever process comes first)."""
    _create_once(path, secrets.token_hex(32))
    for _ in range(50):  # a process that lost the creation race may read before the winner wrote
        value = path.read_text().strip()
        if value:
            return value.encode()
        time.sleep(0.01)
    raise ConfigError(f"{path} is empty: delete it and restart")


def _create_once(path: Path, text: str) -> None:
    """Write path (mode 0600) unless it exists; of several racing processes exactly one writes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "w") as file:
        file.write(text)


def first_admin(settings: Settings, db: Database, env_password: str | None) -> str | None:
    """Create `admin` on the first start of dockyard's own auth; the generated password, if any."""
    if auth_mode(settings) != "dockyard":
        return None
    return bootstrap_admin(UserService(db), settings.datadir, env_password)
