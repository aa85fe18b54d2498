"""Scope strings: what clients send is read exactly, and nothing crafted widens what a token names."""

from __future__ import annotations

import pytest

from dockyard.auth.interfaces import Scope
from dockyard.auth.scopes import (
    CATALOG_SCOPE,
    MAX_SCOPES,
    AccessSet,
    ScopeInvalid,
    format_scope,
    format_scopes,
    parse_scope,
    parse_scopes,
    repository_scope,
)


def test_repository_scope_with_several_actions() -> None:
    assert parse_scope("repository:team/app:pull,push") == Scope(
        "repository", "team/app", frozenset({"pull", "push"})
    )


def test_resource_class_is_kept_so_the_grant_can_echo_it() -> None:
    scope = parse_scope("repository(plugin):team/app:pull")
    assert (scope.type, scope.resource_class, scope.name) == ("repository", "plugin", "team/app")
    assert format_scope(scope) == "repository(plugin):team/app:pull"


def test_catalog_scope() -> None:
    assert parse_scope("registry:catalog:*") == CATALOG_SCOPE


def test_a_leading_host_port_is_dropped_but_a_dotted_first_component_stays() -> None:
    assert parse_scope("repository:localhost:5000/team/app:pull").name == "team/app"
    assert parse_scope("repository:registry.example.com:443/team/app:pull").name == "team/app"
    # `example.com/app` is a valid repository name of its own: it is not a host to strip.
    assert parse_scope("repository:example.com/app:pull").name == "example.com/app"


def test_get_repeats_scope_and_post_separates_with_spaces_duplicates_merge() -> None:
    scopes = parse_scopes(
        ["repository:a/b:pull", "repository:a/b:push repository:c:pull", "registry:catalog:*"]
    )
    assert scopes == [
        Scope("repository", "a/b", frozenset({"pull", "push"})),
        Scope("repository", "c", frozenset({"pull"})),
        CATALOG_SCOPE,
    ]
    assert format_scopes(scopes) == "repository:a/b:pull,push repository:c:pull registry:catalog:*"


def test_empty_scope_parameter_asks_for_nothing() -> None:
    assert parse_scopes([""]) == []
    assert parse_scopes([]) == []


@pytest.mark.parametrize(
    "text",
    [
        "repository",  # no name, no actions
        "repository:team/app",  # no actions
        "repository:team/app:",  # empty action list
        "repository::pull",  # empty name
        "repository:Team/App:pull",  # upper case is no repository name
        "repository:team/../admin:push",  # path tricks
        "repository:team//app:push",
        "repository:*:push",  # wildcard names are never a thing
        "repository:team/app:pull,PUSH",  # actions are lower case words or *
        "repository:team/app:pull;push",
        "repository:team/app:pull,,push",
        "repository:team/app:push:pull",  # a second ':' leaves `app:push` as a name component
        "registry:catalog/extra:*",  # the registry resource is only `catalog`
        "Repository:team/app:pull",
        "repository(plu gin):team/app:pull",
        "repository:evil:1:2/team/app:pull",
        "repository:team/app\n:pull",
        "repository:" + "a" * 300 + ":pull",
    ],
)
def test_malformed_or_escalating_scopes_are_refused(text: str) -> None:
    with pytest.raises(ScopeInvalid):
        parse_scope(text)


def test_error_messages_quote_bounded_printable_text() -> None:
    with pytest.raises(ScopeInvalid) as caught:
        parse_scope("repository:BAD\x1b[31m" + "x" * 200 + ":pull")
    assert "\x1b" not in caught.value.message
    assert len(caught.value.message) < 200


def test_too_many_scopes_are_refused() -> None:
    many = " ".join(f"repository:r{i}:pull" for i in range(MAX_SCOPES + 1))
    with pytest.raises(ScopeInvalid):
        parse_scopes([many])


def test_access_set_matches_type_name_and_every_action() -> None:
    access = AccessSet.of([repository_scope("team/app", "pull", "push")])
    assert access.permits(repository_scope("team/app", "pull"))
    assert access.permits(repository_scope("team/app", "pull", "push"))
    assert not access.permits(repository_scope("team/app", "delete"))
    assert not access.permits(repository_scope("team/app2", "pull"))
    assert not access.permits(Scope("registry", "team/app", frozenset({"pull"})))


def test_wildcard_action_covers_delete_as_registry2_tokens_grant_it() -> None:
    access = AccessSet.from_claim([{"type": "repository", "name": "team/app", "actions": ["*"]}])
    assert access.permits(repository_scope("team/app", "delete"))
    assert access.permits(repository_scope("team/app", "pull", "push"))
    assert AccessSet.from_claim([{"type": "registry", "name": "catalog", "actions": ["*"]}]).permits(
        CATALOG_SCOPE
    )


def test_catalog_needs_the_wildcard_not_a_lesser_action() -> None:
    assert not AccessSet.of([Scope("registry", "catalog", frozenset({"pull"}))]).permits(CATALOG_SCOPE)


@pytest.mark.parametrize(
    "claim",
    [
        None,
        "repository:team/app:pull",
        [["repository", "team/app", ["pull"]]],
        [{"type": "repository"}],
        [{"type": "repository", "name": "team/app", "actions": "pull"}],
    ],
)
def test_malformed_access_claims_grant_nothing(claim: object) -> None:
    assert not AccessSet.from_claim(claim).permits(repository_scope("team/app", "pull"))
