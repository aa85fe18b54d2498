"""SSRF defence: which addresses the server may fetch an endpoint from.

An endpoint URL is fetched by the server, from inside its network, so a user who can name a URL must not
reach what only the server can: loopback, link-local (169.254.169.254 is the cloud metadata service),
private networks, the unspecified address. The check runs on the addresses a name resolves to, at connect
time, for every connection (so every redirect hop too), and the connection goes to the address that was
checked: a name that resolves to a public address for the check and a private one for the connect (DNS
rebinding) gets no second lookup. `upstream.allowed_networks` lets an operator allow specific networks.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

from dockyard.upstream.interfaces import UpstreamAddressRefused, UpstreamInvalid, UpstreamUnavailable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], list[str]]


def system_resolver(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UpstreamUnavailable(f"cannot resolve {host}: {exc}") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _plain(address: IPAddress) -> IPAddress:
    # ::ffff:127.0.0.1 is 127.0.0.1; checking it as IPv6 would miss that it is loopback.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class AddressGuard:
    """Refuses every address that is not global (loopback, link-local, private, shared, unspecified,
    reserved, documentation) or is multicast, unless it is in `allowed`."""

    def __init__(self, allowed: Iterable[str] = (), resolver: Resolver = system_resolver) -> None:
        self.allowed: tuple[Network, ...] = tuple(ipaddress.ip_network(n, strict=False) for n in allowed)
        self.resolver = resolver

    def permits(self, address: str) -> bool:
        ip = _plain(ipaddress.ip_address(address.split("%", 1)[0]))
        if any(ip.version == net.version and ip in net for net in self.allowed):
            return True
        return ip.is_global and not ip.is_multicast

    def resolve(self, host: str, port: int) -> list[str]:
        """The addresses of `host` the server may connect to, in resolver order; refused when none."""
        host = host.strip("[]")
        try:
            addresses = [str(ipaddress.ip_address(host))]  # a literal: no lookup
        except ValueError:
            addresses = self.resolver(host, port)
        permitted = [address for address in addresses if self.permits(address)]
        if not permitted:
            shown = ", ".join(addresses) or "nothing"
            raise UpstreamAddressRefused(
                f"{host} resolves to {shown}, which the server may not fetch from "
                "(add the network to upstream.allowed_networks to allow it)"
            )
        return permitted


def check_url(url: str) -> str:
    """An endpoint URL as stored: http(s), a host, no credentials, query or fragment; without a trailing
    slash. Addresses are checked at connect time, not here (the name may resolve differently then)."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise UpstreamInvalid(f"invalid URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise UpstreamInvalid("the URL must start with https:// (or http://)")
    if not parts.hostname:
        raise UpstreamInvalid("the URL names no host")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise UpstreamInvalid("no credentials in the URL: give them as the endpoint's credentials")
    if parts.query or parts.fragment:
        raise UpstreamInvalid("the URL must have no query or fragment")
    if port == 0:
        raise UpstreamInvalid("invalid port 0")
    path = parts.path.rstrip("/")
    if path.endswith("/v2"):
        path = path[: -len("/v2")]  # people paste the API root; the client adds /v2 itself
    return f"{parts.scheme}://{parts.netloc.lower()}{path}"
