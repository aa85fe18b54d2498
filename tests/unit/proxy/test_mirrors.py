"""Mirror mode's renaming rules, and its cost: requests the mirror settings do not concern, and names of
known projects, read nothing; a name the default project would take is checked in the database."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any

from dockyard.auth.interfaces import Scope
from dockyard.coordination.feeds import InProcessChangeFeed
from dockyard.coordination.interfaces import Topic
from dockyard.proxy.mirrors import UNKNOWN, Mirrors, namespace_of


class Rows:
    def __init__(self, names: set[str]) -> None:
        self.names = names
        self.reads = 0

    def scalars(self, query: Any) -> list[str]:
        return sorted(self.names)

    def scalar(self, query: Any) -> int | None:
        [name] = query.compile().params.values()  # WHERE projects.name = :name
        return 1 if name in self.names else None


class FakeDb:
    def __init__(self, names: set[str]) -> None:
        self.rows = Rows(names)

    @contextmanager
    def read(self) -> Any:
        self.rows.reads += 1
        yield self.rows


def mirrors(names: set[str], default: str | None = "docker.io", now: list[float] | None = None) -> Mirrors:
    clock = now if now is not None else [0.0]
    namespaces = {"docker.io": "hub", "GHCR.io": "ghcr"}
    db: Any = FakeDb(names)
    return Mirrors(namespaces, default, db, InProcessChangeFeed(), lambda: clock[0])


def test_namespace_parameter() -> None:
    assert namespace_of(b"") is None
    assert namespace_of(b"ns=docker.io") == "docker.io"
    assert namespace_of(b"n=10&ns=Docker.IO&last=x") == "docker.io"
    assert namespace_of(b"dns=x") is None and namespace_of(b"ns=") is None


def test_ns_maps_by_dict_lookup_without_reading_anything() -> None:
    m = mirrors({"team"})
    assert m.rename_now("manifests", "GET", "library/alpine", b"ns=docker.io") == "hub/library/alpine"
    assert m.rename_now("blobs", "GET", "org/app", b"ns=ghcr.io") == "ghcr/org/app"
    assert m.rename_now("manifests", "GET", "library/alpine", b"ns=quay.io") is None  # not mapped
    assert m.rename_now("upload_start", "POST", "library/alpine", b"ns=docker.io") == "hub/library/alpine"
    assert m.db.rows.reads == 0  # type: ignore[attr-defined]


def test_the_default_project_takes_pulls_of_names_of_no_project_only() -> None:
    m = mirrors({"team", "hub"})
    assert m.rename_now("manifests", "GET", "library/alpine", b"") is UNKNOWN  # names not read yet
    assert m.rename("manifests", "GET", "library/alpine", b"") == "hub/library/alpine"
    assert m.rename("manifests", "GET", "team/app", b"") is None
    reads = m.db.rows.reads  # type: ignore[attr-defined]
    # Known projects, pushes, the default project itself, other routes: decided with no read.
    assert m.rename_now("blobs", "HEAD", "team/app", b"") is None
    assert m.rename_now("manifests", "PUT", "library/alpine", b"") is None
    assert m.rename_now("upload_start", "POST", "library/alpine", b"") is None
    assert m.rename_now("manifests", "GET", "hub/library/alpine", b"") is None
    assert m.db.rows.reads == reads  # type: ignore[attr-defined]
    # A name of no known project is checked (a project created a moment ago is not shadowed).
    assert m.rename_now("manifests", "GET", "library/alpine", b"") is UNKNOWN
    m.db.rows.names.add("library")  # type: ignore[attr-defined]
    assert m.rename("manifests", "GET", "library/alpine", b"") is None


def test_the_project_names_are_read_again_after_a_change_or_their_expiry() -> None:
    now = [0.0]
    m = mirrors({"team"}, now=now)
    m.rename("manifests", "GET", "team/app", b"")
    assert m.rename_now("manifests", "GET", "team/app", b"") is None
    m.feed.bump(Topic.POLICIES)  # a project was deleted
    assert m.rename_now("manifests", "GET", "team/app", b"") is UNKNOWN
    m.rename("manifests", "GET", "team/app", b"")
    now[0] = 31.0
    assert m.rename_now("manifests", "GET", "team/app", b"") is UNKNOWN


def test_without_a_default_namespace_names_without_ns_are_left_alone() -> None:
    m = mirrors(set(), default=None)
    assert m.rename_now("manifests", "GET", "library/alpine", b"") is None
    scopes = [Scope("repository", "library/alpine", frozenset({"pull"}))]
    assert m.rename_scopes(scopes) == scopes


def test_token_scopes_of_pulls_are_renamed_pushes_are_not() -> None:
    m = mirrors({"team"})
    pull = Scope("repository", "library/alpine", frozenset({"pull"}))
    push = Scope("repository", "library/alpine", frozenset({"pull", "push"}))
    own = Scope("repository", "team/app", frozenset({"pull"}))
    catalog = Scope("registry", "catalog", frozenset({"*"}))
    renamed = m.rename_scopes([pull, push, own, catalog])
    assert renamed == [Scope("repository", "hub/library/alpine", frozenset({"pull"})), push, own, catalog]
