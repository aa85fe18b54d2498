"""OSV range semantics (ranges.py) with each ecosystem's ordering (versions.py): no database."""

from __future__ import annotations

from typing import Any

import pytest

from dockyard.vulndb.ranges import evaluate
from dockyard.vulndb.versions import normalize_name, scheme_for


def ecosystem_range(*events: dict[str, str], kind: str = "ECOSYSTEM") -> list[dict[str, Any]]:
    return [{"type": kind, "events": list(events)}]


def affected(
    ecosystem: str, version: str, ranges: list[dict[str, Any]], versions: list[str] | None = None
) -> bool:
    return evaluate(ecosystem, version, ranges, versions or []).affected


DSA = ecosystem_range({"introduced": "0"}, {"fixed": "3.0.11-1~deb12u2"})


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("3.0.9-1", True),
        ("3.0.11-1~deb12u1", True),
        ("3.0.11-1~deb12u2", False),  # the fix itself
        ("3.0.11-1", False),  # a tilde sorts before everything: ~deb12u2 < the plain revision
        ("3.0.15-1~deb12u1", False),
        ("1:1.0-1", False),  # an epoch beats any upstream version
    ],
)
def test_dpkg_tildes_and_epochs(version: str, expected: bool) -> None:
    assert affected("Debian:12", version, DSA) is expected


def test_dpkg_epoch_in_the_fix() -> None:
    ranges = ecosystem_range({"introduced": "0"}, {"fixed": "1:2.0-1"})
    assert affected("Debian:12", "2.5-1", ranges)  # epoch 0 < epoch 1
    assert not affected("Debian:12", "1:2.0-1", ranges)
    assert affected("Ubuntu:22.04:LTS", "1:1.9-3ubuntu1", ranges)


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("3.1.3-r0", True),
        ("3.1.4_rc1-r0", True),  # _rc sorts before the release
        ("3.1.4-r0", False),
        ("3.1.4-r1", False),
        ("3.1.4_p1-r0", False),  # _p (patch) sorts after it
        ("3.0.12-r3", True),
    ],
)
def test_apk_suffixes(version: str, expected: bool) -> None:
    ranges = ecosystem_range({"introduced": "0"}, {"fixed": "3.1.4-r0"})
    assert affected("Alpine:v3.18", version, ranges) is expected


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("2.11.2", True),
        ("2.11.3rc1", True),  # a pre-release comes before its release
        ("2.11.3", False),
        ("2.11.3.post1", False),
        ("2.11.03", False),  # PEP 440 normalises
        ("3.0.0a1", False),
        ("1!0.1", False),  # an epoch beats any version without one
    ],
)
def test_pep440(version: str, expected: bool) -> None:
    ranges = ecosystem_range({"introduced": "0"}, {"fixed": "2.11.3"})
    assert affected("PyPI", version, ranges) is expected


def test_pep440_explicit_versions_compare_as_versions() -> None:
    assert affected("PyPI", "2.0rc1", [], ["2.0rc1", "2.0"])
    assert affected("PyPI", "2.0.0", [], ["2.0rc1", "2.0"])  # 2.0.0 == 2.0
    assert not affected("PyPI", "2.0.1", [], ["2.0rc1", "2.0"])


@pytest.mark.parametrize(
    ("version", "expected"),
    [("4.17.20", True), ("4.17.21-beta.1", True), ("4.17.21", False), ("4.18.0", False), ("0.0.1", True)],
)
def test_semver_npm(version: str, expected: bool) -> None:
    ranges = ecosystem_range({"introduced": "0"}, {"fixed": "4.17.21"})
    assert affected("npm", version, ranges) is expected


GO_STDLIB = ecosystem_range(
    {"introduced": "0"}, {"fixed": "1.18.6"}, {"introduced": "1.19.0-0"}, {"fixed": "1.19.1"}, kind="SEMVER"
)


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("1.18.5", True),
        ("v1.18.6", False),  # Go's "v" prefix
        ("go1.18.6", False),  # the toolchain's "go" prefix
        ("1.19.0-rc.1", True),  # after the introduced pre-release 1.19.0-0
        ("v1.19.0", True),
        ("1.19.1", False),
        ("1.20.0", False),
    ],
)
def test_go_semver_with_two_introduced(version: str, expected: bool) -> None:
    assert affected("Go", version, GO_STDLIB) is expected


def test_go_pseudo_versions() -> None:
    ranges = ecosystem_range(
        {"introduced": "0"}, {"fixed": "0.0.0-20220906165146-f3363e06e74c"}, kind="SEMVER"
    )
    verdict = evaluate("Go", "v0.0.0-20220826154423-83b083e8dc8b", ranges, [])
    assert verdict.affected and verdict.fixed == ["0.0.0-20220906165146-f3363e06e74c"]
    assert not affected("Go", "v0.1.0", ranges)


LOG4J = [
    *ecosystem_range({"introduced": "2.13.0"}, {"fixed": "2.15.0"}),
    *ecosystem_range({"introduced": "2.4"}, {"fixed": "2.12.2"}),
    *ecosystem_range({"introduced": "2.0-beta9"}, {"fixed": "2.3.1"}),
]


@pytest.mark.parametrize(
    ("version", "expected", "fixed"),
    [
        ("2.14.1", True, ["2.15.0"]),
        ("2.12.1", True, ["2.12.2"]),
        ("2.12.2", False, []),
        ("2.0-beta9", True, ["2.3.1"]),
        ("2.0", True, ["2.3.1"]),  # a beta sorts before its release
        ("2.0-beta8", False, []),
        ("2.3.1", False, []),
        ("2.15.0", False, []),
        ("2.17.1", False, []),
    ],
)
def test_maven_several_ranges(version: str, expected: bool, fixed: list[str]) -> None:
    verdict = evaluate("Maven", version, LOG4J, [])
    assert verdict.affected is expected
    assert verdict.fixed == fixed


def test_last_affected_includes_itself() -> None:
    ranges = ecosystem_range({"introduced": "0"}, {"last_affected": "2.1.214"})
    assert affected("Maven", "2.1.214", ranges)
    assert not affected("Maven", "2.1.215", ranges)
    assert evaluate("Maven", "2.1.210", ranges, []).fixed == []  # no fix known


def test_limit_events() -> None:
    ranges = ecosystem_range({"introduced": "1.0.0"}, {"limit": "2.0.0"}, kind="SEMVER")
    assert affected("npm", "1.5.0", ranges)
    assert not affected("npm", "2.0.0", ranges)
    assert not affected("npm", "3.0.0", ranges)  # no fix, but past every limit
    assert not affected("npm", "0.9.0", ranges)
    unlimited = ecosystem_range({"introduced": "1.0.0"}, {"limit": "*"}, kind="SEMVER")
    assert affected("npm", "9.0.0", unlimited)


def test_events_out_of_order_are_sorted() -> None:
    ranges = ecosystem_range(
        {"fixed": "1.19.1"}, {"introduced": "1.19.0"}, {"fixed": "1.18.6"}, {"introduced": "0"}
    )
    assert affected("Go", "1.18.0", ranges)
    assert not affected("Go", "1.18.7", ranges)
    assert affected("Go", "1.19.0", ranges)


def test_introduced_zero_alone_affects_everything() -> None:
    assert affected("PyPI", "99.0", ecosystem_range({"introduced": "0"}))


def test_git_ranges_are_skipped_but_versions_still_match() -> None:
    git = ecosystem_range(
        {"introduced": "0"}, {"fixed": "74ea7cf7a6a27a4eeb2ae24e162bcc942a6706d5"}, kind="GIT"
    )
    verdict = evaluate("PyPI", "2.2.1", git, [])
    assert not verdict.affected and verdict.skipped == 1
    assert evaluate("PyPI", "2.30.0", git, ["2.30.0"]).affected


def test_an_ecosystem_without_ordering_matches_its_versions_list_only() -> None:
    assert scheme_for("OSS-Fuzz") is None
    ranges = ecosystem_range({"introduced": "0"}, {"fixed": "2.0"})
    verdict = evaluate("OSS-Fuzz", "1.0", ranges, ["1.5"])
    assert not verdict.affected and verdict.skipped == 1
    assert evaluate("OSS-Fuzz", "1.5", ranges, ["1.5"]).affected


@pytest.mark.parametrize("version", ["", "not a version!", "1.0 beta"])
def test_an_unparsable_installed_version_matches_nothing(version: str) -> None:
    verdict = evaluate(
        "Alpine:v3.18", version, ecosystem_range({"introduced": "0"}, {"fixed": "3.1.4-r0"}), []
    )
    assert not verdict.affected and verdict.skipped == 1


def test_an_unparsable_event_skips_that_range_only() -> None:
    ranges = [
        *ecosystem_range({"introduced": "0"}, {"fixed": "not a version!"}, kind="SEMVER"),
        *ecosystem_range({"introduced": "0"}, {"fixed": "2.0.0"}, kind="SEMVER"),
    ]
    verdict = evaluate("npm", "1.0.0", ranges, [])
    assert verdict.affected and verdict.skipped == 1 and verdict.fixed == ["2.0.0"]


def test_names_are_normalised_per_ecosystem() -> None:
    assert normalize_name("PyPI", "PyYAML") == normalize_name("PyPI", "pyyaml") == "pyyaml"
    assert normalize_name("PyPI", "zope.interface") == normalize_name("PyPI", "Zope_Interface")
    assert normalize_name("Go", "github.com/BurntSushi/toml") == "github.com/BurntSushi/toml"
    assert normalize_name("Debian:12", "OpenSSL") == "openssl"


@pytest.mark.parametrize(
    ("version", "expected", "fixed"),
    [
        ("1.0.3", True, ["1.0.4"]),
        ("1.0.4", False, []),
        ("1.1", True, ["1.1.1"]),
        ("1.1.1", False, []),
        ("1.0.3rc1", True, ["1.0.4"]),  # pre-releases count
        ("1.1.1rc1", False, []),  # but PEP 440's "<V" leaves out V's own pre-releases
        ("not a version", False, []),
    ],
)
def test_safety_db_specifier_sets(version: str, expected: bool, fixed: list[str]) -> None:
    ranges = [{"type": "PEP440_SPECIFIERS", "events": [], "specs": ["<1.0.4", ">=1.1,<1.1.1", "<=0.1"]}]
    verdict = evaluate("PyPI", version, ranges, [])
    assert (verdict.affected, verdict.fixed) == (expected, fixed)
