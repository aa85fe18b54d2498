"""Notation trust policies: which certificates a project trusts for which of its repositories, and how
strictly (notaryproject/specifications specs/trust-store-trust-policy.md, version 1.0).

A project's policy document is notation's `trustpolicy.json`. Its named trust stores `ca:NAME` are the
project's trusted certificates whose trust store is NAME (a certificate added without one is in the store
of its own name). What dockyard does with each part:
- `registryScopes`: repository names of the project (`team/app`), or with the registry's host in front
  (`registry.example/team/app`: the host is not compared), or `*` (the global policy). An exact scope
  wins over `*`; a repository no policy covers gets no notation signature verified.
- `signatureVerification.level` and `override`: integrity is always enforced; authenticity (a chain to
  the policy's stores and a trusted identity), the authentic timestamp (without a timestamp
  countersignature: every certificate of the chain valid now), expiry and revocation are enforced or
  logged as the spec's table says; `skip` counts the repository's artifacts as verified without a
  signature, as notation's `skip` returns success.
- `trustedIdentities`: `*` or `x509.subject: C=.., ST=.., O=.., ...`: every attribute named must be in
  the signing certificate's subject with the same value.
- Revocation: dockyard works offline and fetches no CRL or OCSP answer. A chain whose certificates name
  neither is not revoked (as the spec says); one that names either has an unknown status, which fails an
  enforced revocation check and is noted when the check is logged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from dockyard.signatures.interfaces import InvalidTrustPolicy

LEVELS = ("strict", "permissive", "audit", "skip")
CHECKS = ("authenticity", "authenticTimestamp", "expiry", "revocation")
# What each level does with each check (the spec's table); integrity is always enforced.
LEVEL_ACTIONS: dict[str, dict[str, str]] = {
    "strict": dict.fromkeys(CHECKS, "enforce"),
    "permissive": {
        "authenticity": "enforce",
        "authenticTimestamp": "log",
        "expiry": "log",
        "revocation": "log",
    },
    "audit": dict.fromkeys(CHECKS, "log"),
}
OVERRIDE_VALUES = {
    "authenticity": ("enforce", "log"),
    "authenticTimestamp": ("enforce", "log"),
    "expiry": ("enforce", "log"),
    "revocation": ("enforce", "log", "skip"),
}
REQUIRED_RDNS = ("C", "ST", "O")
MAX_DOCUMENT_BYTES = 64 * 1024
MAX_POLICIES = 100
# RFC 4514 short names of the subject attributes notation's identities use, to the OIDs' dotted strings.
ATTRIBUTE_OIDS = {
    "C": "2.5.4.6",
    "ST": "2.5.4.8",
    "L": "2.5.4.7",
    "O": "2.5.4.10",
    "OU": "2.5.4.11",
    "CN": "2.5.4.3",
    "SERIALNUMBER": "2.5.4.5",
    "STREET": "2.5.4.9",
    "DC": "0.9.2342.19200300.100.1.25",
    "UID": "0.9.2342.19200300.100.1.1",
    "EMAILADDRESS": "1.2.840.113549.1.9.1",
}


@dataclass(frozen=True)
class TrustPolicy:
    """One entry of `trustPolicies`."""

    name: str
    scopes: tuple[str, ...]
    level: str
    actions: dict[str, str] = field(default_factory=dict)  # check -> enforce | log | skip
    stores: tuple[str, ...] = ()  # named `ca` stores
    identities: tuple[dict[str, str], ...] | None = None  # None: "*" (any identity)

    def action(self, check: str) -> str:
        return self.actions[check]


@dataclass(frozen=True)
class TrustPolicyDocument:
    policies: tuple[TrustPolicy, ...]
    text: str  # the document as stored (normalised JSON)

    def for_repository(self, repository: str) -> TrustPolicy | None:
        """The policy whose scope names this repository, else the global one, else None."""
        for policy in self.policies:
            if any(_scope_names(scope, repository) for scope in policy.scopes if scope != "*"):
                return policy
        for policy in self.policies:
            if policy.scopes == ("*",):
                return policy
        return None


def _scope_names(scope: str, repository: str) -> bool:
    if scope == repository:
        return True
    host, _, rest = scope.partition("/")
    return rest == repository and ("." in host or ":" in host or host == "localhost")


def parse_trust_policy(raw: str | bytes | dict[str, Any]) -> TrustPolicyDocument:
    """Validate a trust policy document as notation does; InvalidTrustPolicy names the first problem."""
    if isinstance(raw, dict):
        document: Any = raw
    else:
        if len(raw) > MAX_DOCUMENT_BYTES:
            raise InvalidTrustPolicy(f"the trust policy is over {MAX_DOCUMENT_BYTES} bytes")
        try:
            document = json.loads(raw)
        except ValueError as exc:
            raise InvalidTrustPolicy(f"the trust policy is not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise InvalidTrustPolicy("the trust policy is not a JSON object")
    if document.get("version") != "1.0":
        raise InvalidTrustPolicy('the trust policy\'s "version" must be "1.0"')
    entries = document.get("trustPolicies")
    if not isinstance(entries, list) or not entries:
        raise InvalidTrustPolicy('"trustPolicies" must be a non-empty list')
    if len(entries) > MAX_POLICIES:
        raise InvalidTrustPolicy(f"at most {MAX_POLICIES} trust policies")
    policies = tuple(_policy(entry, index) for index, entry in enumerate(entries))
    _check_across(policies)
    text = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return TrustPolicyDocument(policies, text)


def _check_across(policies: tuple[TrustPolicy, ...]) -> None:
    """Names unique, one global policy at most, each repository in one policy's scopes at most."""
    names: set[str] = set()
    scopes: dict[str, str] = {}
    for policy in policies:
        if policy.name in names:
            raise InvalidTrustPolicy(f"two trust policies are named {policy.name!r}")
        names.add(policy.name)
        for scope in policy.scopes:
            if scope in scopes:
                raise InvalidTrustPolicy(
                    f"registry scope {scope!r} is in trust policies {scopes[scope]!r} and {policy.name!r}"
                )
            scopes[scope] = policy.name


def _policy(entry: Any, index: int) -> TrustPolicy:
    if not isinstance(entry, dict):
        raise InvalidTrustPolicy(f"trustPolicies[{index}] is not an object")
    name = entry.get("name")
    if not isinstance(name, str) or not name.strip():
        raise InvalidTrustPolicy(f"trustPolicies[{index}] has no name")
    where = f"trust policy {name!r}"
    scopes = _strings(entry.get("registryScopes"), f"{where}: registryScopes")
    if "*" in scopes and len(scopes) > 1:
        raise InvalidTrustPolicy(f"{where}: the global scope '*' must be the only scope")
    for scope in scopes:
        if scope != "*" and ("*" in scope or not scope.strip() or scope != scope.strip()):
            raise InvalidTrustPolicy(f"{where}: registry scope {scope!r} is not a repository")
    verification = entry.get("signatureVerification")
    if not isinstance(verification, dict) or verification.get("level") not in LEVELS:
        raise InvalidTrustPolicy(f"{where}: signatureVerification.level must be one of {', '.join(LEVELS)}")
    level = verification["level"]
    if level == "skip":
        if scopes == ["*"]:
            raise InvalidTrustPolicy(f"{where}: level skip cannot apply to the global scope '*'")
        if verification.get("override"):
            raise InvalidTrustPolicy(f"{where}: level skip cannot be overridden")
        return TrustPolicy(name, tuple(scopes), level)
    actions = dict(LEVEL_ACTIONS[level])
    override = verification.get("override") or {}
    if not isinstance(override, dict):
        raise InvalidTrustPolicy(f"{where}: override must be an object")
    for check, action in override.items():
        if check not in OVERRIDE_VALUES or action not in OVERRIDE_VALUES[check]:
            raise InvalidTrustPolicy(f"{where}: override {check!r}: {action!r} is not allowed")
        actions[check] = action
    stores = tuple(
        _store(store, where) for store in _strings(entry.get("trustStores"), f"{where}: trustStores")
    )
    identities = _identities(entry.get("trustedIdentities"), where)
    return TrustPolicy(name, tuple(scopes), level, actions, stores, identities)


def _strings(value: Any, what: str) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(item, str) for item in value):
        raise InvalidTrustPolicy(f"{what} must be a non-empty list of strings")
    return list(value)


def _store(value: str, where: str) -> str:
    kind, _, name = value.partition(":")
    if kind != "ca":
        raise InvalidTrustPolicy(
            f"{where}: trust store {value!r}: dockyard verifies notary.x509 signatures: stores of type ca"
        )
    if not name:
        raise InvalidTrustPolicy(f"{where}: trust store {value!r} has no name")
    return name


def _identities(value: Any, where: str) -> tuple[dict[str, str], ...] | None:
    items = _strings(value, f"{where}: trustedIdentities")
    if items == ["*"]:
        return None
    if "*" in items:
        raise InvalidTrustPolicy(f"{where}: '*' must be the only trusted identity")
    identities = []
    for item in items:
        prefix, _, dn = item.partition(":")
        if prefix.strip() != "x509.subject" or not dn.strip():
            raise InvalidTrustPolicy(f"{where}: identity {item!r} is not 'x509.subject: <DN>'")
        attributes = parse_dn(dn, where)
        missing = [rdn for rdn in REQUIRED_RDNS if rdn not in attributes]
        if missing:
            raise InvalidTrustPolicy(f"{where}: identity {item!r} lacks {', '.join(missing)}")
        identities.append(attributes)
    for index, one in enumerate(identities):
        for other in identities[index + 1 :]:
            if _overlap(one, other):
                raise InvalidTrustPolicy(f"{where}: trusted identities {one} and {other} overlap")
    return tuple(identities)


def _overlap(one: dict[str, str], other: dict[str, str]) -> bool:
    """Some certificate's subject would match both: neither names an attribute value the other denies."""
    return all(other.get(key, value) == value for key, value in one.items())


def parse_dn(dn: str, where: str = "identity") -> dict[str, str]:
    """`C=US, ST=WA, O=acme\\, inc` -> {"C": "US", "ST": "WA", "O": "acme, inc"} (notation's escapes)."""
    parts: list[str] = []
    current: list[str] = []
    characters = iter(dn)
    for char in characters:
        if char == "\\":
            escaped = next(characters, "")
            current.append("\x00" if escaped == " " else escaped)  # kept through strip() below
        elif char in ",;":
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    attributes: dict[str, str] = {}
    for part in parts:
        key, sep, value = part.partition("=")
        key = key.strip().upper()
        value = value.strip().replace("\x00", " ")  # an escaped space at either end stays
        if not sep or key not in ATTRIBUTE_OIDS or not value:
            raise InvalidTrustPolicy(f"{where}: {part.strip()!r} is not an RDN this policy can compare")
        if key in attributes:
            raise InvalidTrustPolicy(f"{where}: {key} appears twice")
        attributes[key] = value
    return attributes


def subject_attributes(certificate: Any) -> dict[str, list[str]]:
    """The signing certificate's subject as {short name: [values]} for identity matching."""
    names = {oid: short for short, oid in ATTRIBUTE_OIDS.items()}
    found: dict[str, list[str]] = {}
    for attribute in certificate.subject:
        short = names.get(attribute.oid.dotted_string)
        if short is not None:
            found.setdefault(short, []).append(str(attribute.value))
    return found


def identity_trusted(policy: TrustPolicy, certificate: Any) -> bool:
    if policy.identities is None:
        return True
    subject = subject_attributes(certificate)
    return any(
        all(value in subject.get(key, ()) for key, value in identity.items())
        for identity in policy.identities
    )
