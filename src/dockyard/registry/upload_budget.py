"""What one request may add to an upload: no upload holds more than `storage.uploads.max_size`, and in a
project with a quota the bytes of its uploads in progress stay within its room (projects.upload_room).

The edge checks a declared length before it reads a byte (`check`), then asks for every piece of the body
as it arrives (`take`) and stops reading at the first that does not fit (`refusal`): the upload keeps
what fitted, consistent, and the client may cancel it or the purge remove it.
"""

from __future__ import annotations

from dockyard.errors import DockyardError, UploadTooLarge
from dockyard.projects.sizes import human
from dockyard.projects.upload_room import UploadRoom


class UploadBudget:
    def __init__(self, max_size: int, size: int, room: UploadRoom | None) -> None:
        self._max_size = max_size
        self._size = size  # the upload's bytes before this request
        self._room = room  # None: the project has no limit
        self.taken = 0

    def check(self, declared: int | None) -> None:
        """Refuse a body of `declared` bytes that could not fit, before any of it is read."""
        if declared is None:
            return
        if self._size + declared > self._max_size:
            raise self._too_large(declared)
        if self._room is not None and declared > self._room.available():
            raise self._room.exceeded(declared)

    def take(self, wanted: int) -> int:
        """How many of the next `wanted` bytes fit (counted as taken); thread-safe."""
        granted = max(0, min(wanted, self._max_size - self._size - self.taken))
        if self._room is not None and granted > 0:
            granted = self._room.take(granted)
        self.taken += granted
        return granted

    def refusal(self, refused: int) -> DockyardError:
        """Why `refused` bytes past those taken did not fit."""
        if self._size + self.taken + refused > self._max_size or self._room is None:
            return self._too_large(refused)
        return self._room.exceeded(refused)

    def settle(self, recorded: bool) -> None:
        """The request ended; `recorded`: its bytes are in the upload's recorded size."""
        if self._room is not None:
            self._room.settle(recorded)

    def _too_large(self, wanted: int) -> UploadTooLarge:
        return UploadTooLarge(
            f"an upload may hold at most {human(self._max_size)} (storage.uploads.max_size); "
            f"this one would hold {human(self._size + self.taken + wanted)}",
            detail={"max_size": self._max_size, "size": self._size + self.taken + wanted},
        )
