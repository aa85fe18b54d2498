"""A policy's pending uploads (interfaces.PendingUploads): where each blob copy that was cut off midway
continues, kept as a small JSON object on the policy's row, so the next run finds it whichever worker
runs it. Keys are `repository@digest` on the destination; values a local upload's id or a remote
upload's URL.

Only copies that were cut off, or that ran past sides.RECORD_EVERY bytes, are written here: a run of
small blobs costs no write. Each change is a read-modify-write of the row in one transaction (with a row
lock on PostgreSQL), so concurrent copies of one run do not lose each other's entries. An entry whose
upload is gone (purged, committed by another run) is dropped by the side that finds it so.

One object serves one run: the entries are read once, on the first `get`, and kept with the run's own
changes, where a read per blob sent was 5% of the job runner's CPU in scripts/bench_replication.py. An
entry another run writes meanwhile is not seen: that blob is sent afresh, and the other's upload purged
as stale."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select, update

from dockyard.db.session import Database
from dockyard.replication.models import ReplicationPolicyRow

MAX_PENDING = 256  # entries a policy keeps; the oldest go first (their uploads are purged as stale)


class PolicyPendingUploads:
    def __init__(self, db: Database, policy: str) -> None:
        self._db = db
        self._policy = policy
        self._known: dict[str, str] | None = None  # the row's entries as this run last read or wrote them

    def get(self, repository: str, digest: str) -> str | None:
        known = self._known
        if known is None:
            with self._db.read() as connection:
                known = self._known = _load(connection.scalar(self._select()))
        return known.get(_key(repository, digest))

    def put(self, repository: str, digest: str, upload: str) -> None:
        def change(entries: dict[str, str]) -> None:
            entries.pop(_key(repository, digest), None)  # to the end: the newest
            entries[_key(repository, digest)] = upload
            while len(entries) > MAX_PENDING:
                entries.pop(next(iter(entries)))

        self._change(change)

    def drop(self, repository: str, digest: str) -> None:
        self._change(lambda entries: entries.pop(_key(repository, digest), None))

    def _change(self, change: Any) -> None:
        with self._db.write() as connection:
            entries = _load(connection.scalar(self._select().with_for_update()))
            before = dict(entries)
            change(entries)
            if entries != before:
                connection.execute(
                    update(ReplicationPolicyRow)
                    .where(ReplicationPolicyRow.name == self._policy)
                    .values(pending_uploads=json.dumps(entries) if entries else None)
                )
        self._known = entries  # committed

    def _select(self) -> Any:
        return select(ReplicationPolicyRow.pending_uploads).where(ReplicationPolicyRow.name == self._policy)


def _key(repository: str, digest: str) -> str:
    return f"{repository}@{digest}"


def _load(text: str | None) -> dict[str, str]:
    if not text:
        return {}
    try:
        loaded = json.loads(text)
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in loaded.items()} if isinstance(loaded, dict) else {}
