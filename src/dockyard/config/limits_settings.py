"""The `limits:` section: request rates and concurrent uploads on `/v2` ([limits.md](limits.md))."""

import math

from pydantic import Field

from dockyard.config.base import Networks, PositiveDuration, Section, doc, empty_list
from dockyard.config.durations import Duration


class RequestRate(Section):
    """A token bucket: `burst` requests at once, then `rate` a second. `rate: 0` (the default): no limit."""

    rate: float = Field(
        default=0,
        ge=0,
        description="Requests a second, sustained (fractions allowed: `0.5` is one every two seconds). "
        "`0`: no limit.",
    )
    burst: int = Field(
        default=0,
        ge=0,
        description="Requests allowed at once after a quiet spell (the bucket's size). `0`: `rate`, "
        "rounded up.",
    )

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    @property
    def bucket_size(self) -> int:
        return self.burst or max(1, math.ceil(self.rate))


class LimitsSettings(Section):
    """Limits that keep one noisy client from starving the others on `/v2` ([limits.md](limits.md)). All
    off by default. Over a limit a request is answered `429 TOOMANYREQUESTS` with `Retry-After`. With
    `redis.url` the budgets are shared by every worker and node; without it each worker process keeps
    its own (so `http.workers` times the rate per node)."""

    user: RequestRate = Field(
        default_factory=RequestRate,
        description="Per user and per robot account, for requests with valid credentials (whatever "
        "address they come from).",
    )
    address: RequestRate = Field(
        default_factory=RequestRate,
        description="Per client address, for requests without valid credentials (anonymous pulls, the "
        "first `401`s of a login). IPv6 clients are counted per `/64`. Behind a load balancer, set "
        "`http.trusted_proxies` so the client's address is the one the balancer reports.",
    )
    exempt: Networks = Field(
        default_factory=empty_list,
        description="Client addresses no limit applies to (CI runners on your network, a replication "
        "peer): `[10.0.0.0/8]`. A variable takes a comma-separated list.",
        json_schema_extra=doc("list of CIDRs"),
    )
    uploads_per_client: int = Field(
        default=0,
        ge=0,
        description="Blob uploads one user, robot or (without credentials) address may have open at once, "
        "from `POST .../blobs/uploads/` until the upload's `PUT`, its `DELETE`, or `upload_timeout`. "
        "One more is refused with `429`; the client may retry (a `PATCH` of an upload whose place "
        "expired takes one again). Single-request uploads (`POST ...?digest=`) hold no place. "
        "`0`: no limit.",
    )
    uploads_total: int = Field(
        default=0,
        ge=0,
        description="Blob uploads open at once on the whole registry. `0`: no limit.",
    )
    upload_timeout: PositiveDuration = Field(
        default=Duration("15m"),
        description="An upload that receives nothing for this long gives back its place in "
        "`uploads_per_client` and `uploads_total` (a client that went away does not hold it for good); "
        "its session stays valid until purged (`storage.maintenance.uploadpurging`).",
        json_schema_extra=doc("duration"),
    )

    @property
    def requests_limited(self) -> bool:
        return self.user.enabled or self.address.enabled

    @property
    def uploads_limited(self) -> bool:
        return self.uploads_per_client > 0 or self.uploads_total > 0
