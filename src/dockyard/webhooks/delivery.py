"""Notifications over HTTP: the client (the SSRF guard of registry endpoints, a total deadline, no
redirects) and the Post the sender uses. Loaded by the first `notify` run only: httpx stays out of a
job runner that has no endpoint."""

from __future__ import annotations

import httpcore
import httpx

from dockyard.upstream.addresses import AddressGuard, Resolver
from dockyard.upstream.interfaces import TLSOptions
from dockyard.upstream.transport import deadline, guarded_transport
from dockyard.webhooks.interfaces import EVENTS_MEDIA_TYPE
from dockyard.webhooks.policy_sender import PolicyPost
from dockyard.webhooks.services import Post


def guarded_client(allowed_networks: list[str]) -> httpx.Client:
    """The client notifications go out on: the SSRF guard of registry endpoints, no redirects."""
    transport = guarded_transport(AddressGuard(allowed_networks), TLSOptions())
    return httpx.Client(transport=transport, follow_redirects=False, trust_env=False)


def http_post(client: httpx.Client) -> Post:
    """A Post over `client` (its transport applies the SSRF guard); redirects are not followed."""

    def post(url: str, body: bytes, headers: dict[str, list[str]], timeout: float) -> int:
        pairs = [("Content-Type", EVENTS_MEDIA_TYPE)] + [
            (name, value) for name, values in headers.items() for value in values
        ]
        try:
            with deadline(timeout):  # the whole exchange, not each read: a trickling listener too
                response = client.post(url, content=body, headers=pairs, timeout=httpx.Timeout(timeout))
        except (httpx.TimeoutException, httpcore.TimeoutException):
            raise TimeoutError(f"no answer within {timeout}s") from None
        return response.status_code

    return post


def policy_post(allowed_networks: list[str], resolver: Resolver | None = None) -> PolicyPost:
    """The Post of webhook policies: the SSRF guard on every connection (checked on the resolved
    address at connect time), no redirects, TLS verified unless the policy skips it. One client per
    TLS mode, built on first use. `resolver`: tests name hosts with it."""
    guard = AddressGuard(allowed_networks) if resolver is None else AddressGuard(allowed_networks, resolver)
    clients: dict[bool, httpx.Client] = {}

    def post(url: str, body: bytes, headers: list[tuple[str, str]], timeout: float, verify: bool) -> int:
        client = clients.get(verify)
        if client is None:
            transport = guarded_transport(guard, TLSOptions(verify=verify))
            client = clients[verify] = httpx.Client(
                transport=transport, follow_redirects=False, trust_env=False
            )
        try:
            with deadline(timeout):
                response = client.post(url, content=body, headers=headers, timeout=httpx.Timeout(timeout))
        except (httpx.TimeoutException, httpcore.TimeoutException):
            raise TimeoutError(f"no answer within {timeout}s") from None
        return response.status_code

    return post
