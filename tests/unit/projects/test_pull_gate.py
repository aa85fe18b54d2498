"""The pull gate's answers without a database: a project without policies is answered from its cached
policy alone; a project that requires signatures from its cached decisions, which a bump of
Topic.VERDICTS drops (with a repository: that repository's only; a key changed: all), and a policy
change (Topic.POLICIES) too."""

from __future__ import annotations

import time
from typing import Any

from dockyard.coordination.caches import MIB, GenerationCache, KeyedGenerationCache
from dockyard.coordination.feeds import InProcessChangeFeed
from dockyard.coordination.interfaces import Topic, generation_of, keyed_generation_of
from dockyard.projects.pull_policies import NO_POLICY, PullPolicies, PullPolicy
from dockyard.signatures.interfaces import INVALID, VERIFIED, Verdict
from dockyard.signatures.pull_gate import NOT_SIGNED, NOT_VERIFIED, UNKNOWN, PullGate

DIGEST = "sha256:" + "ab" * 32
INDEX = "sha256:" + "cd" * 32


class Verdicts:
    def __init__(self) -> None:
        self.stored: dict[tuple[str, str], Verdict] = {}
        self.reads = 0

    def cached(self, repository: str, digest: str) -> Verdict | None:
        self.reads += 1
        return self.stored.get((repository, digest))


class Gate(PullGate):
    """With the index lookup answered from a dict instead of the database."""

    parents: dict[str, list[str]]

    def _indexes_of(self, repository: str, digest: str) -> list[str]:
        return self.parents.get(digest, [])


def build() -> tuple[Gate, InProcessChangeFeed, Verdicts, Any]:
    feed = InProcessChangeFeed()
    policies = GenerationCache[str, PullPolicy](generation_of(feed, Topic.POLICIES), MIB)
    decisions = KeyedGenerationCache[tuple[str, str, PullPolicy], str](
        keyed_generation_of(feed, Topic.VERDICTS), MIB, clock=time.monotonic
    )
    verdicts = Verdicts()
    gate = Gate(None, PullPolicies(None, policies), verdicts, decisions)  # type: ignore[arg-type]
    gate.parents = {}
    policies.put("open", NO_POLICY, policies.current_generation())
    policies.put("strict", PullPolicy(require_signature=True), policies.current_generation())
    return gate, feed, verdicts, policies


def test_a_project_without_policy_is_answered_without_reading_verdicts() -> None:
    gate, _, verdicts, _ = build()
    assert gate.fast("open/app", DIGEST) is None
    assert gate.check("open/app", DIGEST) is None
    assert verdicts.reads == 0
    assert gate.fast("unknown/app", DIGEST) is UNKNOWN  # its policy is not cached yet


def test_decisions_are_cached_until_a_verdict_or_key_changes() -> None:
    gate, feed, verdicts, _ = build()
    assert gate.fast("strict/app", DIGEST) is UNKNOWN
    assert gate.check("strict/app", DIGEST) == NOT_SIGNED
    assert gate.fast("strict/app", DIGEST) == NOT_SIGNED
    reads = verdicts.reads
    verdicts.stored[("strict/app", DIGEST)] = Verdict(DIGEST, VERIFIED, "signed", 1)
    assert gate.fast("strict/app", DIGEST) == NOT_SIGNED  # no bump yet: the cached decision
    assert verdicts.reads == reads
    feed.bump(Topic.VERDICTS)
    assert gate.fast("strict/app", DIGEST) is UNKNOWN
    assert gate.check("strict/app", DIGEST) is None
    assert gate.fast("strict/app", DIGEST) is None


def test_a_verdict_in_one_repository_keeps_the_others_decisions() -> None:
    gate, feed, verdicts, _ = build()
    assert gate.check("strict/app", DIGEST) == NOT_SIGNED
    assert gate.check("strict/other", DIGEST) == NOT_SIGNED
    verdicts.stored[("strict/app", DIGEST)] = Verdict(DIGEST, VERIFIED, "signed", 1)
    feed.bump(Topic.VERDICTS, "strict/app")  # what storing that verdict announces
    reads = verdicts.reads
    assert gate.fast("strict/other", DIGEST) == NOT_SIGNED  # still cached: nothing read
    assert verdicts.reads == reads
    assert gate.fast("strict/app", DIGEST) is UNKNOWN  # decided again
    assert gate.check("strict/app", DIGEST) is None
    feed.bump(Topic.VERDICTS)  # a key changed: every repository decides again
    assert gate.fast("strict/other", DIGEST) is UNKNOWN


def test_a_platform_manifest_passes_by_its_verified_index_only() -> None:
    gate, _, verdicts, _ = build()
    gate.parents = {DIGEST: [INDEX]}
    verdicts.stored[("strict/multi", INDEX)] = Verdict(INDEX, INVALID, "bad", 1)
    assert gate.check("strict/multi", DIGEST) == NOT_SIGNED
    gate, _, verdicts, _ = build()
    gate.parents = {DIGEST: [INDEX]}
    verdicts.stored[("strict/multi", INDEX)] = Verdict(INDEX, VERIFIED, "signed", 1)
    assert gate.check("strict/multi", DIGEST) is None
    assert gate.check("strict/other", DIGEST) == NOT_SIGNED  # another repository's index does not count


def test_an_invalid_signature_says_so() -> None:
    gate, _, verdicts, _ = build()
    verdicts.stored[("strict/app", DIGEST)] = Verdict(DIGEST, INVALID, "bad", 1)
    assert gate.check("strict/app", DIGEST) == NOT_VERIFIED


def test_a_policy_change_is_seen_at_once() -> None:
    gate, feed, _, policies = build()
    assert gate.check("strict/app", DIGEST) == NOT_SIGNED
    feed.bump(Topic.POLICIES)
    assert gate.fast("strict/app", DIGEST) is UNKNOWN  # the policy must be read again
    policies.put("strict", NO_POLICY, policies.current_generation())
    assert gate.fast("strict/app", DIGEST) is None


class Summary:
    def __init__(self, counts: dict[str, int] | None) -> None:
        self.counts = counts

    def at_or_above(self, severity: str) -> int | None:
        if self.counts is None:
            return None
        order = ["critical", "high", "medium", "low"]
        return sum(self.counts.get(level, 0) for level in order[: order.index(severity) + 1])


class Summaries:
    def __init__(self) -> None:
        self.stored: dict[tuple[str, str], Summary] = {}

    def summary(self, repository: str, digest: str) -> Summary | None:
        return self.stored.get((repository, digest))


def test_vulnerability_messages_count_what_the_policy_blocks() -> None:
    gate, _, _, policies = build()
    summaries = Summaries()
    gate.summaries = summaries
    summaries.stored[("vuln/app", DIGEST)] = Summary({"critical": 3, "high": 2, "low": 1})
    for severity, message in (
        ("critical", "3 critical vulnerabilities (policy: block critical)"),
        ("high", "5 high or critical vulnerabilities (policy: block high)"),
        ("low", "6 low, medium, high or critical vulnerabilities (policy: block low)"),
    ):
        policies.put("vuln", PullPolicy(block_severity=severity), policies.current_generation())
        assert gate.check("vuln/app", DIGEST) == message
    summaries.stored[("vuln/app", DIGEST)] = Summary({"medium": 1})
    # A fresh cache: the summary changed.
    gate._decisions = KeyedGenerationCache(lambda key: 0, MIB, clock=time.monotonic)
    policies.put("vuln", PullPolicy(block_severity="high"), policies.current_generation())
    assert gate.check("vuln/app", DIGEST) is None
    policies.put("vuln", PullPolicy(block_severity="medium"), policies.current_generation())
    assert gate.check("vuln/app", DIGEST) == "1 medium, high or critical vulnerability (policy: block medium)"


def test_unscanned_passes_unless_blocked_and_a_child_uses_its_index_scan() -> None:
    gate, _, _, policies = build()
    summaries = Summaries()
    gate.summaries = summaries
    policies.put("vuln", PullPolicy(block_severity="critical"), policies.current_generation())
    assert gate.check("vuln/app", DIGEST) is None  # never scanned
    policies.put(
        "vuln", PullPolicy(block_severity="critical", block_unscanned=True), policies.current_generation()
    )
    assert gate.check("vuln/app", DIGEST) == "artifact has not been scanned (policy: block unscanned)"
    summaries.stored[("vuln/app", DIGEST)] = Summary(None)  # pending or failed
    assert gate.check("vuln/app", INDEX) == "artifact has not been scanned (policy: block unscanned)"
    gate.parents = {INDEX: [DIGEST]}
    summaries.stored[("vuln/app", DIGEST)] = Summary({"critical": 1})
    gate._decisions = KeyedGenerationCache(lambda key: 0, MIB, clock=time.monotonic)
    assert gate.check("vuln/app", INDEX) == "1 critical vulnerability (policy: block critical)"
