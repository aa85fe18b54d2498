"""An upload session's states and the moves between them, as data (see the package docstring).

    open ──append──▶ receiving ──chunk recorded──▶ open
      │                  │ (the request's last bytes, held for the commit it is about to make)
      ├──────────────────┼──verified, landed at the content address──▶ landed ──▶ committed
      ├──────────────────┴──the blob was stored already──────────────────────────▶ committed
      └─(any state but committed)──cancel, a failed chunk, a bad digest, a purge──▶ cancelled

`committed` and `cancelled` are final. A move the table does not allow is a bug or a request that raced
another; it raises UploadStateInvalid (the spec's BLOB_UPLOAD_INVALID), with nothing changed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from enum import Enum
from typing import Any

from dockyard.errors import BlobUploadInvalid


class UploadPhase(Enum):
    OPEN = "open"  # a row and a temp object; every byte of it recorded: any node may continue it
    RECEIVING = "receiving"  # one request writes bytes to it, holding the upload's lock
    LANDED = "landed"  # its verified bytes are at the content address; its row is not gone yet
    COMMITTED = "committed"  # the blob is recorded and linked, the row gone: final
    CANCELLED = "cancelled"  # the row and the bytes dropped: final


_OPEN, _RECEIVING, _LANDED = UploadPhase.OPEN, UploadPhase.RECEIVING, UploadPhase.LANDED
_COMMITTED, _CANCELLED = UploadPhase.COMMITTED, UploadPhase.CANCELLED

# Where a session may go from each state.
TRANSITIONS: Mapping[UploadPhase, frozenset[UploadPhase]] = {
    _OPEN: frozenset({_RECEIVING, _LANDED, _COMMITTED, _CANCELLED}),
    # Back to open once the chunk is recorded; on to the commit with the request's last bytes.
    _RECEIVING: frozenset({_OPEN, _LANDED, _COMMITTED, _CANCELLED}),
    # The blob row is recorded in the transaction that drops the upload's; a failed one (a full quota)
    # leaves the bytes at their address, harmless, and the upload is dropped.
    _LANDED: frozenset({_COMMITTED, _CANCELLED}),
    _COMMITTED: frozenset(),
    _CANCELLED: frozenset(),
}


class UploadStateInvalid(BlobUploadInvalid):
    """A move the upload's state does not allow (appending to an upload held for its commit, landing
    bytes twice, committing a cancelled upload...)."""

    message = "the upload cannot do that in its current state"


def check_move(upload_id: str, current: UploadPhase, new: UploadPhase) -> None:
    if new not in TRANSITIONS[current]:
        raise UploadStateInvalid(
            f"upload {upload_id} cannot go from {current.value} to {new.value}",
            detail={"uuid": upload_id, "state": current.value, "wanted": new.value},
        )


@dataclass(frozen=True, slots=True)
class UploadState:
    """What a request knows of an upload session: its row as read, and where it is in `TRANSITIONS`."""

    id: str
    repository: str
    size: int
    created_at: datetime
    # Who started it ("user:12", "robot:3"; None with auth off): only they may continue or cancel it.
    owner: str | None = None
    # The writer state `size` was recorded with (Upload.storage_token; None: nothing to check).
    token: str | None = None
    phase: UploadPhase = UploadPhase.OPEN
    # False for a session with no row (`UploadStore.create(recorded=False)`: a `POST ?digest=` whose
    # body is the whole blob, committed in the same request; nobody else ever learns its id).
    recorded: bool = True

    def moved(self, phase: UploadPhase, **changes: Any) -> UploadState:
        """This state in `phase` (with `changes`); UploadStateInvalid if the table does not allow it."""
        check_move(self.id, self.phase, phase)
        return replace(self, phase=phase, **changes)
