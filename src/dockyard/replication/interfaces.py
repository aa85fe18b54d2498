"""Replication policies as data, the pure rules of a run (which artifacts, under which names), and the
errors the service raises.

A policy copies artifacts between this registry and one registry endpoint: `push` (local to the
endpoint) or `pull` (the endpoint to local). Its filters are doublestar globs (projects.patterns, the
same as retention and immutability) on the source's repository names and tags; `dest_namespace`
replaces the first component of a repository name on the destination (`team/app/web` ->
`mirror/app/web`; a one-component name gets it in front: `alpine` -> `mirror/alpine`), as Harbor's
"flatten 1 level" does.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from dockyard.content.reference import validate_name
from dockyard.errors import Category, DockyardError
from dockyard.projects.patterns import PatternInvalid, matches, validate_pattern
from dockyard.replication.filters import FilterInvalid, check_artifact_types, check_labels

NAME_PATTERN = r"^[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?$"
_NAME = re.compile(NAME_PATTERN)
_NAMESPACE = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$")


MAX_CONCURRENCY = 32  # artifacts a run may copy at once
MIN_BANDWIDTH = 64 * 1024  # bytes per second: below it, timeouts would cut blobs off


class Direction(StrEnum):
    PUSH = "push"  # local -> the endpoint
    PULL = "pull"  # the endpoint -> local


class Trigger(StrEnum):
    MANUAL = "manual"  # only when asked (API, CLI)
    CRON = "cron"  # on `schedule` (5-field cron, UTC, or @every <duration>)
    EVENT = "event"  # on a push to this registry of a matching tag (push policies)


class RunStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # some artifact failed (the job retries: what arrived is not copied again)
    CANCELLED = "cancelled"


class ArtifactStatus(StrEnum):
    COPIED = "copied"  # something was copied (blobs, manifests or the tag)
    SKIPPED = "skipped"  # the destination had it all already, or keeps its own tag (override off)
    FAILED = "failed"
    DELETED = "deleted"  # a tag gone from the source, deleted on the destination (propagate_deletes)


class ReplicationError(DockyardError):
    category = Category.INVALID
    message = "replication error"


class PolicyNotFound(ReplicationError):
    category = Category.NOT_FOUND
    message = "no such replication policy"


class PolicyExists(ReplicationError):
    category = Category.CONFLICT
    message = "a replication policy of that name exists"


class PolicyInvalid(ReplicationError):
    message = "invalid replication policy"


class RunNotFound(ReplicationError):
    category = Category.NOT_FOUND
    message = "no such replication run"


@dataclass(frozen=True)
class Policy:
    name: str
    direction: Direction
    endpoint: str
    repositories: str = "**"
    tags: str = "**"
    dest_namespace: str | None = None
    trigger: Trigger = Trigger.MANUAL
    schedule: str | None = None
    override: bool = True
    propagate_deletes: bool = False
    enabled: bool = True
    description: str = ""
    concurrency: int = 8  # artifacts a run copies at once
    bandwidth: int | None = None  # bytes per second a run's blob copies take together; None: no limit
    artifact_types: tuple[str, ...] = ()  # filters.py: names or media type globs; empty: every type
    labels: tuple[str, ...] = ()  # filters.py: `key=value` globs on the image config's labels, all hold
    created_at: datetime | None = None
    updated_at: datetime | None = None

    def selects_repository(self, name: str) -> bool:
        return matches(self.repositories, name)

    def selects_tag(self, tag: str) -> bool:
        return matches(self.tags, tag)

    def destination(self, repository: str) -> str:
        return rewrite(repository, self.dest_namespace)


MAX_LITERAL_NAMES = 100


def literal_names(pattern: str) -> list[str] | None:
    """The names a repository pattern without wildcards stands for (`library/{alpine,busybox}` ->
    `library/alpine`, `library/busybox`), so a run asks for them instead of listing the source's
    catalog, which Docker Hub does not offer; None when the pattern has `*`, `?` or `[`, or expands to
    more than MAX_LITERAL_NAMES names."""
    names, end = _alternatives(pattern, 0, top=True)
    if names is None or end != len(pattern) or len(names) > MAX_LITERAL_NAMES:
        return None
    return sorted(set(names))


def _alternatives(pattern: str, index: int, top: bool) -> tuple[list[str] | None, int]:
    """The expansions of the sequence from `index` to the end (top) or to its `,`/`}`."""
    results = [""]
    while index < len(pattern):
        char = pattern[index]
        if char in "*?[":
            return None, index
        if char in ",}" and not top:
            return results, index
        if char == "\\" and index + 1 < len(pattern):
            results = [r + pattern[index + 1] for r in results]
            index += 2
            continue
        if char == "{":
            options: list[str] = []
            index += 1
            while True:
                inner, index = _alternatives(pattern, index, top=False)
                if inner is None or index >= len(pattern):
                    return None, index
                options.extend(inner)
                if pattern[index] == "}":
                    index += 1
                    break
                index += 1  # the ","
            results = [r + o for r in results for o in options]
            if len(results) > MAX_LITERAL_NAMES:
                return None, index
            continue
        results = [r + char for r in results]
        index += 1
    return results, index


def rewrite(repository: str, namespace: str | None) -> str:
    """The repository's name on the destination: its first component replaced by `namespace` (a
    one-component name gets `namespace/` in front); unchanged without a namespace."""
    if not namespace:
        return repository
    rest = repository.split("/", 1)[1] if "/" in repository else repository
    return f"{namespace}/{rest}"


def check_policy(policy: Policy) -> Policy:
    """The policy, or PolicyInvalid naming what is wrong with it (schedules: jobs.cron)."""
    if not _NAME.fullmatch(policy.name or ""):
        raise PolicyInvalid(
            f"invalid policy name {policy.name!r}: 1-64 of a-z, 0-9, '.', '_', '-', starting and ending "
            "with a letter or digit"
        )
    for what, pattern in (("repositories", policy.repositories), ("tags", policy.tags)):
        try:
            validate_pattern(pattern)
        except PatternInvalid as error:
            raise PolicyInvalid(f"{what}: {error.message}") from None
    if policy.dest_namespace is not None:
        if not _NAMESPACE.fullmatch(policy.dest_namespace) or len(policy.dest_namespace) > 128:
            raise PolicyInvalid(
                f"invalid destination namespace {policy.dest_namespace!r}: lower-case path components "
                "as in a repository name"
            )
        validate_name(f"{policy.dest_namespace}/x")
    if policy.trigger is Trigger.CRON:
        from dockyard.jobs.cron import CronError, parse_cron

        if not policy.schedule:
            raise PolicyInvalid("a cron trigger needs a schedule (e.g. `0 3 * * *` or `@every 1h`)")
        try:
            parse_cron(policy.schedule)
        except CronError as error:
            raise PolicyInvalid(f"invalid schedule {policy.schedule!r}: {error}") from None
    elif policy.schedule:
        raise PolicyInvalid("a schedule needs the cron trigger")
    if policy.trigger is Trigger.EVENT and policy.direction is not Direction.PUSH:
        raise PolicyInvalid("the event trigger (on push to this registry) needs the push direction")
    if len(policy.description) > 1024:
        raise PolicyInvalid("the description has more than 1024 characters")
    if not 1 <= policy.concurrency <= MAX_CONCURRENCY:
        raise PolicyInvalid(f"concurrency is 1 to {MAX_CONCURRENCY} artifacts at a time")
    if policy.bandwidth is not None and policy.bandwidth < MIN_BANDWIDTH:
        raise PolicyInvalid(f"a bandwidth limit is at least {MIN_BANDWIDTH} bytes per second (or none)")
    try:
        check_artifact_types(policy.artifact_types)
        check_labels(policy.labels)
    except FilterInvalid as error:
        raise PolicyInvalid(str(error)) from None
    return policy


@dataclass
class Counters:
    """What a run did, as the run's record and the API show it."""

    artifacts_copied: int = 0
    artifacts_skipped: int = 0
    artifacts_failed: int = 0
    artifacts_deleted: int = 0
    blobs_copied: int = 0
    blobs_mounted: int = 0
    blobs_skipped: int = 0
    manifests_copied: int = 0
    bytes_copied: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class ArtifactResult:
    source: str  # "team/app:1.0"
    destination: str  # "mirror/app:1.0"
    digest: str | None
    status: ArtifactStatus
    blobs: int = 0  # blobs copied (not those already there)
    bytes: int = 0
    error: str | None = None


@dataclass(frozen=True)
class Run:
    id: int
    policy: str
    job_id: int | None
    trigger: str
    status: RunStatus
    started_at: datetime
    finished_at: datetime | None
    counters: dict[str, int]
    error: str | None
    artifacts: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class ManifestData:
    media_type: str
    digest: str
    data: bytes


@dataclass
class BlobSource:
    """A blob's bytes as a source sends them from an offset asked for."""

    start: int  # where `chunks` begin: the offset asked for, or 0 from a source that ignores ranges
    size: int | None  # the whole blob's size, when the source says
    chunks: Iterator[bytes]
    close: Callable[[], None]


OpenBlob = Callable[[int], BlobSource]  # a blob of the source, opened at an offset


class PendingUploads(Protocol):
    """Where a blob copy cut off midway continues: the destination's upload (a local upload's id, a
    remote upload's URL) by (destination repository, digest), remembered across runs and workers."""

    def get(self, repository: str, digest: str) -> str | None: ...

    def put(self, repository: str, digest: str, upload: str) -> None: ...

    def drop(self, repository: str, digest: str) -> None: ...


class Side(Protocol):
    """One end of a replication. Errors are DockyardErrors (the upstream's among them)."""

    where: str  # "local" or the endpoint's URL, for logs

    def repositories(self) -> list[str]: ...

    def tags(self, repository: str) -> list[str]: ...

    def manifest(self, repository: str, reference: str) -> ManifestData | None: ...

    def manifest_digest(self, repository: str, reference: str) -> str | None:
        """The digest `reference` points at (a HEAD), None when there is none."""
        ...

    def has_blob(self, repository: str, digest: str) -> bool: ...

    def mount_blob(self, repository: str, digest: str, sources: Iterable[str]) -> bool:
        """Link a blob the side holds elsewhere (one of `sources`, or anywhere when it can tell)."""
        ...

    def open_blob(self, repository: str, digest: str, offset: int = 0) -> BlobSource:
        """The blob from `offset` (a ranged read; a source may start at 0 instead: `start` says)."""
        ...

    def push_blob(
        self, repository: str, digest: str, size: int, open_source: OpenBlob, pending: PendingUploads
    ) -> None:
        """Write the blob, verified. An upload this side kept in `pending` (a copy cut off earlier) is
        continued from the bytes it holds, `open_source` asked from there; a copy cut off now
        (UpstreamUnavailable, a cancel) keeps its upload there for the next try."""
        ...

    def put_manifest(self, repository: str, reference: str, manifest: ManifestData) -> None: ...

    def referrers(self, repository: str, digest: str) -> list[dict[str, Any]]: ...

    def delete_tag(self, repository: str, tag: str) -> None: ...
