"""Content digests: `algorithm:encoded`, per the OCI image spec's descriptor rules."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from dockyard.errors import DigestInvalid, UnsupportedDigest

# Grammar from the OCI image spec (descriptor.md): algorithm and encoded parts.
_DIGEST_RE = re.compile(r"^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$")
# Registered algorithms and the exact shape of their encoded part.
_ENCODED = {
    "sha256": re.compile(r"^[a-f0-9]{64}$"),
    "sha512": re.compile(r"^[a-f0-9]{128}$"),
}
SUPPORTED_ALGORITHMS = tuple(_ENCODED)
CANONICAL_ALGORITHM = "sha256"


@dataclass(frozen=True, slots=True)
class Digest:
    algorithm: str
    encoded: str

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.encoded}"

    def hasher(self) -> Any:
        return new_hasher(self.algorithm)


def looks_like_digest(value: str) -> bool:
    """True when value has the general digest shape (so it is not a tag)."""
    return ":" in value and _DIGEST_RE.fullmatch(value) is not None


def parse_digest(value: str) -> Digest:
    """Parse and validate a digest string; raise DigestInvalid/UnsupportedDigest."""
    if not _DIGEST_RE.fullmatch(value or ""):
        raise DigestInvalid(f"invalid digest {value!r}")
    algorithm, encoded = value.split(":", 1)
    pattern = _ENCODED.get(algorithm)
    if pattern is None:
        raise UnsupportedDigest(f"unsupported digest algorithm {algorithm!r}")
    if not pattern.fullmatch(encoded):
        raise DigestInvalid(f"invalid {algorithm} digest {value!r}")
    return Digest(algorithm, encoded)


def new_hasher(algorithm: str = CANONICAL_ALGORITHM) -> Any:
    if algorithm not in _ENCODED:
        raise UnsupportedDigest(f"unsupported digest algorithm {algorithm!r}")
    return hashlib.new(algorithm)


def compute_digest(data: bytes, algorithm: str = CANONICAL_ALGORITHM) -> Digest:
    hasher = new_hasher(algorithm)  # refuses algorithms parse_digest would refuse
    hasher.update(data)
    return Digest(algorithm, hasher.hexdigest())


def digest_of(data: bytes, algorithm: str = CANONICAL_ALGORITHM) -> str:
    """The digest string of data."""
    return str(compute_digest(data, algorithm))
