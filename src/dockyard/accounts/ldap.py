"""LDAP / Active Directory as a `DirectoryProvider`, with ldap3: search-then-bind.

For each login: connect (ldaps://, or ldap:// with StartTLS when configured, the server certificate checked
against `ca_file`), bind as the service account (or anonymously), find the one entry the user filter
matches, read its groups, then bind as that entry's DN with the given password on the same connection.
Every verify opens its own connection, so one provider serves many threads.

Outcomes: an ExternalIdentity; None when the user is unknown, ambiguous or the password is wrong; and
DirectoryUnavailable when the directory cannot answer (down, timed out, TLS refused, service account
refused): a login must never fail as "wrong password" because the directory is unreachable.
"""

from __future__ import annotations

import logging
import math
import re
import socket
import ssl
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from typing import Any

import ldap3
from ldap3.core.exceptions import LDAPException
from ldap3.operation.search import parse_filter
from ldap3.utils.conv import escape_filter_chars

from dockyard.accounts.directory import DirectoryUnavailable, ExternalIdentity
from dockyard.config.settings import LDAPSettings

log = logging.getLogger("dockyard.accounts.ldap")

INVALID_CREDENTIALS = 49  # the bind result code for a wrong password (and, on AD, locked/expired accounts)
SIZE_LIMIT_EXCEEDED = 4
MAX_USERNAME_LENGTH = 256
# The attribute the user filter compares the username with (uid in "(&(objectClass=person)(uid={username}))")
# holds the canonical username, so "Alice" and "alice" are one local user.
_USERNAME_ATTRIBUTE = re.compile(r"\(\s*([A-Za-z][A-Za-z0-9-]*)\s*=\s*\{username\}\s*\)")


class LDAPDirectory:
    """A DirectoryProvider backed by an LDAP server or Active Directory."""

    def __init__(self, settings: LDAPSettings) -> None:
        _check_settings(settings)
        self._settings = settings
        self._admin_groups = {name.casefold() for name in settings.admin_groups}
        match = _USERNAME_ATTRIBUTE.search(settings.user_filter)
        self._username_attribute = match.group(1) if match else None
        self._tls = _tls(settings)
        if not settings.url.lower().startswith("ldaps://") and not settings.starttls:
            log.warning("auth.ldap: %s without StartTLS sends passwords in clear text", settings.url)

    def verify(self, username: str, password: str) -> ExternalIdentity | None:
        # An empty password would be an "unauthenticated bind", which LDAP servers answer with success.
        if not username or not password or len(username) > MAX_USERNAME_LENGTH:
            return None
        try:
            with self._connection() as connection:
                entry = self._find_user(connection, username)
                if entry is None:
                    return None
                groups = self._group_names(connection, entry["dn"], username)
                # The password last: binding as the user ends the service account's session here.
                if not self._bind(connection, entry["dn"], password, service=False):
                    return None
        # ldap3 wraps socket, TLS and timeout failures in LDAPException; OSError in case one slips through.
        except (LDAPException, OSError) as error:
            log.warning("auth.ldap: directory unavailable: %s", error)
            raise DirectoryUnavailable(detail=str(error)) from error
        attributes = entry["attributes"]
        return ExternalIdentity(
            username=self._canonical_username(attributes, username),
            email=_first(attributes, self._settings.email_attribute),
            display_name=_first(attributes, self._settings.display_name_attribute),
            groups=groups,
            is_admin=any(group.casefold() in self._admin_groups for group in groups),
        )

    def check(self, username: str | None = None) -> dict[str, Any]:
        """The directory as it answers now, for an administrator's "test": connect (TLS as configured),
        bind as the service account (or anonymously), read the user base; with `username`, find that
        user and their groups as a login would (no password is checked). `ok`, and `error` saying
        which step failed; never the bind password."""
        found: dict[str, Any] = {"ok": False, "error": None, "user_dn": None, "groups": [], "admin": False}
        settings = self._settings
        try:
            with self._connection() as connection:
                self._search(connection, settings.user_base_dn, "(objectClass=*)", [], size_limit=1)
                if username:
                    entry = self._find_user(connection, username)
                    if entry is None:
                        found["error"] = f"no single entry under {settings.user_base_dn} matches {username!r}"
                        return found
                    groups = self._group_names(connection, entry["dn"], username)
                    found["user_dn"] = entry["dn"]
                    found["groups"] = sorted(groups)
                    found["admin"] = any(group.casefold() in self._admin_groups for group in groups)
        except DirectoryUnavailable as error:
            found["error"] = error.message
            return found
        except (LDAPException, OSError) as error:
            found["error"] = f"{type(error).__name__}: {error}"
            return found
        found["ok"] = True
        return found

    # --- steps ---------------------------------------------------------------------------------
    def _find_user(self, connection: ldap3.Connection, username: str) -> dict[str, Any] | None:
        """The single entry the user filter matches, or None (no match, or more than one: ambiguous)."""
        search_filter = self._settings.user_filter.replace("{username}", escape_filter_chars(username))
        wanted = [self._settings.email_attribute, self._settings.display_name_attribute]
        if self._username_attribute:
            wanted.append(self._username_attribute)
        # Two are enough to know the name is ambiguous.
        entries = self._search(connection, self._settings.user_base_dn, search_filter, wanted, size_limit=2)
        if len(entries) > 1:
            log.warning("auth.ldap: %r matches more than one directory entry; login refused", username)
            return None
        return entries[0] if entries else None

    def _group_names(self, connection: ldap3.Connection, user_dn: str, username: str) -> frozenset[str]:
        settings = self._settings
        if not settings.group_base_dn:
            return frozenset()
        search_filter = settings.group_filter.replace("{user_dn}", escape_filter_chars(user_dn)).replace(
            "{username}", escape_filter_chars(username)
        )
        name_attribute = settings.group_name_attribute
        entries = self._search(connection, settings.group_base_dn, search_filter, [name_attribute])
        names = (_first(entry["attributes"], name_attribute) for entry in entries)
        return frozenset(name for name in names if name)

    def _canonical_username(self, attributes: Mapping[str, Any], typed: str) -> str:
        """The directory's spelling: the value that matches what was typed, else the first value (a login by
        mail with "(|(uid={username})(mail={username}))" is still user "alice"), else what was typed."""
        values = _values(attributes, self._username_attribute) if self._username_attribute else []
        matching = [value for value in values if value.casefold() == typed.casefold()]
        return (matching or values or [typed])[0]

    # --- ldap3 plumbing ------------------------------------------------------------------------
    @contextmanager
    def _connection(self) -> Iterator[ldap3.Connection]:
        """A connection (TLS as configured) bound as the service account, or anonymously; closed after.

        One connection per verify: nothing is shared between threads, and a TLS handshake per login."""
        settings = self._settings
        server = ldap3.Server(
            settings.url, tls=self._tls, get_info=ldap3.NONE, connect_timeout=settings.timeout
        )
        connection = ldap3.Connection(
            server,
            receive_timeout=math.ceil(settings.timeout),  # ldap3 packs it into SO_RCVTIMEO: whole seconds
            auto_referrals=False,  # never send credentials to a server a referral names
            read_only=True,
            raise_exceptions=False,  # results are checked here; socket and TLS failures still raise
        )
        try:
            connection.open()
            # Without this, Nagle holds the bind request back behind the TLS handshake's last segment until
            # the server's delayed ACK: 40 ms per bind over TLS.
            connection.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if settings.starttls:
                connection.start_tls()  # raises on failure, including a certificate that does not verify
            self._bind(connection, settings.bind_dn, settings.bind_password, service=True)
            yield connection
        finally:
            # Already closed, or the server went away: nothing left to release.
            with suppress(LDAPException, OSError):
                connection.unbind()

    def _bind(
        self, connection: ldap3.Connection, dn: str | None, password: str | None, *, service: bool
    ) -> bool:
        """Bind as dn (anonymously when None). False for a user's wrong password; anything else the
        directory refuses (the service account, an account it will not check) is DirectoryUnavailable."""
        if dn is None:
            bound = connection.rebind(authentication=ldap3.ANONYMOUS)
        else:
            bound = connection.rebind(user=dn, password=password, authentication=ldap3.SIMPLE)
        if bound:
            return True
        result = connection.result or {}
        if not service and result.get("result") == INVALID_CREDENTIALS:
            return False
        who = "the service account" if service else "a user"
        raise DirectoryUnavailable(f"the directory refused to bind {who}: {_describe(result)}")

    def _search(
        self,
        connection: ldap3.Connection,
        base: str,
        search_filter: str,
        attributes: Sequence[str],
        size_limit: int = 0,
    ) -> list[dict[str, Any]]:
        connection.search(
            base,
            search_filter,
            search_scope=ldap3.SUBTREE,
            attributes=list(attributes),
            size_limit=size_limit,
            time_limit=math.ceil(self._settings.timeout),
        )
        result = connection.result or {}
        # sizeLimitExceeded still returns the entries that fit, which is what the ambiguity check needs.
        if result.get("result") not in (0, SIZE_LIMIT_EXCEEDED):
            raise DirectoryUnavailable(f"the directory refused a search under {base}: {_describe(result)}")
        # Search references (AD's referrals to other partitions) are not entries: skip them.
        return [item for item in connection.response or [] if item.get("type") == "searchResEntry"]


def _tls(settings: LDAPSettings) -> ldap3.Tls:
    """Verify the server certificate (against ca_file, or the system's CAs) and its host name."""
    try:
        return ldap3.Tls(
            validate=ssl.CERT_REQUIRED,
            ca_certs_file=str(settings.ca_file) if settings.ca_file else None,
        )
    except LDAPException as error:
        raise ValueError(f"auth.ldap.ca_file: {error}") from error


def _check_settings(settings: LDAPSettings) -> None:
    """Refuse a configuration that could only fail later, or worse, let everyone in."""
    url = settings.url.lower()
    if not url.startswith(("ldap://", "ldaps://")):
        raise ValueError("auth.ldap.url must start with ldap:// or ldaps://")
    if settings.starttls and url.startswith("ldaps://"):
        raise ValueError("auth.ldap.starttls is for ldap:// URLs; ldaps:// is TLS already")
    if settings.bind_dn and not settings.bind_password:
        # A DN without a password is an unauthenticated bind: it "succeeds" with no rights at all.
        raise ValueError("auth.ldap.bind_password is required with auth.ldap.bind_dn")
    if "{username}" not in settings.user_filter:
        raise ValueError("auth.ldap.user_filter must contain {username}")
    group_filter = settings.group_filter
    if settings.group_base_dn and "{user_dn}" not in group_filter and "{username}" not in group_filter:
        # Without either, every user would be in every group the filter matches (admin groups too).
        raise ValueError("auth.ldap.group_filter must contain {user_dn} or {username}")
    for key, template in (("user_filter", settings.user_filter), ("group_filter", settings.group_filter)):
        sample = template.replace("{username}", "x").replace("{user_dn}", "cn=x")
        try:
            parse_filter(sample, None, False, False, None, False)  # no schema, no escaping, no checks
        except LDAPException as error:
            raise ValueError(f"auth.ldap.{key} is not a valid LDAP filter: {error}") from error


def _values(attributes: Mapping[str, Any], name: str) -> list[str]:
    """An attribute's values, whatever case the server spelled its name in; ldap3 gives str or list."""
    for key, value in attributes.items():
        if key.casefold() == name.casefold():
            values = value if isinstance(value, list) else [value]
            return [str(item) for item in values if item not in (None, "", b"")]
    return []


def _first(attributes: Mapping[str, Any], name: str) -> str | None:
    values = _values(attributes, name)
    return values[0] if values else None


def _describe(result: Mapping[str, Any]) -> str:
    return f"{result.get('description')} {result.get('message') or ''}".strip()
