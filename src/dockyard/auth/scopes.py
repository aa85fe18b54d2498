"""Scope strings of the Docker token spec, parsed strictly, and the access sets tokens carry.

Grammar (distribution docs/spec/auth/scope.md):

    scope         := resourcescope [ ' ' resourcescope ]*
    resourcescope := resourcetype[(resourceclass)] ":" resourcename ":" action [ ',' action ]*

The name may hold one ':' (a registry host:port as its first component), so the type is what precedes
the first ':' and the actions what follows the last one. A leading host:port component is dropped:
dockyard's repository names never carry their registry's address, and keeping it would name a
repository that cannot exist. Everything else must be a valid repository name; anything odd is refused
rather than guessed at, so a crafted string cannot widen what a token names.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from dockyard.auth.interfaces import Scope
from dockyard.content.reference import MAX_NAME_LENGTH, validate_name
from dockyard.errors import Category, DockyardError, NameInvalid
from dockyard.projects.rbac import project_of

REPOSITORY = "repository"
REGISTRY = "registry"
CATALOG = "catalog"
WILDCARD = "*"
PULL, PUSH, DELETE = "pull", "push", "delete"

# Bounds on what one request may ask for: more is never legitimate and only costs CPU.
MAX_SCOPES = 64
MAX_SCOPE_LENGTH = MAX_NAME_LENGTH + 128

_RESOURCE = re.compile(r"^(?P<type>[a-z0-9]+)(?:\((?P<cls>[a-zA-Z0-9]+)\))?$")
_ACTION = re.compile(r"^(?:[a-z]+|\*)$")
# host[:port] as the first name component: only dropped when it carries a port (a component with a
# ':' can never be part of a repository name), so `example.com/app` stays the repository it names.
_HOST_PORT = re.compile(r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9-]+)*:[0-9]{1,5}$")


class ScopeInvalid(DockyardError):
    category = Category.INVALID
    message = "invalid scope"


def parse_scope(text: str) -> Scope:
    """One resource scope, e.g. `repository:team/app:pull,push`; raises ScopeInvalid."""
    if not text or len(text) > MAX_SCOPE_LENGTH:
        raise ScopeInvalid("invalid scope: empty or too long")
    head, sep, rest = text.partition(":")
    name, sep2, actions_text = rest.rpartition(":")
    if not sep or not sep2:
        raise ScopeInvalid(f"invalid scope {_shown(text)}: expected type:name:actions")
    resource = _RESOURCE.match(head)
    if resource is None:
        raise ScopeInvalid(f"invalid scope {_shown(text)}: bad resource type")
    actions = frozenset(actions_text.split(","))
    if not actions_text or not all(_ACTION.match(action) for action in actions):
        raise ScopeInvalid(f"invalid scope {_shown(text)}: bad action list")
    kind = resource.group("type")
    return Scope(kind, _resource_name(kind, name, text), actions, resource.group("cls"))


def parse_scopes(values: Iterable[str]) -> list[Scope]:
    """All scopes of a request: each value may hold several, space separated (the POST form's way;
    GET repeats the parameter). Duplicates of one resource are merged into one entry."""
    parsed: list[Scope] = []
    for value in values:
        for text in value.split(" "):
            if text:
                parsed.append(parse_scope(text))
                if len(parsed) > MAX_SCOPES:
                    raise ScopeInvalid(f"too many scopes (at most {MAX_SCOPES})")
    return merge_scopes(parsed)


def merge_scopes(scopes: Iterable[Scope]) -> list[Scope]:
    """One entry per (type, class, name), actions united, in first-seen order."""
    merged: dict[tuple[str, str | None, str], set[str]] = {}
    for scope in scopes:
        merged.setdefault((scope.type, scope.resource_class, scope.name), set()).update(scope.actions)
    return [Scope(kind, name, frozenset(actions), cls) for (kind, cls, name), actions in merged.items()]


def format_scope(scope: Scope) -> str:
    resource = f"{scope.type}({scope.resource_class})" if scope.resource_class else scope.type
    return f"{resource}:{scope.name}:{','.join(sorted(scope.actions))}"


def format_scopes(scopes: Iterable[Scope]) -> str:
    """Space-separated, as the challenge's and the OAuth response's `scope` carry them."""
    return " ".join(format_scope(scope) for scope in scopes if scope.actions)


def decision_scopes(scopes: Iterable[Scope]) -> tuple[Scope, ...]:
    """What the policy's answer to `scopes` depends on, to remember answers by: a repository counts by
    its project, since roles, robot permissions and public access are per project
    (`AccessPolicy.grant`), so every repository of a project shares one remembered answer; a pull
    across thousands of repositories asks the database once per project, not once per repository. A
    name that is not a valid repository name keeps its own (it is granted nothing)."""
    decided = []
    for scope in scopes:
        if scope.type == REPOSITORY:
            try:
                validate_name(scope.name)
            except NameInvalid:
                decided.append(scope)
                continue
            scope = Scope(REPOSITORY, project_of(scope.name), scope.actions, scope.resource_class)
        decided.append(scope)
    return tuple(decided)


def repository_scope(name: str, *actions: str) -> Scope:
    return Scope(REPOSITORY, name, frozenset(actions))


CATALOG_SCOPE = Scope(REGISTRY, CATALOG, frozenset({WILDCARD}))


@dataclass(frozen=True, slots=True)
class AccessSet:
    """What a token allows: (type, name) -> actions. `*` allows every action, as in registry:2
    (whose tokens grant `*` where Harbor's grant `delete`). The resource class is not matched."""

    entries: Mapping[tuple[str, str], frozenset[str]]

    @classmethod
    def of(cls, scopes: Iterable[Scope]) -> AccessSet:
        entries: dict[tuple[str, str], frozenset[str]] = {}
        for scope in scopes:
            key = (scope.type, scope.name)
            entries[key] = entries.get(key, frozenset()) | scope.actions
        return cls(entries)

    @classmethod
    def from_claim(cls, claim: object) -> AccessSet:
        """From a JWT `access` claim; malformed entries are dropped (they grant nothing)."""
        scopes: list[Scope] = []
        if isinstance(claim, list):
            for entry in claim:
                if not isinstance(entry, dict):
                    continue
                kind, name, actions = entry.get("type"), entry.get("name"), entry.get("actions")
                if isinstance(kind, str) and isinstance(name, str) and isinstance(actions, list):
                    scopes.append(Scope(kind, name, frozenset(a for a in actions if isinstance(a, str))))
        return cls.of(scopes)

    def permits(self, scope: Scope) -> bool:
        """True when every action of `scope` is allowed on its resource."""
        allowed = self.entries.get((scope.type, scope.name))
        if not allowed:
            return False
        return WILDCARD in allowed or scope.actions <= allowed

    def permits_all(self, scopes: Iterable[Scope]) -> bool:
        return all(self.permits(scope) for scope in scopes)


def _resource_name(kind: str, name: str, text: str) -> str:
    if kind == REGISTRY:
        if name != CATALOG:
            raise ScopeInvalid(f"invalid scope {_shown(text)}: the registry resource is `catalog`")
        return name
    host, slash, remainder = name.partition("/")
    if slash and _HOST_PORT.match(host):
        name = remainder
    try:
        return validate_name(name)
    except NameInvalid:
        raise ScopeInvalid(f"invalid scope {_shown(text)}: invalid repository name") from None


def _shown(text: str) -> str:
    """The scope as quoted back in errors: bounded, printable only."""
    clean = "".join(ch if ch.isprintable() else "?" for ch in text[:80])
    return repr(clean + ("..." if len(text) > 80 else ""))
