"""Request-rate limits on /v2 (`limits.user`, `limits.address`): a token bucket per user or robot
for requests with valid credentials, and per client address for the others.

The router asks after the gate, which knows who is asking: `await limits.admit(scope, principal)`
raises `TooManyRequests` (429 TOOMANYREQUESTS with Retry-After) when the caller's bucket is empty.
An authenticated caller is counted by who it is, not where it comes from (a whole office behind one
NAT address does not share one budget); a caller without credentials by its address, the one
`api/forwarded.py` resolved (a forged X-Forwarded-For from an untrusted peer changes nothing), with
IPv6 counted per /64 (one host holds a whole /64 and could rotate through it). `limits.exempt`
networks are not limited. The buckets (`coordination.TokenBuckets`) are Redis's when configured,
shared by every worker and node; a Redis round trip runs in a worker thread, never on the event loop.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

import anyio.to_thread
from starlette.types import Scope

from dockyard.api.allowlist import parse_networks
from dockyard.auth.interfaces import Principal
from dockyard.coordination.interfaces import TokenBuckets
from dockyard.errors import TooManyRequests
from dockyard.observability.metrics import Metrics

Rate = tuple[float, int]  # requests a second, burst
_ADDRESS_MEMORY = 4096  # client addresses whose key (or exemption) is remembered


class ClientKeys:
    """Who a request is counted as: `user:<name>` / `robot:<name>` with valid credentials, else
    `addr:<address>` (`address_bucket`); None for a client in `limits.exempt`."""

    def __init__(self, exempt: Sequence[str] = ()) -> None:
        self.exempt = parse_networks(exempt, "limits.exempt")
        self._address_keys: dict[str | None, str | None] = {}

    def of(self, scope: Scope, principal: Principal | None) -> tuple[str, bool] | None:
        """(key, whether it is a user or robot), or None when exempt."""
        address_key = self._address_key(scope)
        if address_key is None:
            return None
        if principal is not None and not principal.is_anonymous:
            return f"{principal.kind.value}:{principal.name}", True
        return address_key, False

    def _address_key(self, scope: Scope) -> str | None:
        client = scope.get("client")
        host = str(client[0]) if client else None
        try:
            return self._address_keys[host]
        except KeyError:
            pass
        key = address_bucket(host, self.exempt)
        if len(self._address_keys) >= _ADDRESS_MEMORY:
            self._address_keys.clear()
        self._address_keys[host] = key
        return key


class RequestLimits:
    def __init__(
        self,
        buckets: TokenBuckets,
        *,
        user: Rate | None,
        address: Rate | None,
        clients: ClientKeys | None = None,
        metrics: Metrics | None = None,
        remote: bool = False,  # the buckets live in Redis: take() waits on the network
    ) -> None:
        self.buckets = buckets
        self.user = user
        self.address = address
        self.clients = clients or ClientKeys()
        self.metrics = metrics
        self.remote = remote

    async def admit(self, scope: Scope, principal: Principal | None) -> None:
        """Take one request from the caller's bucket; TooManyRequests when it is empty."""
        client = self.clients.of(scope, principal)
        if client is None:  # exempt
            return
        key, authenticated = client
        rate, limit = (self.user, "user") if authenticated else (self.address, "address")
        if rate is None:
            return
        if self.remote:
            wait = await anyio.to_thread.run_sync(self.buckets.take, key, *rate)
        else:
            wait = self.buckets.take(key, *rate)
        if wait > 0:
            if self.metrics is not None:
                self.metrics.observe_limited(limit)
            raise TooManyRequests(
                f"too many requests from this {limit}: at most {rate[0]:g} a second "
                f"(bursts of {rate[1]}); retry after the time in Retry-After",
                retry_after=wait,
            )


def address_bucket(
    host: str | None, exempt: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]
) -> str | None:
    """`addr:<ip>` (IPv4, or an IPv4 client on a dual-stack socket), `addr:<prefix>/64` (IPv6), None for
    an exempt address. A peer that is no IP (a Unix socket) shares one bucket."""
    if host is None:
        return "addr:unknown"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return "addr:unknown"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if any(ip in network for network in exempt):
        return None
    if isinstance(ip, ipaddress.IPv6Address):
        return f"addr:{ipaddress.IPv6Network((ip, 64), strict=False)}"
    return f"addr:{ip}"
