"""registry:2's `notifications:` section: the endpoints events are sent to, in registry:2's envelope
([notifications.md](notifications.md))."""

from typing import Any, Literal

from pydantic import Field, field_validator

from dockyard.config.base import PositiveDuration, Section, doc, empty_list
from dockyard.config.durations import Duration

Action = Literal["push", "pull", "delete", "mount"]


class IgnoreSettings(Section):
    """Events an endpoint is not sent."""

    mediatypes: list[str] = Field(
        default_factory=empty_list,
        description="Target media types not sent, e.g. `application/octet-stream`.",
    )
    actions: list[Action] = Field(
        default_factory=empty_list, description="Actions not sent: `push`, `pull`, `delete`, `mount`."
    )


class NotificationEndpoint(Section):
    """One listener: events are POSTed to `url` in batches, as registry:2's envelope."""

    name: str = Field(
        min_length=1, max_length=100, description="Names the endpoint in the delivery log and the CLI."
    )
    url: str = Field(
        description="Where events are POSTed (`http://` or `https://`). Its addresses must pass the SSRF "
        "guard: a listener on loopback or a private network needs `upstream.allowed_networks`.",
        json_schema_extra=doc("URL"),
    )
    disabled: bool = Field(default=False, description="Keep the endpoint configured but send it nothing.")
    headers: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Headers on every request, as in registry:2: `{Authorization: [Bearer TOKEN]}`. A "
        "single string is taken as a one-item list. Never logged.",
        repr=False,
    )
    timeout: PositiveDuration = Field(
        default=Duration("1s"),
        description="How long one delivery may take (connect, send, answer); a listener that hangs "
        "longer counts as a failure and the events are sent again.",
        json_schema_extra=doc("duration"),
    )
    threshold: int = Field(
        default=10,
        ge=1,
        description="Consecutive failures after which delivery to this endpoint waits `backoff` before "
        "the next attempt (below it, the next attempt follows within a second or two).",
    )
    backoff: PositiveDuration = Field(
        default=Duration("1s"),
        description="How long to wait after `threshold` consecutive failures. Events wait in the "
        "database meanwhile: none are dropped.",
        json_schema_extra=doc("duration"),
    )
    ignoredmediatypes: list[str] = Field(
        default_factory=empty_list,
        description="Target media types not sent (registry:2's older spelling of `ignore.mediatypes`).",
    )
    ignore: IgnoreSettings = IgnoreSettings()

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.lower().startswith(("http://", "https://")):
            raise ValueError("expected an http:// or https:// URL")
        return value

    @field_validator("headers", mode="before")
    @classmethod
    def _single_values_as_lists(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {name: [v] if isinstance(v, str) else v for name, v in value.items()}
        return value

    def ignores(self, action: str, media_type: str | None) -> bool:
        """Whether an event of `action` on a target of `media_type` is not sent here."""
        if action in self.ignore.actions:
            return True
        ignored = {*self.ignoredmediatypes, *self.ignore.mediatypes}
        return media_type is not None and media_type in ignored


class NotificationsSettings(Section):
    """Webhooks in registry:2's format: pushes, pulls, mounts and deletes of manifests and blobs are
    recorded with the request and POSTed by the job runner to each endpoint, retried until it answers
    2xx ([notifications.md](notifications.md))."""

    endpoints: list[NotificationEndpoint] = Field(
        default_factory=empty_list,
        description="The listeners. A variable sets the whole list as YAML: "
        "`REGISTRY_NOTIFICATIONS_ENDPOINTS='[{name: ci, url: \"https://ci.example/hook\"}]'`.",
    )
    batch: int = Field(default=100, ge=1, le=1000, description="Most events in one request to an endpoint.")
    delivery_log: int = Field(
        default=100,
        ge=1,
        le=10_000,
        description="Deliveries kept per endpoint in the delivery log (`dockyard notifications log`).",
    )

    @field_validator("endpoints")
    @classmethod
    def _unique_names(cls, value: list[NotificationEndpoint]) -> list[NotificationEndpoint]:
        names = [endpoint.name for endpoint in value]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"endpoint names must be unique: {', '.join(duplicates)}")
        return value

    @property
    def active(self) -> list[NotificationEndpoint]:
        return [endpoint for endpoint in self.endpoints if not endpoint.disabled]


class WebhooksSettings(Section):
    """Per-project webhook policies ([webhooks.md](webhooks.md)): how the job runner delivers their
    events. The policies themselves are data, managed by project administrators through the API."""

    timeout: PositiveDuration = Field(
        default=Duration("10s"),
        description="How long one delivery may take (connect, send, answer) before it counts as failed.",
        json_schema_extra=doc("duration"),
    )
    attempts: int = Field(
        default=5,
        ge=1,
        le=100,
        description="Deliveries tried per event before it is given up (logged as `gave up`); the next "
        "event of the policy follows.",
    )
    backoff: PositiveDuration = Field(
        default=Duration("2s"),
        description="The wait after the first failed attempt; it doubles after each further one, up to "
        "`max_backoff`.",
        json_schema_extra=doc("duration"),
    )
    max_backoff: PositiveDuration = Field(
        default=Duration("5m"),
        description="The longest wait between two attempts at one event.",
        json_schema_extra=doc("duration"),
    )
    delivery_log: int = Field(
        default=100, ge=1, le=10_000, description="Deliveries kept per policy in its delivery log."
    )
