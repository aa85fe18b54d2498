"""dockyard's own accounts as an `Authenticator`: robot secrets, personal tokens, passwords, the directory.

It sits in `auth` (not `accounts`) because it hands out `Principal`s; the checks themselves are the
account services'. Failed attempts count against the client address, the address and account, and
the account (robots: the address only); what the counts refuse (accounts.interfaces.LoginStanding)
is refused without checking the secret, with the same answer as a wrong password (the log says why).
"""

from __future__ import annotations

from datetime import datetime

from dockyard.accounts.credentials import (
    CLI_SECRET_PREFIX,
    PERSONAL_TOKEN_PREFIX,
    Credential,
    CredentialKind,
)
from dockyard.accounts.directory import DirectoryProvider, ExternalIdentity
from dockyard.accounts.groups import GroupService
from dockyard.accounts.interfaces import (
    DEAD_CREDENTIAL,
    CredentialState,
    LoginLimiter,
    LoginStanding,
    User,
    UserExists,
    UserSource,
)
from dockyard.accounts.names import is_robot_name
from dockyard.accounts.personal_tokens import PersonalTokenService
from dockyard.accounts.robots import RobotService
from dockyard.accounts.users import UserService
from dockyard.auth.interfaces import AuthenticationFailed, Principal, PrincipalKind
from dockyard.observability.logging import get_logger

log = get_logger("dockyard.auth.local")
MAX_USERNAME_LENGTH = 600  # the longest robot name; longer input is refused before any lookup
MAX_SECRET_LENGTH = 1024


class LocalAuthenticator:
    """Implements `Authenticator` against the DB, and the directory when one is given."""

    def __init__(
        self,
        users: UserService,
        groups: GroupService,
        tokens: PersonalTokenService,
        robots: RobotService,
        limiter: LoginLimiter,
        directory: DirectoryProvider | None = None,
    ) -> None:
        self._users = users
        self._groups = groups
        self._tokens = tokens
        self._robots = robots
        self._limiter = limiter
        self._directory = directory

    def authenticate(self, username: str, secret: str, client_ip: str | None = None) -> Principal:
        robot = is_robot_name(username)
        standing = self._limiter.standing(username, client_ip)
        random_secret = robot or secret.startswith((PERSONAL_TOKEN_PREFIX, CLI_SECRET_PREFIX))
        if standing is LoginStanding.ADDRESS_BLOCKED or (
            standing is LoginStanding.ACCOUNT_GUARDED and not random_secret
        ):
            log.warning(
                "login refused: too many failures",
                extra={"username": username, "client_ip": client_ip, "standing": standing.value},
            )
            raise AuthenticationFailed()
        # A guarded account still takes its robot secret or personal token, never a password.
        principal = self._check(username, secret, passwords=standing is LoginStanding.OPEN)
        if principal is None:  # DirectoryUnavailable passed through above, uncounted
            self._limiter.failed(None if robot else username, client_ip)
            log.info("login.failed", username=username, client_ip=client_ip)
            raise AuthenticationFailed()
        self._limiter.succeeded(username, client_ip)
        return principal

    def reload(self, principal: Principal) -> Principal:
        """The principal as the DB has it now, for what outlives a login (a refresh token, a session):
        AuthenticationFailed if the account is gone, disabled or expired, or the credential it
        logged in with changed or went (a new password or robot secret, a revoked personal token).
        A principal that names no credential (a refresh token from before credentials were named)
        is refused: nothing says its credential still stands."""
        return self.reload_until(principal)[0]

    def reload_until(self, principal: Principal) -> tuple[Principal, datetime | None]:
        """As `reload`, with when the credential stops by itself (a token's or robot's expiry; None:
        never), the longest its answer may be remembered."""
        state = self.credential_state(principal)
        if not state.live:
            raise AuthenticationFailed()
        if principal.kind is PrincipalKind.ROBOT:  # its secret's state covers the robot's own
            credential = principal.credential
            robot = Principal(PrincipalKind.ROBOT, principal.name, principal.id, credential=credential)
            return robot, state.expires_at
        user = self._users.find(principal.name)
        if user is None or user.disabled or user.id != principal.id:
            raise AuthenticationFailed()
        return self._user_principal(user, principal.credential), state.expires_at

    def credential_state(self, principal: Principal) -> CredentialState:
        """Whether the credential the principal logged in with still stands (one indexed query)."""
        credential, account_id = principal.credential, principal.id
        if credential is None or account_id is None:
            return DEAD_CREDENTIAL
        if principal.kind is PrincipalKind.ROBOT:
            return self._robots.credential_state(account_id, principal.name, credential)
        if principal.kind is not PrincipalKind.USER:
            return DEAD_CREDENTIAL
        if credential.kind is CredentialKind.PERSONAL_TOKEN:
            return self._tokens.credential_state(account_id, principal.name, credential)
        return self._users.credential_state(account_id, principal.name, credential)

    def _check(self, username: str, secret: str, passwords: bool = True) -> Principal | None:
        if (
            not username
            or not secret
            or len(username) > MAX_USERNAME_LENGTH
            or len(secret) > MAX_SECRET_LENGTH
        ):
            return None
        if is_robot_name(username):
            robot_login = self._robots.login(username, secret)
            if robot_login is None:
                return None
            robot, credential = robot_login
            return Principal(PrincipalKind.ROBOT, robot.name, robot.id, credential=credential)
        if secret.startswith(PERSONAL_TOKEN_PREFIX):
            token_login = self._tokens.login(username, secret)
            if token_login is not None:
                self._users.mark_login(token_login[0])
                return self._user_principal(*token_login)
            # Not a token after all: it may be a password that happens to start like one.
        if secret.startswith(CLI_SECRET_PREFIX):
            cli_login = self._users.cli_secret_login(username, secret)
            if cli_login is not None:
                return self._user_principal(*cli_login)
        if not passwords:
            return None
        password_login = self._users.password_login(username, secret)
        if password_login is not None:
            return self._user_principal(*password_login)
        if self._directory is not None:
            return self._check_directory(username, secret)
        return None

    def _check_directory(self, username: str, password: str) -> Principal | None:
        known = self._users.find(username)
        if known is not None and known.source is UserSource.LOCAL:
            return None  # a local account is never taken over by a directory entry of the same name
        assert self._directory is not None
        identity = self._directory.verify(username, password)
        if identity is None:
            return None
        try:
            user = self._users.sync_directory_user(identity)
        except UserExists:
            return None
        if user.disabled:
            return None
        groups = self._groups.set_directory_groups(user.id, identity.groups)
        credential = Credential(CredentialKind.DIRECTORY)
        return Principal(PrincipalKind.USER, user.username, user.id, user.is_admin, groups, credential)

    def single_sign_on(self, identity: ExternalIdentity, *, onboard: bool) -> Principal:
        """The principal of a user the OpenID provider just vouched for: their account created (when
        `onboard`) or refreshed, their provider groups and admin standing as the provider says now.
        UserExists, UserNotFound or InvalidName when dockyard will not let them in."""
        user = self._users.sync_oidc_user(identity, onboard=onboard)
        if user.disabled:
            raise AuthenticationFailed("this account is disabled")
        groups = self._groups.set_directory_groups(user.id, identity.groups, UserSource.OIDC)
        credential = Credential(CredentialKind.OIDC)
        return Principal(PrincipalKind.USER, user.username, user.id, user.is_admin, groups, credential)

    def _user_principal(self, user: User, credential: Credential | None) -> Principal:
        groups = self._groups.groups_of(user.id)
        return Principal(PrincipalKind.USER, user.username, user.id, user.is_admin, groups, credential)
