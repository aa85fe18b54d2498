"""dockyard's own accounts as an `Authenticator`: robot secrets, personal tokens, passwords, the directory.

It sits in `auth` (not `accounts`) because it hands out `Principal`s; the checks themselves are the
account services'. Failed attempts count against the client address, the address and account, and
the account (robots: the address only); what the counts refuse (accounts.interfaces.LoginStanding)
is refused without checking the secret, with the same answer as a wrong password (the log says why).
"""

from __future__ import annotations

from dockyard.accounts.credentials import PERSONAL_TOKEN_PREFIX
from dockyard.accounts.directory import DirectoryProvider
from dockyard.accounts.groups import GroupService
from dockyard.accounts.interfaces import LoginLimiter, LoginStanding, User, UserExists, UserSource
from dockyard.accounts.names import is_robot_name
from dockyard.accounts.personal_tokens import PersonalTokenService
from dockyard.accounts.robots import RobotService
from dockyard.accounts.users import UserService
from dockyard.auth.interfaces import AuthenticationFailed, Principal, PrincipalKind
from dockyard.db.base import utcnow
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
        random_secret = robot or secret.startswith(PERSONAL_TOKEN_PREFIX)
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
        """The principal as the DB has it now (for a refresh token): AuthenticationFailed if the account
        is gone, disabled or expired."""
        if principal.kind is PrincipalKind.ROBOT:
            robot = self._robots.find(principal.name)
            if robot is None or robot.disabled or robot.expired(utcnow()):
                raise AuthenticationFailed()
            return Principal(PrincipalKind.ROBOT, robot.name, robot.id)
        if principal.kind is PrincipalKind.USER:
            user = self._users.find(principal.name)
            if user is None or user.disabled or (principal.id is not None and user.id != principal.id):
                raise AuthenticationFailed()
            return self._user_principal(user)
        raise AuthenticationFailed()

    def _check(self, username: str, secret: str, passwords: bool = True) -> Principal | None:
        if (
            not username
            or not secret
            or len(username) > MAX_USERNAME_LENGTH
            or len(secret) > MAX_SECRET_LENGTH
        ):
            return None
        if is_robot_name(username):
            robot = self._robots.authenticate(username, secret)
            return Principal(PrincipalKind.ROBOT, robot.name, robot.id) if robot else None
        if secret.startswith(PERSONAL_TOKEN_PREFIX):
            user = self._tokens.authenticate(username, secret)
            if user is not None:
                self._users.mark_login(user)
                return self._user_principal(user)
            # Not a token after all: it may be a password that happens to start like one.
        if not passwords:
            return None
        user = self._users.verify_password(username, secret)
        if user is not None:
            return self._user_principal(user)
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
        return Principal(PrincipalKind.USER, user.username, user.id, user.is_admin, groups)

    def _user_principal(self, user: User) -> Principal:
        groups = self._groups.groups_of(user.id)
        return Principal(PrincipalKind.USER, user.username, user.id, user.is_admin, groups)
