"""SSRF defence: which addresses the upstream client may connect to, and which URLs it takes."""

from __future__ import annotations

import pytest

from dockyard.upstream.addresses import AddressGuard, check_url
from dockyard.upstream.interfaces import UpstreamAddressRefused, UpstreamInvalid

REFUSED_BY_DEFAULT = [
    "127.0.0.1",
    "127.8.9.10",
    "0.0.0.0",
    "10.1.2.3",
    "172.16.0.1",
    "192.168.1.1",
    "169.254.169.254",  # cloud metadata
    "100.64.0.1",  # shared address space (carrier NAT)
    "224.0.0.1",
    "255.255.255.255",
    "::1",
    "::",
    "fe80::1",
    "fc00::1",
    "::ffff:127.0.0.1",  # IPv4-mapped loopback
    "::ffff:169.254.169.254",
    "192.0.2.1",  # documentation
]


@pytest.mark.parametrize("address", REFUSED_BY_DEFAULT)
def test_internal_addresses_are_refused_by_default(address: str) -> None:
    guard = AddressGuard()
    assert not guard.permits(address)
    with pytest.raises(UpstreamAddressRefused):
        guard.resolve(address, 443)
    with pytest.raises(UpstreamAddressRefused):
        guard.resolve(f"[{address}]" if ":" in address else address, 443)


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert AddressGuard().permits(address)


def test_allowed_networks_open_exactly_those() -> None:
    guard = AddressGuard(["127.0.0.0/8", "10.20.0.0/16"])
    assert guard.permits("127.0.0.1") and guard.permits("10.20.3.4") and guard.permits("::ffff:127.0.0.1")
    assert not guard.permits("10.21.0.1")
    assert not guard.permits("169.254.169.254")
    assert not guard.permits("::1")  # 127.0.0.0/8 says nothing about IPv6 loopback


def test_names_are_checked_on_every_address_they_resolve_to() -> None:
    names = {
        "internal.example": ["10.0.0.5"],
        "mixed.example": ["10.0.0.5", "93.184.216.34"],
        "metadata.example": ["169.254.169.254"],
    }
    guard = AddressGuard(resolver=lambda host, port: names[host])
    with pytest.raises(UpstreamAddressRefused, match=r"10\.0\.0\.5"):
        guard.resolve("internal.example", 443)
    with pytest.raises(UpstreamAddressRefused):
        guard.resolve("metadata.example", 80)
    # Only the checked address is connected to: the internal one is left out.
    assert guard.resolve("mixed.example", 443) == ["93.184.216.34"]


def test_localhost_resolves_to_loopback_and_is_refused() -> None:
    with pytest.raises(UpstreamAddressRefused):
        AddressGuard().resolve("localhost", 80)


@pytest.mark.parametrize(
    ("url", "stored"),
    [
        ("https://registry.example", "https://registry.example"),
        ("https://Registry.Example:5000/", "https://registry.example:5000"),
        ("https://registry.example/v2/", "https://registry.example"),
        ("http://registry.example/prefix/", "http://registry.example/prefix"),
        ("https://[2001:db8::1]:443", "https://[2001:db8::1]:443"),
    ],
)
def test_urls_are_stored_plain(url: str, stored: str) -> None:
    assert check_url(url) == stored


@pytest.mark.parametrize(
    "url",
    [
        "ftp://registry.example",
        "file:///etc/passwd",
        "gopher://x",
        "registry.example",
        "https://",
        "https://user:pass@registry.example",
        "https://user@registry.example",
        "https://registry.example?x=1",
        "https://registry.example#frag",
        "https://registry.example:99999",
        "https://registry.example:0",
        "javascript:alert(1)",
    ],
)
def test_bad_urls_are_refused(url: str) -> None:
    with pytest.raises(UpstreamInvalid):
        check_url(url)
