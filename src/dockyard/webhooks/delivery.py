"""Notifications over HTTP: the client (the SSRF guard of registry endpoints, a total deadline, no
redirects) and the Post the sender uses. Loaded by the first `notify` run only: httpx stays out of a
job runner that has no endpoint."""

from __future__ import annotations

import httpcore
import httpx

from dockyard.upstream.addresses import AddressGuard
from dockyard.upstream.interfaces import TLSOptions
from dockyard.upstream.transport import deadline, guarded_transport
from dockyard.webhooks.interfaces import EVENTS_MEDIA_TYPE
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
