"""Notation trust policy documents: validated as the spec says, and the policy that applies to a
repository picked as notation picks it (an exact scope before the global one)."""

from __future__ import annotations

from typing import Any

import pytest

from dockyard.signatures.interfaces import InvalidTrustPolicy
from dockyard.signatures.trust_policy import parse_dn, parse_trust_policy


def policy(name: str = "p", scopes: Any = ("*",), level: str = "strict", **extra: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": name,
        "registryScopes": list(scopes),
        "signatureVerification": {"level": level, **extra.pop("verification", {})},
    }
    if level != "skip":
        entry["trustStores"] = extra.pop("stores", ["ca:acme"])
        entry["trustedIdentities"] = extra.pop("identities", ["*"])
    entry.update(extra)
    return entry


def document(*policies: dict[str, Any]) -> dict[str, Any]:
    return {"version": "1.0", "trustPolicies": list(policies)}


def test_an_exact_scope_wins_over_the_global_one_and_a_host_in_front_is_not_compared() -> None:
    parsed = parse_trust_policy(
        document(
            policy("app", ["registry.example:5000/team/app", "team/api"]),
            policy("everything-else", ["*"]),
        )
    )
    assert parsed.for_repository("team/app").name == "app"  # type: ignore[union-attr]
    assert parsed.for_repository("team/api").name == "app"  # type: ignore[union-attr]
    assert parsed.for_repository("team/app/sub").name == "everything-else"  # type: ignore[union-attr]
    only_exact = parse_trust_policy(document(policy("app", ["team/app"])))
    assert only_exact.for_repository("team/other") is None
    # A first segment without '.', ':' or localhost is a namespace, not a host.
    assert parse_trust_policy(document(policy("x", ["team/app"]))).for_repository("app") is None


def test_levels_map_to_enforced_and_logged_checks_and_overrides_apply() -> None:
    parsed = parse_trust_policy(
        document(
            policy("strict", ["a/strict"]),
            policy("permissive", ["a/perm"], level="permissive"),
            policy("audit", ["a/audit"], level="audit", verification={"override": {"revocation": "skip"}}),
        )
    )
    strict, permissive, audit = parsed.policies
    assert [strict.action(c) for c in ("authenticity", "authenticTimestamp", "expiry", "revocation")] == [
        "enforce"
    ] * 4
    assert permissive.action("authenticity") == "enforce" and permissive.action("expiry") == "log"
    assert audit.action("authenticity") == "log" and audit.action("revocation") == "skip"


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"version": "2.0", "trustPolicies": [policy()]}, '"version" must be "1.0"'),
        ({"version": "1.0", "trustPolicies": []}, "non-empty list"),
        (document(policy(level="loose")), "level must be one of"),
        (document(policy("g", ["*"], level="skip")), "cannot apply to the global scope"),
        (document(policy("s", ["a/b"], level="skip", verification={"override": {"expiry": "log"}})), "skip"),
        (document(policy(scopes=["*", "a/b"])), "must be the only scope"),
        (document(policy(scopes=["a/*"])), "is not a repository"),
        (document(policy("one", ["*"]), policy("two", ["*"])), "is in trust policies 'one' and 'two'"),
        (document(policy("same", ["a/b"]), policy("same", ["a/c"])), "two trust policies are named"),
        (document(policy(stores=["tsa:clock"])), "stores of type ca"),
        (document(policy(stores=[])), "trustStores must be a non-empty list"),
        (document(policy(verification={"override": {"integrity": "log"}})), "override 'integrity'"),
        (document(policy(verification={"override": {"expiry": "skip"}})), "override 'expiry'"),
        (document(policy(identities=["x509.subject: C=US, O=acme"])), "lacks ST"),
        (document(policy(identities=["*", "x509.subject: C=US, ST=WA, O=a"])), "must be the only"),
        (document(policy(identities=["CN=acme"])), "is not 'x509.subject: <DN>'"),
        (
            document(
                policy(identities=["x509.subject: C=US, ST=WA, O=a", "x509.subject: C=US, ST=WA, O=a, OU=b"])
            ),
            "overlap",
        ),
    ],
)
def test_invalid_documents_are_refused_naming_the_problem(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidTrustPolicy) as raised:
        parse_trust_policy(doc)
    assert message in raised.value.message


def test_text_that_is_not_a_policy_is_refused() -> None:
    for raw in ("not json", "[]", '"1.0"', "x" * 70_000):
        with pytest.raises(InvalidTrustPolicy):
            parse_trust_policy(raw)


def test_identities_that_differ_in_a_value_do_not_overlap() -> None:
    parsed = parse_trust_policy(
        document(policy(identities=["x509.subject: C=US, ST=WA, O=a", "x509.subject: C=US, ST=OR, O=a"]))
    )
    assert parsed.policies[0].identities == (
        {"C": "US", "ST": "WA", "O": "a"},
        {"C": "US", "ST": "OR", "O": "a"},
    )


def test_distinguished_names_take_notations_escapes() -> None:
    assert parse_dn(r"C=US, ST=WA, O=acme\, inc., OU=a\;b, CN=\ padded\ ") == {
        "C": "US",
        "ST": "WA",
        "O": "acme, inc.",
        "OU": "a;b",
        "CN": " padded ",
    }
    with pytest.raises(InvalidTrustPolicy):
        parse_dn("C=US, NOPE=x")
    with pytest.raises(InvalidTrustPolicy):
        parse_dn("C=US, C=CA")
