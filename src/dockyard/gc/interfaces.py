"""What garbage collection takes (options), reports, and needs from whoever runs it (progress).

See docs/gc.md for what is collected and why it is safe while the registry keeps serving.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol

from dockyard.config.durations import parse_duration
from dockyard.errors import Category, DockyardError

DEFAULT_MIN_AGE = timedelta(hours=2)
DEFAULT_BATCH_SIZE = 1000
DEFAULT_WORKERS = 8
LISTED_MAX = 1000  # a report lists at most this many digests of each kind (the counts are exact)


class GCOptionsInvalid(DockyardError):
    """A garbage collection parameter is not valid (bad duration, unknown option)."""

    category = Category.INVALID
    message = "invalid garbage collection options"


@dataclass(frozen=True)
class GCOptions:
    dry_run: bool = False
    delete_untagged: bool = False  # manifests no tag, index or kept subject keeps (docs/gc.md)
    delete_referrers_with_subject: bool = False  # signatures, SBOMs... go when their subject goes
    min_age: timedelta = DEFAULT_MIN_AGE  # the safety window: younger content is never collected
    batch_size: int = DEFAULT_BATCH_SIZE  # rows per delete transaction
    workers: int = DEFAULT_WORKERS  # threads deleting storage objects

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> GCOptions:
        """Options from a job's JSON params: dry_run, delete_untagged, delete_referrers_with_subject
        (booleans), min_age ("2h", "90m", "0s" or seconds), batch_size, workers."""
        unknown = sorted(set(params) - set(cls().as_params()))
        if unknown:
            raise GCOptionsInvalid(f"unknown garbage collection option(s): {', '.join(unknown)}")
        values: dict[str, Any] = {}
        for name in ("dry_run", "delete_untagged", "delete_referrers_with_subject"):
            if name in params:
                if not isinstance(params[name], bool):
                    raise GCOptionsInvalid(f"{name} must be true or false")
                values[name] = params[name]
        if params.get("min_age") is not None:
            values["min_age"] = parse_min_age(params["min_age"])
        for name in ("batch_size", "workers"):
            if name in params:
                value = params[name]
                if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 10_000:
                    raise GCOptionsInvalid(f"{name} must be a whole number from 1 to 10000")
                values[name] = value
        return cls(**values)

    def as_params(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "delete_untagged": self.delete_untagged,
            "delete_referrers_with_subject": self.delete_referrers_with_subject,
            "min_age": f"{int(self.min_age.total_seconds())}s",
            "batch_size": self.batch_size,
            "workers": self.workers,
        }


def parse_min_age(value: Any) -> timedelta:
    """A duration ("2h", "30m", "0s") or a number of seconds; never negative."""
    try:
        seconds = float(value) if isinstance(value, int | float) else parse_duration(str(value))
    except Exception as exc:
        raise GCOptionsInvalid(f"min_age: {value!r} is not a duration (e.g. 2h, 30m, 0s)") from exc
    if seconds < 0:
        raise GCOptionsInvalid("min_age must not be negative")
    return timedelta(seconds=seconds)


@dataclass
class GCReport:
    dry_run: bool
    min_age_seconds: float
    manifests_deleted: int = 0
    blobs_deleted: int = 0
    blob_bytes_freed: int = 0
    manifest_bytes_freed: int = 0
    storage_delete_failures: int = 0  # rows gone, file left behind (harmless; retried by nothing)
    duration_seconds: float = 0.0
    # "repository@digest" of the manifests and digests of the blobs deleted (or that would be), capped.
    manifests: list[str] = field(default_factory=list)
    blobs: list[str] = field(default_factory=list)

    @property
    def bytes_freed(self) -> int:
        return self.blob_bytes_freed + self.manifest_bytes_freed

    def as_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "min_age_seconds": self.min_age_seconds,
            "manifests_deleted": self.manifests_deleted,
            "blobs_deleted": self.blobs_deleted,
            "bytes_freed": self.bytes_freed,
            "blob_bytes_freed": self.blob_bytes_freed,
            "manifest_bytes_freed": self.manifest_bytes_freed,
            "storage_delete_failures": self.storage_delete_failures,
            "duration_seconds": round(self.duration_seconds, 3),
            "manifests": self.manifests,
            "blobs": self.blobs,
        }

    def note_manifest(self, name: str, size: int) -> None:
        self.manifests_deleted += 1
        self.manifest_bytes_freed += size
        if len(self.manifests) < LISTED_MAX:
            self.manifests.append(name)

    def note_blob(self, digest: str, size: int) -> None:
        self.blobs_deleted += 1
        self.blob_bytes_freed += size
        if len(self.blobs) < LISTED_MAX:
            self.blobs.append(digest)


class GCProgress(Protocol):
    """What the collector reports to and asks of its runner; a job's JobContext is one."""

    def log(self, line: str) -> None: ...

    def progress(self, done: int, total: int | None = None) -> None: ...

    def check_cancelled(self) -> None: ...


class QuietProgress:
    """Progress for a run nobody watches (tests, scripts)."""

    def log(self, line: str) -> None:
        pass

    def progress(self, done: int, total: int | None = None) -> None:
        pass

    def check_cancelled(self) -> None:
        pass
