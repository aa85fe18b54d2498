"""The pull-through cache's decisions: when a cached tag is served as it is, when upstream is asked, which
upstream failures let the cache serve what it has, and how local names map to upstream ones."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from dockyard.proxy.interfaces import (
    ProxyConfig,
    ProxySettingsInvalid,
    TagDecision,
    decide_tag,
    stale_allowed,
)
from dockyard.upstream.interfaces import (
    UpstreamAddressRefused,
    UpstreamError,
    UpstreamNotFound,
    UpstreamUnauthorized,
    UpstreamUnavailable,
)

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("age", "ttl", "expected"),
    [
        (timedelta(seconds=0), 300, TagDecision.FRESH),
        (timedelta(seconds=299.9), 300, TagDecision.FRESH),
        (timedelta(seconds=300), 300, TagDecision.CHECK),  # the TTL's end is not fresh any more
        (timedelta(hours=5), 300, TagDecision.CHECK),
        (timedelta(seconds=0), 0, TagDecision.CHECK),  # a TTL of 0 asks every time
        (timedelta(seconds=-30), 300, TagDecision.CHECK),  # checked "in the future": a clock step
    ],
)
def test_a_cached_tag_is_fresh_only_within_its_ttl(age: timedelta, ttl: int, expected: TagDecision) -> None:
    assert decide_tag(NOW, NOW - age, True, ttl) is expected


def test_nothing_cached_is_fetched_whatever_the_times_say() -> None:
    assert decide_tag(NOW, NOW, False, 300) is TagDecision.FETCH
    assert decide_tag(NOW, None, False, 300) is TagDecision.FETCH


def test_a_cached_tag_without_a_check_time_is_checked() -> None:
    # Pushed before the project became a proxy, or retagged: upstream decides.
    assert decide_tag(NOW, None, True, 300) is TagDecision.CHECK


@pytest.mark.parametrize(
    "error",
    [
        UpstreamUnavailable("down"),
        UpstreamUnavailable("429", status=429),
        UpstreamUnavailable("503", status=503),
        UpstreamUnauthorized("credentials revoked"),
        UpstreamAddressRefused("now resolves to a refused network"),
        UpstreamError("answered 400"),
    ],
)
def test_upstream_failures_let_the_cache_serve_stale(error: Exception) -> None:
    assert stale_allowed(error)


def test_an_upstream_that_says_not_found_is_believed() -> None:
    assert not stale_allowed(UpstreamNotFound("gone"))
    assert not stale_allowed(ValueError("not an upstream error"))


def test_docker_hub_endpoints_add_library_to_one_component_names() -> None:
    hub = ProxyConfig("hub", 1, "docker", True, 300)
    assert hub.upstream_repository("hub/alpine") == "library/alpine"
    assert hub.upstream_repository("hub/library/alpine") == "library/alpine"
    assert hub.upstream_repository("hub/bitnami/redis") == "bitnami/redis"
    other = ProxyConfig("ghcr", 2, "ghcr", False, 300)
    assert other.upstream_repository("ghcr/alpine") == "alpine"
    assert other.upstream_repository("ghcr/a/b/c") == "a/b/c"
    with pytest.raises(ProxySettingsInvalid):
        hub.upstream_repository("hub")
