"""What the signature service hands out (keys, verdicts) and the errors it raises.

A verdict is one of three statuses:
- `verified`: a cosign signature on the artifact's digest verified with one of the project's keys
  (`key` names it, `signature` is the signature manifest's digest);
- `unsigned`: no cosign signature was found (neither the `sha256-<hex>.sig` tag nor a referrer);
- `invalid`: signatures were found but none verified; `reason` says why (each signature's failure).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from dockyard.errors import Category, DockyardError


class VerdictsChanged(Protocol):
    """Told after a commit that the pull gates must decide again (Topic.VERDICTS): with the
    repository a verdict or scan result was stored in (that repository's decisions go), or with
    none when trusted keys changed (every repository's)."""

    def __call__(self, repository: str | None = None) -> None: ...


VERIFIED = "verified"
UNSIGNED = "unsigned"
INVALID = "invalid"
STATUSES = (VERIFIED, UNSIGNED, INVALID)

# cosign's formats (sigstore/cosign specs/SIGNATURE_SPEC.md; the referrer artifact type is cosign's
# `--registry-referrers-mode=oci-1-1`).
SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
COSIGN_REFERRER = "application/vnd.dev.cosign.artifact.sig.v1+json"
COSIGN_TYPE = "cosign container image signature"

ALGORITHMS = ("ecdsa-p256", "ecdsa-p384", "rsa", "ed25519", "x509-certificate")


@dataclass(frozen=True, slots=True)
class TrustedKey:
    id: int
    project: str
    name: str
    algorithm: str
    fingerprint: str  # "sha256:<hex>" of the DER SubjectPublicKeyInfo
    public_key: str  # PEM
    created_by: str
    created_at: datetime
    trust_store: str | None = None  # a certificate's named store (None: the store of its own name)

    @property
    def store(self) -> str:
        return self.trust_store or self.name

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "algorithm": self.algorithm,
            "fingerprint": self.fingerprint,
            "public_key": self.public_key,
            "trust_store": self.store if self.algorithm == "x509-certificate" else None,
            "created_by": self.created_by,
            "created_at": self.created_at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class Identity:
    """Who may sign: a certificate SAN (exact, or a full-match regular expression) and an issuer."""

    name: str
    issuer: str
    san: str | None = None
    san_regex: str | None = None

    def matches(self, sans: Iterable[str], issuer: str | None) -> bool:
        if issuer != self.issuer:
            return False
        if self.san is not None:
            return self.san in sans
        if self.san_regex is not None:
            pattern = re.compile(self.san_regex)
            return any(pattern.fullmatch(san) for san in sans)
        return False

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "issuer": self.issuer, "san": self.san, "san_regex": self.san_regex}


@dataclass(frozen=True, slots=True)
class KeySet:
    project: str
    version: int  # 0: never had a key
    keys: tuple[TrustedKey, ...]
    trust_policy: str | None = None  # the project's notation trust policy document (JSON), if any
    # Sigstore keyless: the trusted roots (the project's, then the system-wide ones) and identities.
    sigstore_roots: tuple[SigstoreRoot, ...] = ()
    identities: tuple[Identity, ...] = ()


@dataclass(frozen=True, slots=True)
class SigstoreRoot:
    """An imported `trusted_root.json`: the project's, or (project None) system-wide."""

    name: str
    project: str | None
    document: str
    created_by: str
    created_at: datetime

    def as_dict(self) -> dict[str, Any]:
        from dockyard.signatures.sigstore_root import parse_trust_root, summary

        return {
            "name": self.name,
            "scope": "system" if self.project is None else "project",
            **summary(parse_trust_root(self.document)),
            "created_by": self.created_by,
            "created_at": self.created_at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class Verdict:
    digest: str  # the artifact's
    status: str  # verified | unsigned | invalid
    reason: str
    keyset_version: int
    key: str | None = None  # the key that verified
    signature: str | None = None  # the signature manifest that verified
    cached: bool = False  # read from the cache, not verified by this call
    checked_at: datetime | None = None

    @property
    def verified(self) -> bool:
        return self.status == VERIFIED

    def as_dict(self) -> dict[str, Any]:
        return {
            "digest": self.digest,
            "status": self.status,
            "reason": self.reason,
            "key": self.key,
            "signature": self.signature,
            "keyset_version": self.keyset_version,
            "cached": self.cached,
            "checked_at": self.checked_at.isoformat() if self.checked_at else None,
        }


class TrustedKeyNotFound(DockyardError):
    category = Category.NOT_FOUND
    message = "trusted key not found"


class TrustedKeyExists(DockyardError):
    category = Category.CONFLICT
    message = "the project already has a trusted key of that name"


class InvalidTrustedKey(DockyardError):
    category = Category.INVALID
    message = "invalid public key"


class InvalidTrustPolicy(DockyardError):
    category = Category.INVALID
    message = "invalid trust policy"


class TrustPolicyNotFound(DockyardError):
    category = Category.NOT_FOUND
    message = "the project has no notation trust policy"


class InvalidSigstoreTrust(DockyardError):
    category = Category.INVALID
    message = "invalid Sigstore trust root or identity"


class SigstoreTrustNotFound(DockyardError):
    category = Category.NOT_FOUND
    message = "Sigstore trust root or identity not found"
