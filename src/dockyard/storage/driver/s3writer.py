"""The S3 driver's writer: one path's bytes as an S3 multipart upload.

Bytes are buffered to `chunksize` (at least the 5 MiB S3 minimum
part size, and the default: the buffer is each upload's memory) and uploaded as parts, a few at once
(`s3parts`); every 1000 parts the part size grows by one chunksize, so S3's 10,000 parts still hold
55,000 chunksizes (268 GiB at 5 MiB); a writer that never reaches one part
commits with a single PutObject. A part that fails aborts the whole upload (and its sidecar), so a
writer never leaves a blob with a hole in it. `close()` without commit waits for the parts in flight
and persists the writer's state in one *sidecar* object at
`{rootdirectory}/.~uploads/{path}`: a JSON line (upload id, parts with their ETags, sizes) followed by
the buffered tail that is still below the minimum part size. One PUT makes it atomic, and any process
resumes it with `writer(path, append=True)`. `~` is not allowed in a path segment, so the sidecar tree
never collides with a stored path and listings skip it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from dockyard.errors import StorageError
from dockyard.storage.driver.s3errors import NOT_FOUND_CODES, error_code, s3_errors
from dockyard.storage.driver.s3parts import PartUploader

if TYPE_CHECKING:
    from dockyard.storage.driver.s3 import S3Driver

MiB = 1 << 20
MIN_PART_SIZE = 5 * MiB  # S3's minimum size of every part but the last
MAX_PART_SIZE = 5 * 1024 * MiB
PARTS_PER_SIZE_STEP = 1000  # see the module docstring: parts grow so 10,000 of them hold a big blob


class S3FileWriter:
    """Buffers to the driver's chunksize and uploads full parts as it goes, several at a time (see
    s3parts); any failure aborts the whole upload (see the module docstring)."""

    def __init__(
        self,
        driver: S3Driver,
        path: str,
        key: str,
        upload_id: str | None = None,
        parts: list[dict[str, Any]] | None = None,
        tail: bytes = b"",
        pending: bool = False,
        from_object: bool = False,
    ) -> None:
        self._driver = driver
        self._client = driver.client
        self._path = path
        self._key = key
        self._upload_id = upload_id
        self._parts: list[dict[str, Any]] = parts or []  # uploaded and acknowledged, by part number
        self._next_part = len(self._parts) + 1
        self._sent = sum(part["size"] for part in self._parts)  # bytes in parts, in flight included
        self._uploader: PartUploader | None = None
        self._buffer = bytearray(tail)
        self._pending = pending  # a sidecar may exist for this path
        self._from_object = from_object  # resumed a committed object at the path
        self._finished = False
        self._fingerprint: str | None = None  # of the sidecar this writer resumed or wrote

    @classmethod
    def resume(cls, driver: S3Driver, path: str, key: str, from_object: bool = True) -> S3FileWriter:
        """The writer a previous one closed; with from_object, else appending to the committed object."""
        with s3_errors(path):
            try:
                body = driver.client.get_object(Bucket=driver.bucket, Key=driver._pending_key(path))["Body"]
                state_line, _, tail = body.read().partition(b"\n")
            except ClientError as exc:
                if error_code(exc) not in NOT_FOUND_CODES or not from_object:
                    raise
                return cls._append_to_object(driver, path, key)
        state = json.loads(state_line)
        if len(tail) != state["tail"]:
            raise StorageError(f"corrupt upload state for {path}")
        writer = cls(driver, path, key, state["upload_id"], state["parts"], tail, pending=True)
        writer._fingerprint = _fingerprint(state_line + b"\n" + tail)
        return writer

    @classmethod
    def _append_to_object(cls, driver: S3Driver, path: str, key: str) -> S3FileWriter:
        """Append to a committed object: a small one is read back, a large one copied in as parts."""
        size = int(driver.client.head_object(Bucket=driver.bucket, Key=key)["ContentLength"])
        if size < MIN_PART_SIZE:
            return cls(driver, path, key, tail=driver.get_content(path), from_object=True)
        upload_id = driver.client.create_multipart_upload(Bucket=driver.bucket, Key=key)["UploadId"]
        parts = driver._copy_parts(key, key, upload_id, size, first_part=1)
        return cls(driver, path, key, upload_id, parts, from_object=True)

    @property
    def size(self) -> int:
        return self._sent + len(self._buffer)

    @property
    def fingerprint(self) -> str | None:
        """Of the sidecar: S3 has no lock, so two writers on one path (requests on two nodes) may each
        resume or start one and close over the other's; the state recorded beside the upload's size says
        which the size belongs to."""
        return self._fingerprint

    def _check_open(self) -> None:
        if self._finished:
            raise StorageError(f"writer for {self._path} is already closed")

    @contextmanager
    def _aborting_on_error(self) -> Iterator[None]:
        """A part that failed leaves a hole in the upload: abort it all, so nothing half-written can be
        resumed or committed, and finish the writer."""
        try:
            with s3_errors(self._path):
                yield
        except BaseException:
            self._finished = True
            self._buffer = bytearray()
            with suppress(ClientError, BotoCoreError):
                self.cancel_pending()  # waits for the parts still running first
            raise

    def write(self, data: bytes) -> int:
        """Fill the buffer up to a part boundary and hand the full buffer itself to the part upload
        (no copy), so one writer holds at most one part's bytes besides its parts in flight."""
        self._check_open()
        with memoryview(data) as view, self._aborting_on_error():
            offset = 0
            while offset < view.nbytes:
                part_size = self._part_size()
                room = part_size - len(self._buffer)
                self._buffer += view[offset : offset + room]
                offset += room
                if len(self._buffer) >= part_size:
                    self._upload_part(len(self._buffer))
            return view.nbytes

    def _part_size(self) -> int:
        step = (self._next_part - 1) // PARTS_PER_SIZE_STEP
        return min(self._driver.chunksize * (1 + step), MAX_PART_SIZE)

    def _upload_part(self, length: int) -> None:
        """Start uploading the first length buffered bytes as the next part."""
        if self._upload_id is None:
            created = self._client.create_multipart_upload(Bucket=self._driver.bucket, Key=self._key)
            self._upload_id = created["UploadId"]
        if self._uploader is None:
            driver = self._driver
            self._uploader = PartUploader(
                self._client,
                driver.bucket,
                self._key,
                self._upload_id,
                driver.part_concurrency,
                driver.parts_budget,
                driver.part_threads(),
            )
        if length == len(self._buffer):  # the usual case: hand the buffer over, no copy
            body, self._buffer = self._buffer, bytearray()
        else:
            body = self._buffer[:length]
            del self._buffer[:length]
        self._uploader.submit(self._next_part, body)
        self._next_part += 1
        self._sent += length

    def _wait_for_parts(self) -> None:
        if self._uploader is not None:
            self._parts.extend(self._uploader.finish())
            self._uploader = None

    def truncate(self, size: int) -> None:
        """Only within the buffered tail: bytes already sent as parts stay (S3 cannot cut a part)."""
        self._check_open()
        if not 0 <= size <= self.size:
            raise ValueError(f"cannot truncate {self._path} to {size} bytes: it has {self.size}")
        if size < self._sent:
            raise StorageError(f"cannot truncate {self._path} below the {self._sent} bytes sent as parts")
        del self._buffer[size - self._sent :]

    def close(self) -> None:
        """Persist the state (upload id, parts, the tail below the minimum part size) for a resume."""
        if self._finished:
            return
        with self._aborting_on_error():
            if len(self._buffer) >= MIN_PART_SIZE:  # big enough to be a part: no need to keep it aside
                self._upload_part(len(self._buffer))
            self._wait_for_parts()
            self._finished = True
            state = {"upload_id": self._upload_id, "parts": self._parts, "tail": len(self._buffer)}
            sidecar = json.dumps(state).encode() + b"\n" + bytes(self._buffer)
            self._client.put_object(
                Bucket=self._driver.bucket, Key=self._driver._pending_key(self._path), Body=sidecar
            )
            self._fingerprint = _fingerprint(sidecar)
        self._buffer = bytearray()

    def commit(self) -> None:
        self._check_open()
        bucket = self._driver.bucket
        with self._aborting_on_error():
            if self._upload_id is None:  # never reached a part: one direct put
                self._client.put_object(Bucket=bucket, Key=self._key, Body=self._buffer)
            else:
                if self._buffer or self._next_part == 1:
                    self._upload_part(len(self._buffer))
                self._wait_for_parts()
                self._driver._complete(self._key, self._upload_id, self._parts)
            self._finished = True
            self._buffer = bytearray()
            self._delete_sidecar()

    def commit_to(self, dest: str) -> None:
        """What fits in one part is one PutObject at dest. A multipart upload (its key is fixed when it
        starts) completes at the path, is copied to dest and deleted: no HEAD, the size is known."""
        self._check_open()
        dest_key = self._driver._key(dest)
        bucket = self._driver.bucket
        with self._aborting_on_error():
            if self._upload_id is None:
                self._client.put_object(Bucket=bucket, Key=dest_key, Body=self._buffer)
                leftover = self._from_object
            else:
                size = self.size
                if self._buffer or self._next_part == 1:
                    self._upload_part(len(self._buffer))
                self._wait_for_parts()
                self._driver._complete(self._key, self._upload_id, self._parts)
                self._upload_id = None  # completed: nothing left to abort
                if dest_key != self._key:
                    self._driver._copy(self._key, dest_key, size)
                leftover = True
            self._finished = True
            self._buffer = bytearray()
            if leftover and dest_key != self._key:
                self._client.delete_object(Bucket=bucket, Key=self._key)
            self._delete_sidecar()

    def cancel(self) -> None:
        """Abort the upload and remove the sidecar and any object at the path."""
        self._finished = True
        self._buffer = bytearray()
        with s3_errors(self._path):
            self.cancel_pending()
            self._client.delete_object(Bucket=self._driver.bucket, Key=self._key)

    def cancel_pending(self) -> None:
        """Abort the multipart upload and remove the sidecar, leaving any committed object alone."""
        self._finished = True
        if self._uploader is not None:
            self._uploader.abandon()
            self._uploader = None
        if self._upload_id is not None:
            try:
                self._client.abort_multipart_upload(
                    Bucket=self._driver.bucket, Key=self._key, UploadId=self._upload_id
                )
            except ClientError as exc:
                if error_code(exc) not in NOT_FOUND_CODES:
                    raise
            self._upload_id = None
        self._delete_sidecar()

    def _delete_sidecar(self) -> None:
        if self._pending:
            self._client.delete_object(Bucket=self._driver.bucket, Key=self._driver._pending_key(self._path))
            self._pending = False


def _fingerprint(sidecar: bytes) -> str:
    return hashlib.sha256(sidecar).hexdigest()[:32]
