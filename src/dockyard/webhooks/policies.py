"""Per-project webhook policies as data: which of a project's events go to which URL, in which format
(docs/webhooks.md). The secret (the HMAC key of the signature header) and the custom headers' values are
sealed at rest like registry endpoint credentials (endpoints/secrets.py), bound to the policy's row.

Which events a project's enabled policies want is read on every manifest push and pull, so it is
cached per process until a policy change anywhere bumps Topic.POLICIES (`on_change`).
"""

from __future__ import annotations

import builtins
import ipaddress
import json
import re
from collections.abc import Callable
from typing import Any, cast
from urllib.parse import urlsplit

from sqlalchemy import Connection, Table, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from dockyard.coordination.interfaces import InvalidatedCache
from dockyard.db.base import utcnow
from dockyard.db.session import Database
from dockyard.projects.models import ProjectRow
from dockyard.projects.services import project_id
from dockyard.webhooks.interfaces import (
    EVENT_BY_NAME,
    FORMATS,
    SIGNATURE_HEADER,
    InvalidWebhook,
    Sealer,
    Secrets,
    WebhookExists,
    WebhookNotFound,
    WebhookPolicy,
    policy_cursor,
)
from dockyard.webhooks.models import (
    NotificationCursorRow,
    NotificationDeliveryRow,
    NotificationEventRow,
    WebhookPolicyRow,
)

_POLICIES = cast(Table, WebhookPolicyRow.__table__)
_CURSORS = cast(Table, NotificationCursorRow.__table__)
_DELIVERIES = cast(Table, NotificationDeliveryRow.__table__)
_EVENTS = cast(Table, NotificationEventRow.__table__)
NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")
HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}$")  # an HTTP token
MAX_HEADERS = 20
MAX_SECRET = 512
# Headers a policy may not set: the request's framing and what the signature and the format decide.
RESERVED_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "content-type",
        "transfer-encoding",
        "connection",
        "te",
        "upgrade",
        SIGNATURE_HEADER.lower(),
        "x-dockyard-event",
        "x-dockyard-delivery",
    }
)
Permits = Callable[[str], bool]  # whether the SSRF guard lets the server connect to an address


def check_webhook_url(url: str, permits: Permits | None = None) -> str:
    """A target URL as stored: http(s), a host, no credentials or fragment (a query is kept). A literal
    address the SSRF guard refuses is refused here already; names are checked when delivering."""
    url = url.strip()
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidWebhook(f"invalid URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise InvalidWebhook("the URL must start with https:// (or http://)")
    if not parts.hostname:
        raise InvalidWebhook("the URL names no host")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise InvalidWebhook("no credentials in the URL: send them as a custom header")
    if parts.fragment or any(ord(c) < 33 for c in url) or len(url) > 2048:
        raise InvalidWebhook(
            "the URL must have no fragment, spaces or control characters, and ≤ 2048 characters"
        )
    if port == 0:
        raise InvalidWebhook("invalid port 0")
    try:
        literal = ipaddress.ip_address(parts.hostname)
    except ValueError:
        literal = None
    if literal is not None and permits is not None and not permits(str(literal)):
        raise InvalidWebhook(
            f"the server may not send to {literal} (loopback, private, link-local and metadata addresses "
            "need upstream.allowed_networks)"
        )
    return url


def _events(names: list[str]) -> list[str]:
    unknown = sorted(set(names) - set(EVENT_BY_NAME))
    if unknown:
        raise InvalidWebhook(
            f"unknown event types: {', '.join(unknown)}; known: {', '.join(EVENT_BY_NAME)}",
            detail={"unknown": unknown},
        )
    if not names:
        raise InvalidWebhook("a webhook needs at least one event type")
    return [name for name in EVENT_BY_NAME if name in names]  # the catalogue's order, no duplicates


def _headers(headers: dict[str, str]) -> dict[str, str]:
    if len(headers) > MAX_HEADERS:
        raise InvalidWebhook(f"at most {MAX_HEADERS} custom headers")
    for name, value in headers.items():
        if not HEADER_NAME.match(name):
            raise InvalidWebhook(f"invalid header name {name!r}")
        if name.lower() in RESERVED_HEADERS:
            raise InvalidWebhook(f"the header {name} is set by the server")
        if not isinstance(value, str) or len(value) > 4096 or any(c in value for c in "\r\n\0"):
            raise InvalidWebhook(f"invalid value for the header {name}")
    return headers


class WebhookPolicies:
    def __init__(
        self,
        db: Database,
        sealer: Callable[[], Sealer],  # built on first use (it loads cryptography)
        cache: InvalidatedCache[str, frozenset[str]] | None = None,  # project -> actions wanted
        on_change: Callable[[], None] | None = None,  # announces a change: the caches forget
        permits: Permits | None = None,
    ) -> None:
        self._db = db
        self._sealer = sealer
        self._cache = cache
        self._on_change = on_change
        self._permits = permits

    # --- what the producers ask, on every manifest push and pull -----------------------------------
    def wanted(self, project: str) -> frozenset[str]:
        """The outbox actions some enabled policy of `project` wants (EventType.action)."""
        generation = self._cache.current_generation() if self._cache is not None else 0
        if self._cache is not None:
            cached = self._cache.get(project)
            if cached is not None:
                return cached
        with self._db.read() as connection:
            rows = connection.execute(
                select(_POLICIES.c.events)
                .join(ProjectRow, ProjectRow.id == _POLICIES.c.project_id)
                .where(ProjectRow.name == project, _POLICIES.c.enabled.is_(True))
            ).scalars()
            wanted = frozenset(EVENT_BY_NAME[name].action for events in rows for name in events)
        if self._cache is not None:
            self._cache.put(project, wanted, generation)
        return wanted

    def cached(self, project: str) -> bool:
        """Whether `wanted(project)` answers without a query."""
        return self._cache is not None and self._cache.get(project) is not None

    def cached_wanted(self, project: str) -> frozenset[str] | None:
        """What `wanted(project)` answers when that needs no query, else None."""
        return self._cache.get(project) if self._cache is not None else None

    # --- management --------------------------------------------------------------------------------
    def list(self, project: str) -> list[WebhookPolicy]:
        with self._db.read() as connection:
            project_id(connection, project)
            rows = connection.execute(_select().where(ProjectRow.name == project).order_by(_POLICIES.c.name))
            return [_policy(row) for row in rows]

    def get(self, project: str, name: str) -> WebhookPolicy:
        with self._db.read() as connection:
            return self._get(connection, project, name)

    def create(
        self,
        project: str,
        name: str,
        url: str,
        events: builtins.list[str],
        format: str = "harbor",
        enabled: bool = True,
        secret: str | None = None,
        headers: dict[str, str] | None = None,
        skip_tls_verify: bool = False,
    ) -> WebhookPolicy:
        if not NAME.match(name):
            raise InvalidWebhook(
                "a webhook's name is 1-100 of a-z, 0-9, '.', '_', '-', starting alphanumeric"
            )
        values = self._checked(url=url, events=events, format=format, secret=secret, headers=headers or {})
        now = utcnow()
        try:
            with self._db.write() as connection:
                owner = project_id(connection, project)
                policy_id = connection.execute(
                    insert(_POLICIES)
                    .values(
                        project_id=owner,
                        name=name,
                        url=values["url"],
                        enabled=enabled,
                        events=values["events"],
                        format=values["format"],
                        header_names=[],
                        skip_tls_verify=skip_tls_verify,
                        created_at=now,
                        updated_at=now,
                    )
                    .returning(_POLICIES.c.id)
                ).scalar_one()
                self._seal(connection, policy_id, secret, headers or {})
                _start_cursor(connection, policy_id)
        except IntegrityError:
            raise WebhookExists(detail={"project": project, "name": name}) from None
        self._changed()
        return self.get(project, name)

    def update(self, project: str, name: str, **changes: Any) -> WebhookPolicy:
        """Change any of url, events, format, enabled, secret ("" removes it), headers (replaces them
        all), skip_tls_verify. A policy enabled again starts with the events from then on."""
        checked = self._checked(
            **{k: v for k, v in changes.items() if k not in ("enabled", "skip_tls_verify")}
        )
        with self._db.write() as connection:
            policy = self._get(connection, project, name)
            values: dict[str, Any] = {"updated_at": utcnow()}
            for key in ("url", "events", "format"):
                if key in checked:
                    values[key] = checked[key]
            for key in ("enabled", "skip_tls_verify"):
                if changes.get(key) is not None:
                    values[key] = bool(changes[key])
            connection.execute(update(_POLICIES).where(_POLICIES.c.id == policy.id).values(**values))
            if "secret" in changes or "headers" in changes:
                current = self._secrets(connection, policy.id)
                secret = changes.get("secret", current.secret)
                headers = changes.get("headers", current.headers)
                self._seal(connection, policy.id, secret or None, headers or {})
            if values.get("enabled") and not policy.enabled:
                _start_cursor(connection, policy.id)
        self._changed()
        return self.get(project, name)

    def delete(self, project: str, name: str) -> None:
        with self._db.write() as connection:
            policy = self._get(connection, project, name)
            connection.execute(delete(_POLICIES).where(_POLICIES.c.id == policy.id))
            forget_policy(connection, policy.id)
        self._changed()

    def secrets(self, policy_id: int) -> Secrets:
        with self._db.read() as connection:
            return self._secrets(connection, policy_id)

    def enabled(self) -> builtins.list[WebhookPolicy]:
        """Every enabled policy, of every project: what the sender delivers to."""
        with self._db.read() as connection:
            rows = connection.execute(_select().where(_POLICIES.c.enabled.is_(True)).order_by(_POLICIES.c.id))
            return [_policy(row) for row in rows]

    # --- helpers -----------------------------------------------------------------------------------
    def _checked(self, **values: Any) -> dict[str, Any]:
        checked: dict[str, Any] = {}
        if values.get("url") is not None:
            checked["url"] = check_webhook_url(values["url"], self._permits)
        if values.get("events") is not None:
            checked["events"] = _events(list(values["events"]))
        if values.get("format") is not None:
            if values["format"] not in FORMATS:
                raise InvalidWebhook(f"unknown format {values['format']!r}; known: {', '.join(FORMATS)}")
            checked["format"] = values["format"]
        secret = values.get("secret")
        if secret is not None and (len(secret) > MAX_SECRET or (secret and len(secret) < 8)):
            raise InvalidWebhook(f'a secret has 8 to {MAX_SECRET} characters ("" removes it)')
        if values.get("headers") is not None:
            _headers(dict(values["headers"]))
        return checked

    def _get(self, connection: Connection, project: str, name: str) -> WebhookPolicy:
        project_id(connection, project)
        row = connection.execute(
            _select().where(ProjectRow.name == project, _POLICIES.c.name == name)
        ).first()
        if row is None:
            raise WebhookNotFound(detail={"project": project, "name": name})
        return _policy(row)

    def _seal(
        self, connection: Connection, policy_id: int, secret: str | None, headers: dict[str, str]
    ) -> None:
        sealer = self._sealer() if secret or headers else None
        bound = f"webhook:{policy_id}"
        connection.execute(
            update(_POLICIES)
            .where(_POLICIES.c.id == policy_id)
            .values(
                secret_sealed=sealer.seal(bound, secret) if sealer is not None and secret else None,
                headers_sealed=(
                    sealer.seal(bound, json.dumps(headers)) if sealer is not None and headers else None
                ),
                header_names=sorted(headers),
            )
        )

    def _secrets(self, connection: Connection, policy_id: int) -> Secrets:
        row = connection.execute(
            select(_POLICIES.c.secret_sealed, _POLICIES.c.headers_sealed).where(_POLICIES.c.id == policy_id)
        ).one()
        if row.secret_sealed is None and row.headers_sealed is None:
            return Secrets(None, {})
        sealer = self._sealer()
        bound = f"webhook:{policy_id}"
        secret = sealer.open(bound, row.secret_sealed) if row.secret_sealed else None
        headers = sealer.open(bound, row.headers_sealed) if row.headers_sealed else None
        if (row.secret_sealed and secret is None) or (row.headers_sealed and headers is None):
            raise InvalidWebhook(
                "this node cannot open the webhook's secret (another http.secret sealed it): set it again"
            )
        return Secrets(secret, json.loads(headers) if headers else {})

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change()


def _select() -> Any:
    return select(_POLICIES, ProjectRow.name.label("project")).join(
        ProjectRow, ProjectRow.id == _POLICIES.c.project_id
    )


def _policy(row: Any) -> WebhookPolicy:
    return WebhookPolicy(
        id=row.id,
        project=row.project,
        name=row.name,
        url=row.url,
        enabled=bool(row.enabled),
        events=tuple(row.events),
        format=row.format,
        has_secret=row.secret_sealed is not None,
        header_names=tuple(row.header_names or ()),
        skip_tls_verify=bool(row.skip_tls_verify),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _start_cursor(connection: Connection, policy_id: int) -> None:
    """A policy is sent the events recorded from now on, not the outbox's backlog."""
    name = policy_cursor(policy_id)
    newest = connection.execute(select(func.max(_EVENTS.c.id))).scalar() or 0
    connection.execute(delete(_CURSORS).where(_CURSORS.c.endpoint == name))
    connection.execute(insert(_CURSORS).values(endpoint=name, last_event_id=newest, failures=0))


def forget_policy(connection: Connection, policy_id: int) -> None:
    """Its cursor and delivery log (a project's delete cascades to its policies; the sender calls this
    for cursors whose policy is gone)."""
    name = policy_cursor(policy_id)
    connection.execute(delete(_CURSORS).where(_CURSORS.c.endpoint == name))
    connection.execute(delete(_DELIVERIES).where(_DELIVERIES.c.endpoint == name))
