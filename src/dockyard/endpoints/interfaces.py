"""Registry endpoints as data, and the errors their service raises.

An endpoint is a remote registry by name: its URL, what kind of registry it is, how to authenticate
(Basic credentials, or a bearer token used as it is) and its TLS options. The secret is write-only: it is
stored sealed and never returned (`Endpoint` says only whether there is one).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Literal

from dockyard.errors import Category, DockyardError

NAME_PATTERN = r"^[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?$"
_NAME = re.compile(NAME_PATTERN)
DOCKER_HUB_URL = "https://registry-1.docker.io"
MAX_CA_PEM = 256 * 1024


class EndpointKind(StrEnum):
    DOCKER_HUB = "docker-hub"
    REGISTRY = "registry"  # any OCI distribution (v2) registry: registry:2, GHCR, Quay, ECR, ...
    HARBOR = "harbor"
    DOCKYARD = "dockyard"


AuthKind = Literal["none", "basic", "token"]


class EndpointNotFound(DockyardError):
    category = Category.NOT_FOUND
    message = "no such registry endpoint"


class EndpointExists(DockyardError):
    category = Category.CONFLICT
    message = "a registry endpoint of that name exists"


class EndpointInUse(DockyardError):
    category = Category.CONFLICT
    message = "the registry endpoint is in use"


class EndpointInvalid(DockyardError):
    category = Category.INVALID
    message = "invalid registry endpoint"


@dataclass(frozen=True)
class EndpointCredentials:
    """`basic`: username and secret (a password or an access token); `token`: a bearer token (secret)."""

    kind: Literal["basic", "token"]
    username: str | None
    secret: str


@dataclass(frozen=True)
class Endpoint:
    """An endpoint as anyone may see it: never its secret."""

    name: str
    url: str
    kind: EndpointKind
    auth: AuthKind
    username: str | None
    has_secret: bool
    ca_pem: str | None
    verify_tls: bool
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class TestResult:
    """A health check: `ok` with what the upstream said, or the reason it failed."""

    ok: bool
    duration_ms: int
    api_version: str | None = None
    auth: str | None = None
    error: str | None = None


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name or ""):
        raise EndpointInvalid(
            f"invalid endpoint name {name!r}: 1-64 of a-z, 0-9, '.', '_', '-', starting and ending with a "
            "letter or digit"
        )
    return name
