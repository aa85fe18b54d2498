"""Users: local accounts with argon2 password hashes, and directory (LDAP) accounts mirrored at login."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, bindparam, delete, exists, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from dockyard.accounts import passwords
from dockyard.accounts.credentials import (
    CLI_SECRET_PREFIX,
    Credential,
    CredentialKind,
    fingerprint,
    hash_secret,
    new_secret,
    same_fingerprint,
    secret_matches,
)
from dockyard.accounts.directory import ExternalIdentity
from dockyard.accounts.interfaces import (
    DEAD_CREDENTIAL,
    CredentialState,
    LastAdmin,
    NoCLISecret,
    Page,
    User,
    UserExists,
    UserNotFound,
    UserSource,
    WrongPassword,
)
from dockyard.accounts.models import UserRow, username_is
from dockyard.accounts.names import validate_username
from dockyard.db.base import utcnow
from dockyard.db.paging import page_rows, substring
from dockyard.db.session import Database, unless_full

USER_COLUMNS = (
    UserRow.id,
    UserRow.username,
    UserRow.email,
    UserRow.display_name,
    UserRow.source,
    UserRow.admin,
    UserRow.directory_admin,
    UserRow.disabled,
    UserRow.created_at,
    UserRow.last_login_at,
)
# Built once and run with bound values: a session's check and a bearer token's standing run these on
# every miss, where building a statement (and its cache key) cost more than running it.
_FIND_BY_NAME = select(*USER_COLUMNS).where(func.lower(UserRow.username) == bindparam("name"))
_CREDENTIAL_STATE = select(
    UserRow.username, UserRow.disabled, UserRow.source, UserRow.password_hash, UserRow.cli_secret_hash
).where(UserRow.id == bindparam("user_id"))
_SORTABLE = {
    "username": UserRow.username,
    "created_at": UserRow.created_at,
    "last_login_at": UserRow.last_login_at,
    "id": UserRow.id,
}
# A login writes last_login_at at most this often, so bursts of Basic-auth logins stay read-only.
LOGIN_STAMP_INTERVAL = timedelta(minutes=1)
_UNSET: Any = object()
_USER_CREDENTIALS = frozenset(
    {CredentialKind.PASSWORD, CredentialKind.DIRECTORY, CredentialKind.OIDC, CredentialKind.CLI_SECRET}
)


def user_from_row(row: Any) -> User:
    return User(
        id=row.id,
        username=row.username,
        email=row.email,
        display_name=row.display_name,
        source=UserSource(row.source),
        admin=bool(row.admin),
        directory_admin=bool(row.directory_admin),
        disabled=bool(row.disabled),
        created_at=row.created_at,
        last_login_at=row.last_login_at,
    )


class UserService:
    def __init__(self, db: Database) -> None:
        self._db = db

    # --- reading ------------------------------------------------------------------------------
    def find(self, username: str) -> User | None:
        if not username.isascii():  # as `username_is`: usernames are ASCII, other input is nobody
            return None
        with self._db.read() as connection:
            row = connection.execute(_FIND_BY_NAME, {"name": username.lower()}).first()
        return user_from_row(row) if row else None

    def get(self, username: str) -> User:
        user = self.find(username)
        if user is None:
            raise UserNotFound(detail={"username": username})
        return user

    def get_by_id(self, user_id: int) -> User:
        with self._db.read() as connection:
            row = connection.execute(select(*USER_COLUMNS).where(UserRow.id == user_id)).first()
        if row is None:
            raise UserNotFound(detail={"id": user_id})
        return user_from_row(row)

    def count(self) -> int:
        with self._db.read() as connection:
            return int(connection.execute(select(func.count()).select_from(UserRow)).scalar_one())

    def list(
        self,
        *,
        search: str | None = None,
        admin: bool | None = None,
        disabled: bool | None = None,
        offset: int = 0,
        limit: int = 100,
        sort: str = "username",
        descending: bool = False,
    ) -> Page[User]:
        """Users whose name, email or display name contain `search` (any case)."""
        query = select(*USER_COLUMNS)
        if search:
            query = query.where(
                or_(
                    substring(UserRow.username, search),
                    substring(UserRow.email, search),
                    substring(UserRow.display_name, search),
                )
            )
        if admin is not None:
            is_admin = or_(UserRow.admin, UserRow.directory_admin)
            query = query.where(is_admin if admin else ~is_admin)
        if disabled is not None:
            query = query.where(UserRow.disabled == disabled)
        with self._db.read() as connection:
            rows, total = page_rows(
                connection,
                query,
                sortable=_SORTABLE,
                sort=sort,
                descending=descending,
                offset=offset,
                limit=limit,
                tiebreak=UserRow.id,
            )
        return Page([user_from_row(row) for row in rows], total)

    # --- writing ------------------------------------------------------------------------------
    def create(
        self,
        username: str,
        password: str | None,
        *,
        email: str | None = None,
        display_name: str | None = None,
        admin: bool = False,
        source: UserSource = UserSource.LOCAL,
    ) -> User:
        """A local user needs a password (checked against the policy); a directory user has none."""
        validate_username(username)
        if source is UserSource.LOCAL:
            passwords.check_password_policy(password or "", username)
        elif password is not None:
            raise ValueError("directory users have no local password")
        now = utcnow()
        values = {
            "username": username,
            "email": email,
            "display_name": display_name,
            "password_hash": passwords.hash_password(password) if password is not None else None,
            "source": source.value,
            "admin": admin,
            "directory_admin": False,
            "disabled": False,
            "created_at": now,
            "updated_at": now,
        }
        try:
            with self._db.write() as connection:
                connection.execute(insert(UserRow).values(values))
        except IntegrityError as error:
            raise UserExists(detail={"username": username}) from error
        return self.get(username)

    def update(
        self,
        username: str,
        *,
        email: str | None = _UNSET,
        display_name: str | None = _UNSET,
        admin: bool | None = None,
        disabled: bool | None = None,
    ) -> User:
        """Change the given fields; refuses to demote or disable the last enabled administrator."""
        changes: dict[str, Any] = {}
        if email is not _UNSET:
            changes["email"] = email
        if display_name is not _UNSET:
            changes["display_name"] = display_name
        if admin is not None:
            changes["admin"] = admin
        if disabled is not None:
            changes["disabled"] = disabled
        with self._db.write() as connection:
            user = self._locked_user(connection, username)
            after = replace(
                user,
                admin=changes.get("admin", user.admin),
                disabled=changes.get("disabled", user.disabled),
            )
            if user.is_admin and not user.disabled and (not after.is_admin or after.disabled):
                self._refuse_if_last_admin(connection, user.id)
            if changes:
                changes["updated_at"] = utcnow()
                connection.execute(update(UserRow).where(UserRow.id == user.id).values(changes))
        return self.get(username)

    def set_password(
        self, username: str, new_password: str, *, current_password: str | None = None
    ) -> Credential:
        """Set a local user's password; with `current_password`, only if that one is right. The new
        password is a new credential: what logins with the old one handed out ends."""
        with self._db.read() as connection:
            row = connection.execute(
                select(UserRow.password_hash, UserRow.source).where(username_is(username))
            ).first()
        if row is None:
            raise UserNotFound(detail={"username": username})
        if row.source != UserSource.LOCAL:
            raise WrongPassword("the password of a directory user is changed in the directory")
        if current_password is not None and not passwords.verify_password(
            row.password_hash, current_password
        ):
            raise WrongPassword()
        passwords.check_password_policy(new_password, username)
        password_hash = passwords.hash_password(new_password)
        with self._db.write() as connection:
            connection.execute(
                update(UserRow)
                .where(username_is(username))
                .values(password_hash=password_hash, updated_at=utcnow())
            )
        return Credential(CredentialKind.PASSWORD, fingerprint(password_hash))

    def delete(self, username: str) -> None:
        """Delete a user with their tokens, group and project memberships."""
        with self._db.write() as connection:
            user = self._locked_user(connection, username)
            if user.is_admin and not user.disabled:
                self._refuse_if_last_admin(connection, user.id)
            connection.execute(delete(UserRow).where(UserRow.id == user.id))

    # --- logins -------------------------------------------------------------------------------
    def verify_password(self, username: str, password: str) -> User | None:
        """The user when `password` is their local password and the account is enabled, else None.

        Always runs one argon2 verify, so unknown and known names take the same time."""
        login = self.password_login(username, password)
        return login[0] if login is not None else None

    def password_login(self, username: str, password: str) -> tuple[User, Credential] | None:
        """As verify_password, with the credential the password is: it names the stored hash, so a
        new password (changed or reset) is another credential. A rehash at login (the hashing cost
        was raised) makes it another one too: what the old hash's logins handed out ends with it."""
        with self._db.read() as connection:
            row = connection.execute(
                select(*USER_COLUMNS, UserRow.password_hash).where(
                    username_is(username), UserRow.source == UserSource.LOCAL.value
                )
            ).first()
        password_hash = row.password_hash if row else None
        if not passwords.verify_password(password_hash, password) or row is None:
            return None
        user = user_from_row(row)
        if user.disabled:
            return None
        changes: dict[str, Any] = {}
        if passwords.needs_rehash(password_hash or ""):
            changes["password_hash"] = password_hash = passwords.hash_password(password)
        self._stamp_login(user, changes)
        return user, Credential(CredentialKind.PASSWORD, fingerprint(password_hash or ""))

    def sync_directory_user(self, identity: ExternalIdentity) -> User:
        """Create or refresh the local row of a directory user who just proved their password."""
        validate_username(identity.username)
        now = utcnow()
        fields = _directory_fields(identity, now)
        with self._db.write() as connection:
            row = connection.execute(
                select(UserRow.id, UserRow.source).where(username_is(identity.username))
            ).first()
            if row is None:
                connection.execute(
                    insert(UserRow).values(
                        username=identity.username,
                        password_hash=None,
                        source=UserSource.LDAP.value,
                        admin=False,
                        disabled=False,
                        created_at=now,
                        **fields,
                    )
                )
            elif row.source == UserSource.LDAP:
                connection.execute(update(UserRow).where(UserRow.id == row.id).values(fields))
            else:
                # A local account of the same name is not taken over by the directory.
                raise UserExists("a local user with this name exists", detail={"username": identity.username})
        return self.get(identity.username)

    def sync_oidc_user(self, identity: ExternalIdentity, *, onboard: bool) -> User:
        """Create (when `onboard`) or refresh the row of a user the OpenID provider just vouched for.

        The account is bound to the provider's subject at its first login: a later login under the
        same name with another `sub` (the name was given to someone else at the provider) is refused,
        as is a local or LDAP account of that name. An account an administrator made (`source: oidc`,
        no subject yet) is bound to the first subject that logs in with its name."""
        validate_username(identity.username)
        subject = identity.subject
        if not subject or len(subject) > 255:
            raise ValueError("an OIDC identity needs a subject of at most 255 characters")
        now = utcnow()
        fields = _directory_fields(identity, now)
        with self._db.write() as connection:
            row = connection.execute(
                select(UserRow.id, UserRow.source, UserRow.oidc_subject).where(username_is(identity.username))
            ).first()
            if row is None:
                if not onboard:
                    raise UserNotFound("no account for this user here: an administrator must create it")
                connection.execute(
                    insert(UserRow).values(
                        username=identity.username,
                        password_hash=None,
                        source=UserSource.OIDC.value,
                        admin=False,
                        disabled=False,
                        created_at=now,
                        oidc_subject=subject,
                        **fields,
                    )
                )
            elif row.source != UserSource.OIDC:
                kind = "an LDAP" if row.source == UserSource.LDAP else "a local"
                raise UserExists(f"{kind} user with this name exists", detail={"username": identity.username})
            elif row.oidc_subject not in (None, subject):
                raise UserExists(
                    "this name belongs to another single sign-on subject",
                    detail={"username": identity.username},
                )
            else:
                connection.execute(
                    update(UserRow).where(UserRow.id == row.id).values(oidc_subject=subject, **fields)
                )
        return self.get(identity.username)

    def new_cli_secret(self, username: str) -> tuple[str, Credential]:
        """A new CLI secret for an OIDC user (shown once: only its hash is kept). The old one stops
        working at once, with whatever its logins handed out (refresh tokens, bearer tokens)."""
        secret = new_secret(CLI_SECRET_PREFIX)
        secret_hash = hash_secret(secret)
        with self._db.write() as connection:
            user = self._locked_user(connection, username)
            if user.source is not UserSource.OIDC:
                raise NoCLISecret(detail={"username": user.username})
            connection.execute(
                update(UserRow)
                .where(UserRow.id == user.id)
                .values(cli_secret_hash=secret_hash, updated_at=utcnow())
            )
        return secret, Credential(CredentialKind.CLI_SECRET, fingerprint(secret_hash))

    def cli_secret_login(self, username: str, secret: str) -> tuple[User, Credential] | None:
        """The OIDC user whose CLI secret this is (enabled), with the credential it is; else None."""
        with self._db.read() as connection:
            row = connection.execute(
                select(*USER_COLUMNS, UserRow.cli_secret_hash).where(
                    username_is(username), UserRow.source == UserSource.OIDC.value
                )
            ).first()
        if row is None or row.cli_secret_hash is None or not secret_matches(secret, row.cli_secret_hash):
            return None
        user = user_from_row(row)
        if user.disabled:
            return None
        self._stamp_login(user, {})
        return user, Credential(CredentialKind.CLI_SECRET, fingerprint(row.cli_secret_hash))

    def mark_login(self, user: User) -> None:
        """Record a login made some other way (a personal token), at most once a minute."""
        self._stamp_login(user, {})

    def _stamp_login(self, user: User, changes: dict[str, Any]) -> None:
        now = utcnow()
        if user.last_login_at is None or now - user.last_login_at >= LOGIN_STAMP_INTERVAL:
            changes["last_login_at"] = now
        if changes:
            with unless_full("login time"), self._db.write() as connection:
                connection.execute(update(UserRow).where(UserRow.id == user.id).values(changes))

    def credential_state(self, user_id: int, username: str, credential: Credential) -> CredentialState:
        """Whether a password, directory, single sign-on or CLI secret login of this user still
        stands: dead when the user is gone (or the id is another user's now), disabled, or their
        password or CLI secret changed since."""
        if credential.kind not in _USER_CREDENTIALS:
            return DEAD_CREDENTIAL
        with self._db.read() as connection:
            row = connection.execute(_CREDENTIAL_STATE, {"user_id": user_id}).first()
        if row is None or row.username != username or row.disabled:
            return DEAD_CREDENTIAL
        if credential.kind is CredentialKind.DIRECTORY:
            return CredentialState(row.source == UserSource.LDAP.value)
        if credential.kind is CredentialKind.OIDC:
            return CredentialState(row.source == UserSource.OIDC.value)
        if credential.kind is CredentialKind.CLI_SECRET:
            if row.source != UserSource.OIDC.value or row.cli_secret_hash is None:
                return DEAD_CREDENTIAL
            return CredentialState(same_fingerprint(credential.fingerprint, row.cli_secret_hash))
        if row.source != UserSource.LOCAL.value or row.password_hash is None:
            return DEAD_CREDENTIAL
        return CredentialState(same_fingerprint(credential.fingerprint, row.password_hash))

    # --- helpers ------------------------------------------------------------------------------
    @staticmethod
    def _locked_user(connection: Connection, username: str) -> User:
        row = connection.execute(select(*USER_COLUMNS).where(username_is(username)).with_for_update()).first()
        if row is None:
            raise UserNotFound(detail={"username": username})
        return user_from_row(row)

    @staticmethod
    def _refuse_if_last_admin(connection: Connection, user_id: int) -> None:
        other_admin = exists().where(
            and_(
                UserRow.id != user_id,
                or_(UserRow.admin, UserRow.directory_admin),
                UserRow.disabled.is_(False),
            )
        )
        if not connection.execute(select(other_admin)).scalar():
            raise LastAdmin()


def _directory_fields(identity: ExternalIdentity, now: datetime) -> dict[str, Any]:
    """What a directory (LDAP) or OpenID provider's login refreshes on the user's row."""
    return {
        "email": identity.email,
        "display_name": identity.display_name,
        "directory_admin": identity.is_admin,
        "updated_at": now,
        "last_login_at": now,
    }
