"""What the management API needs, handed in by the composition root (`dockyard.app`): nothing is
built here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from starlette.requests import Request

from dockyard.accounts.directory import ExternalIdentity
from dockyard.accounts.groups import GroupService
from dockyard.accounts.personal_tokens import PersonalTokenService
from dockyard.accounts.robots import RobotService
from dockyard.accounts.sessions import LoginSessionService
from dockyard.accounts.users import UserService
from dockyard.api.management.sessions import SessionCodec
from dockyard.api.manifest_effects import ManifestEffects
from dockyard.audit.services import AuditLog
from dockyard.auth.interfaces import Principal
from dockyard.auth.policy import AccessPolicy
from dockyard.auth.remembered import RememberedLogins
from dockyard.auth.tokens import KeyRing
from dockyard.config.auth_settings import LDAPSettings, OIDCSettings
from dockyard.config.layer_files_settings import LayerFilesSettings
from dockyard.coordination.caches import GenerationCache
from dockyard.db.session import Database
from dockyard.jobs.queue import JobQueue
from dockyard.projects.immutability import ImmutabilityRules
from dockyard.projects.pull_policies import PullPolicies
from dockyard.projects.quotas import Quotas
from dockyard.projects.robots import RobotAccessService
from dockyard.projects.services import MemberService, ProjectService
from dockyard.proxy.services import ProxyProjects
from dockyard.registry.queries import RegistryQueries
from dockyard.registry.services import Registry
from dockyard.storage.blobs import BlobStore
from dockyard.storage.driver.base import StorageDriver
from dockyard.webhooks.policies import WebhookPolicies
from dockyard.webhooks.policy_sender import PolicySender
from dockyard.webhooks.services import DeliveryLog

if TYPE_CHECKING:  # built on first use: httpx and cryptography load only where endpoints are used
    from dockyard.accounts.ldap import LDAPDirectory
    from dockyard.endpoints.services import EndpointService
    from dockyard.oidc.logins import OIDCLogins
    from dockyard.scans.scanners import Scanners
    from dockyard.signatures.interfaces import VerdictsChanged


@dataclass(frozen=True, slots=True)
class SystemInfo:
    version: str
    storage_driver: str  # "filesystem" | "inmemory" | ...
    auth_mode: str  # "dockyard" (own accounts and tokens), "htpasswd", "token" (external), "none"
    ldap: bool  # an LDAP/AD directory is configured
    read_only: bool
    delete_enabled: bool


class SessionAuthenticator(Protocol):
    """An Authenticator that can also reload a principal (auth.local.LocalAuthenticator is one)."""

    def authenticate(self, username: str, secret: str, client_ip: str | None = None) -> Principal:
        """The principal, or AuthenticationFailed."""
        ...

    def reload(self, principal: Principal) -> Principal:
        """The principal as the DB has it now; AuthenticationFailed if gone, disabled or expired, or
        the credential it logged in with changed or went."""
        ...

    def reload_until(self, principal: Principal) -> tuple[Principal, datetime | None]:
        """As `reload`, with when the credential expires by itself (None: never)."""
        ...

    def single_sign_on(self, identity: ExternalIdentity, *, onboard: bool) -> Principal:
        """The principal of a user an OpenID provider vouched for, their account synced."""
        ...


@dataclass
class ManagementServices:
    db: Database
    driver: StorageDriver
    registry: Registry
    queries: RegistryQueries
    quotas: Quotas
    immutability: ImmutabilityRules
    system: SystemInfo
    authenticator: SessionAuthenticator
    sessions: SessionCodec
    login_sessions: LoginSessionService  # the open sessions (rows): logout closes one
    policy: AccessPolicy
    users: UserService
    personal_tokens: PersonalTokenService
    robots: RobotService
    robot_access: RobotAccessService
    projects: ProjectService
    members: MemberService
    audit: AuditLog
    keys: KeyRing | None = None  # the token signing keys; None when tokens come from elsewhere
    # Called after a key is retired: this process forgets the tokens its /v2 gate already verified.
    forget_verified_tokens: Callable[[], None] | None = None
    jobs: JobQueue | None = None  # the background job queue (routers/jobs.py)
    # The /v2 gate's remembered Basic logins, shared: None checks every Basic request in full.
    logins: RememberedLogins | None = None
    # Open sessions this worker checked, by the SHA-256 of their key: following the change feed's AUTH
    # topic (security.py). None checks the session, its account and credential on every request.
    remembered_sessions: GenerationCache[bytes, Principal] | None = None
    # Registry endpoints (routers/endpoints.py): the service, built on the first call.
    endpoints: Callable[[], EndpointService] | None = None
    # Which projects are proxies of which endpoint (the pull-through cache; routers/projects.py).
    proxies: ProxyProjects | None = None
    # registry:2 notification endpoints' delivery log (routers/notifications.py); None: none configured.
    notifications: DeliveryLog | None = None
    # Per-project webhook policies (routers/webhooks.py) and their sender for test deliveries.
    webhooks: WebhookPolicies | None = None
    webhook_sender: Callable[[], PolicySender] | None = None
    # The blob store, for reading small blobs such as signature payloads (routers/signatures.py).
    blobs: BlobStore | None = None
    # Per-project pull policies (routers/projects.py); None: not available.
    pull_policies: PullPolicies | None = None
    # A trusted key added or deleted (no argument: every repository), a verdict stored (its
    # repository): the pull gates decide again (Topic.VERDICTS).
    verdicts_changed: VerdictsChanged | None = None
    # External scanners (routers/scanners.py): the service, built on the first call.
    scanners: Callable[[], Scanners] | None = None
    # Bounds on the layer browser's reads (routers/files.py): decompressed bytes, entries, time.
    layer_files: LayerFilesSettings = field(default_factory=LayerFilesSettings)
    # OpenID Connect single sign-on (routers/oidc.py): the logins, built on first use; None: not set up.
    oidc: Callable[[], OIDCLogins] | None = None
    oidc_onboard: bool = True  # create the account of an OIDC user at their first login
    groups: GroupService | None = None  # groups of users (routers/groups.py); None: not available
    # How users sign in (routers/sign_in.py): the settings as configured, and the directory to test.
    ldap_settings: LDAPSettings | None = None
    oidc_settings: OIDCSettings | None = None
    oidc_redirect_uri: str | None = None  # the one in use (configured, or from http.host)
    ldap: LDAPDirectory | None = None
    # What follows a tag set or a manifest delete (events, replication, ...), as after a /v2 push.
    manifest_effects: ManifestEffects | None = None


async def services_of(request: Request) -> ManagementServices:
    # async: a plain `def` dependency is run in a worker thread, a hand-off costing more than this.
    services: ManagementServices = request.app.state.services
    return services
