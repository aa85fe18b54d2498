"""The pure rules of replication: which repositories and tags a policy selects, the names on the
destination, and which policies are refused."""

from __future__ import annotations

import pytest

from dockyard.replication.interfaces import Direction, Policy, PolicyInvalid, Trigger, check_policy, rewrite


def policy(**fields: object) -> Policy:
    return Policy(**{"name": "p", "direction": Direction.PUSH, "endpoint": "e", **fields})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("repository", "namespace", "expected"),
    [
        ("team/app", None, "team/app"),
        ("team/app", "", "team/app"),
        ("team/app", "mirror", "mirror/app"),
        ("team/web/site", "mirror", "mirror/web/site"),
        ("alpine", "mirror", "mirror/alpine"),  # one component: the namespace goes in front
        ("library/alpine", "hub/cache", "hub/cache/alpine"),
    ],
)
def test_rewrite_replaces_the_first_component(repository: str, namespace: str | None, expected: str) -> None:
    assert rewrite(repository, namespace) == expected
    assert policy(dest_namespace=namespace or None).destination(repository) == expected


@pytest.mark.parametrize(
    ("repositories", "name", "selected"),
    [
        ("**", "team/app", True),
        ("team/*", "team/app", True),
        ("team/*", "team/web/site", False),  # * stops at a slash
        ("team/**", "team/web/site", True),
        ("team/{app,web/**}", "team/web/site", True),
        ("team/{app,web/**}", "team/other", False),
        ("team/app", "team/app2", False),  # a pattern matches whole names
    ],
)
def test_repository_filter(repositories: str, name: str, selected: bool) -> None:
    assert policy(repositories=repositories).selects_repository(name) is selected


@pytest.mark.parametrize(
    ("tags", "tag", "selected"),
    [
        ("**", "latest", True),
        ("1.*", "1.0", True),
        ("1.*", "10.0", False),
        ("v[0-9]*", "v2-rc", True),
        ("{latest,stable}", "stable", True),
        ("{latest,stable}", "edge", False),
    ],
)
def test_tag_filter(tags: str, tag: str, selected: bool) -> None:
    assert policy(tags=tags).selects_tag(tag) is selected


@pytest.mark.parametrize(
    ("fields", "why"),
    [
        ({"name": "Bad Name"}, "invalid policy name"),
        ({"name": "-x"}, "invalid policy name"),
        ({"tags": "{a"}, "tags"),
        ({"repositories": ""}, "repositories"),
        ({"dest_namespace": "Upper"}, "destination namespace"),
        ({"dest_namespace": "a//b"}, "destination namespace"),
        ({"dest_namespace": "/a"}, "destination namespace"),
        ({"trigger": Trigger.CRON}, "needs a schedule"),
        ({"trigger": Trigger.CRON, "schedule": "61 * * * *"}, "invalid schedule"),
        ({"schedule": "0 3 * * *"}, "needs the cron trigger"),
        ({"trigger": Trigger.EVENT, "direction": Direction.PULL}, "push direction"),
        ({"description": "x" * 1025}, "description"),
        ({"concurrency": 0}, "concurrency is 1 to 32"),
        ({"concurrency": 33}, "concurrency is 1 to 32"),
        ({"bandwidth": 1000}, "at least 65536 bytes per second"),
    ],
)
def test_invalid_policies_are_refused_with_the_reason(fields: dict[str, object], why: str) -> None:
    with pytest.raises(PolicyInvalid) as refused:
        check_policy(policy(**fields))
    assert why in refused.value.message


def test_valid_policies_pass() -> None:
    for fields in (
        {},
        {"dest_namespace": "mirror/sub", "tags": "v*", "repositories": "team/**"},
        {"trigger": Trigger.CRON, "schedule": "@every 1h"},
        {"trigger": Trigger.CRON, "schedule": "0 3 * * *", "direction": Direction.PULL},
        {"trigger": Trigger.EVENT},
        {"concurrency": 1, "bandwidth": 65536},
        {"concurrency": 32, "bandwidth": None},
    ):
        check_policy(policy(**fields))


@pytest.mark.parametrize(
    ("pattern", "names"),
    [
        ("library/alpine", ["library/alpine"]),
        ("library/{alpine,busybox}", ["library/alpine", "library/busybox"]),
        ("a/{b,c/{d,e}}", ["a/b", "a/c/d", "a/c/e"]),
        ("x/{a,b}/{1,2}", ["x/a/1", "x/a/2", "x/b/1", "x/b/2"]),
        ("a/*", None),
        ("**", None),
        ("a/{b,*}", None),
        ("a/[bc]", None),
        ("a/?", None),
        ("{" + ",".join(f"r{n}" for n in range(101)) + "}", None),  # too many to ask for one by one
    ],
)
def test_a_pattern_without_wildcards_names_its_repositories(pattern: str, names: list[str] | None) -> None:
    from dockyard.replication.interfaces import literal_names

    assert literal_names(pattern) == names
