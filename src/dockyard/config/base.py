"""What every settings section shares: strict keys, durations, addresses, and the hints the
configuration reference (docs/configuration.md, written by `make docs`) shows beside pydantic's own.

The settings' modules do without `from __future__ import annotations`: pydantic makes a
`typing.ForwardRef` (compiling it) of each field's annotation given as text, for ~170 fields, in serve's
main process on the way to the first answer (issue 18). tests/unit/test_process_imports.py holds them
to it."""

import ipaddress
import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict

from dockyard.config.durations import Duration


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def empty_list() -> list[Any]:
    """`default_factory` of the list fields. pydantic reads a factory's signature (does it take the
    validated data?): of a Python function at once, of the builtin `list` by parsing its text
    signature with `tokenize`, whose patterns it compiles first: ~10 ms of CPU for the 12 list fields,
    at each start of serve, on the way to the first answer (issue 18)."""
    return []


def doc(kind: str | None = None, *, default: str | None = None) -> dict[str, Any]:
    """What the configuration reference shows beyond pydantic's own type and default: `kind`, what a
    string holds (duration, host:port, URL, ...); `default`, in words, when the real one is computed."""
    return {key: value for key, value in (("format", kind), ("shown_default", default)) if value}


def _positive(value: Duration) -> Duration:
    if value.seconds <= 0:
        raise ValueError(f"must be a positive duration, got {value!r}")
    return value


def _not_negative(value: Duration) -> Duration:
    if value.seconds < 0:
        raise ValueError("must not be negative")
    return value


PositiveDuration = Annotated[Duration, AfterValidator(_positive)]
NonNegativeDuration = Annotated[Duration, AfterValidator(_not_negative)]


# host:port, :port or [ipv6]:port; the host part is a name or an address, never a URL.
_ADDR = re.compile(r"^(?P<host>\[[0-9A-Fa-f:.%\w]+\]|[A-Za-z0-9._-]*):(?P<port>\d{1,5})$")


def split_addr(value: str) -> tuple[str, int]:
    """(host to bind, port) from host:port, :port (all interfaces) or [ipv6]:port; ValueError otherwise."""
    match = _ADDR.match(value)
    if match is None:
        raise ValueError(f"expected host:port or :port ([ipv6]:port for IPv6), got {value!r}")
    port = int(match.group("port"))
    if not 1 <= port <= 65535:
        raise ValueError(f"port must be between 1 and 65535, got {port}")
    return match.group("host").strip("[]") or "0.0.0.0", port


def _comma_separated(value: Any) -> Any:
    # From a variable (DOCKYARD_HTTP_TRUSTED_PROXIES=10.0.0.0/8,192.0.2.7) a list reads as one string.
    return [part for part in re.split(r"[,\s]+", value) if part] if isinstance(value, str) else value


def _networks(value: list[str]) -> list[str]:
    for entry in value:
        try:
            ipaddress.ip_network(entry.strip(), strict=False)
        except ValueError:
            raise ValueError(
                f"{entry!r} is not an IP address or CIDR network (e.g. 10.0.0.0/8, 2001:db8::/32)"
            ) from None
    return [entry.strip() for entry in value]


# Addresses and CIDR networks, a YAML list or a comma-separated string.
Networks = Annotated[list[str], BeforeValidator(_comma_separated), AfterValidator(_networks)]
