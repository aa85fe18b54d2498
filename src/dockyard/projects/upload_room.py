"""How many bytes a request may add to an upload in progress, in a project with a quota.

The bytes of a project's open uploads count against its quota as they arrive: each session's size
(`uploads.size`, recorded when a request ends, in the statement that records its progress anyway)
plus what requests of this process are streaming into them right now. With L the limit, U the usage
(committed content), O those open bytes (this upload's own included) and S this upload's size, a
request may add bytes while either rule holds:

- new content: O stays within L - U, the room the project has;
- content the project may already hold (it costs nothing once committed, and skopeo and podman re-send
  such blobs as POST, PATCH, PUT): with the digest known and counted in the project (size H), or, before
  the digest is known, no bigger than the largest blob the project counts (H): S stays within H and O
  within L. So a full project still takes a re-upload of what it holds, and never more than its limit
  again in uploads in progress.

Past both, the request is refused with QuotaExceeded (the edge stops reading the body) and the upload
keeps what had arrived, so the client can cancel it or the purge remove it. Requests of one process
share the room byte by byte (`OpenUploads`); a request on another process or node sees what this one has
recorded, not what it is streaming, so together they can pass the bound by what they stream at once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, func, select

from dockyard.projects.interfaces import QuotaExceeded
from dockyard.projects.models import ProjectBlobRow, ProjectRow
from dockyard.projects.sizes import human
from dockyard.storage.models import Upload


@dataclass(frozen=True, slots=True)
class Rule:
    ceiling: int  # the most the project's open uploads may hold together
    own: int | None  # the most this upload may hold (None: no bound of its own)


class OpenUploads:
    """Per project, the bytes requests of this process are streaming into uploads (not yet recorded),
    and a running count of the bytes they recorded, so a request that read the recorded sizes earlier
    still sees what was recorded since."""

    def __init__(self, on_refusal: Callable[[QuotaExceeded], None] | None = None) -> None:
        self._lock = threading.Lock()
        self._streaming: dict[str, int] = {}
        self._recorded: dict[str, int] = {}
        self.on_refusal = on_refusal  # told of each refusal (webhook policies' quota events)

    def mark(self, project: str) -> int:
        with self._lock:
            return self._recorded.get(project, 0)


class UploadRoom:
    """One request's share of a project's room (see the module docstring). Thread-safe."""

    def __init__(
        self,
        ledger: OpenUploads,
        project: str,
        used: int,
        limit: int,
        open_bytes: int,
        mark: int,
        size: int,
        rules: Sequence[Rule],
    ) -> None:
        self._ledger = ledger
        self.project = project
        self._used = used
        self._limit = limit
        self._open = open_bytes  # as recorded when the request began, this upload's `size` included
        self._mark = mark
        self._size = size
        self._rules = tuple(rules)
        self.taken = 0

    def _seen(self) -> int:
        """Open bytes of the project as this request sees them now (its own streamed ones included)."""
        ledger = self._ledger
        since = ledger._recorded.get(self.project, 0) - self._mark
        return self._open + since + ledger._streaming.get(self.project, 0)

    def _grant(self, wanted: int) -> int:
        seen = self._seen()
        best = 0
        for rule in self._rules:
            granted = min(wanted, rule.ceiling - seen)
            if rule.own is not None:
                granted = min(granted, rule.own - self._size - self.taken)
            best = max(best, granted)
        return best

    def available(self) -> int:
        """How many bytes this request may still add."""
        with self._ledger._lock:
            return self._grant(self._limit + self._size + 1)  # more than any rule allows

    def take(self, wanted: int) -> int:
        """Count up to `wanted` more bytes of this request; returns how many fit (0 to wanted)."""
        ledger = self._ledger
        with ledger._lock:
            granted = self._grant(wanted)
            if granted > 0:
                ledger._streaming[self.project] = ledger._streaming.get(self.project, 0) + granted
                self.taken += granted
        return granted

    def settle(self, recorded: bool) -> None:
        """The request ended: its bytes are recorded in the upload's size (recorded), or are not open
        bytes any more (committed, dropped) or never were (the request failed before recording)."""
        ledger = self._ledger
        with ledger._lock:
            left = ledger._streaming.get(self.project, 0) - self.taken
            if left > 0:
                ledger._streaming[self.project] = left
            else:
                ledger._streaming.pop(self.project, None)
            if recorded:
                ledger._recorded[self.project] = ledger._recorded.get(self.project, 0) + self.taken
            self.taken = 0

    def exceeded(self, wanted: int) -> QuotaExceeded:
        """The refusal of `wanted` bytes more than this request took."""
        with self._ledger._lock:
            others = max(self._seen() - self._size - self.taken, 0)  # the project's other open uploads
        size = self._size + self.taken + wanted
        refusal = QuotaExceeded(
            f"quota of project {self.project} exceeded: used {human(self._used)}, "
            f"other uploads in progress {human(others)}, limit {human(self._limit)}, "
            f"this blob {human(size)}",
            detail={
                "project": self.project,
                "used_bytes": self._used,
                "open_upload_bytes": others,
                "limit_bytes": self._limit,
                "size": size,
            },
        )
        if self._ledger.on_refusal is not None:
            self._ledger.on_refusal(refusal)
        return refusal


def read_room(
    connection: Connection,
    ledger: OpenUploads,
    project: str,
    size: int,
    digest: str | None,
) -> tuple[int | None, UploadRoom | None]:
    """(the project's limit, the request's room) in one statement; (None, None) for a project without a
    limit or not created yet."""
    mark = ledger.mark(project)  # before the read: bytes recorded meanwhile count twice, never zero times
    open_bytes = (
        select(func.coalesce(func.sum(Upload.size), 0)).where(Upload.project == project).scalar_subquery()
    )
    held = select(ProjectBlobRow.size).where(ProjectBlobRow.project_id == ProjectRow.id)
    if digest is not None:
        held = held.where(ProjectBlobRow.digest == digest)
    else:
        held = select(func.max(ProjectBlobRow.size)).where(ProjectBlobRow.project_id == ProjectRow.id)
    row = connection.execute(
        select(
            ProjectRow.quota_used_bytes,
            ProjectRow.quota_limit_bytes,
            open_bytes.label("open_bytes"),
            held.scalar_subquery().label("held"),
        ).where(ProjectRow.name == project)
    ).first()
    if row is None or row.quota_limit_bytes is None:
        return None, None
    used, limit = int(row.quota_used_bytes), int(row.quota_limit_bytes)
    rules = [Rule(limit - used, None)]
    if row.held is not None:
        rules.append(Rule(limit, int(row.held)))
    room = UploadRoom(ledger, project, used, limit, int(row.open_bytes), mark, size, rules)
    return limit, room
