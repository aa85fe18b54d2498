"""Copy blobs and unfinished uploads from one storage driver to another (filesystem to S3, say),
through the driver interface only, so any pair of drivers works.

A blob is streamed in chunks and hashed on the way; it lands at its content address in the target
(`FileWriter.commit_to`) only once its bytes match its digest and size, so a blob the target has is
always whole, and a run that stops half way leaves nothing wrong behind: the next run sees what is
there (same size at the same address) and copies the rest. Several blobs copy at once (`parallel`),
each holding one chunk and its writer's buffer: memory is bounded whatever the blobs' sizes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from enum import Enum
from typing import TypeVar

from dockyard.errors import PathNotFound, StorageError
from dockyard.maintenance.interfaces import COPY_CHUNK, MaintenanceError, Progress, hasher_for, read_chunks
from dockyard.storage.driver.base import StorageDriver
from dockyard.storage.paths import blob_data_path, new_upload_id, upload_data_path

T = TypeVar("T")
R = TypeVar("R")


class Copied(Enum):
    PRESENT = "present"  # the target had it already
    COPIED = "copied"
    MISSING = "missing"  # not in the source storage


def copy_blob(
    source: StorageDriver, target: StorageDriver, digest: str, size: int, progress: Progress
) -> Copied:
    """Make sure the target holds the blob; MaintenanceError if the source's bytes do not match it."""
    path = blob_data_path(digest)
    try:
        if target.stat(path).size == size:
            progress.advance(size)
            return Copied.PRESENT
    except PathNotFound:
        pass
    try:
        stream = source.open_read(path)
    except PathNotFound:
        progress.advance(size)
        return Copied.MISSING
    hasher = hasher_for(digest)
    # Written beside the content address and landed there once verified (commit_to): a reader of the
    # target never sees a partial or corrupt blob at its digest.
    writer = target.writer(upload_data_path(new_upload_id()))
    try:
        with stream:
            for chunk in read_chunks(stream):
                hasher.update(chunk)
                writer.write(chunk)
                progress.advance(len(chunk))
        actual = f"{digest.split(':', 1)[0]}:{hasher.hexdigest()}"
        if actual != digest or writer.size != size:
            raise MaintenanceError(
                f"blob {digest}: corrupt in the source storage ({writer.size} bytes hashing to {actual}); "
                "not copied"
            )
        writer.commit_to(path)
    except BaseException:
        writer.cancel()
        raise
    return Copied.COPIED


def copy_upload(source: StorageDriver, target: StorageDriver, upload_id: str, size: int) -> bool:
    """Carry an unfinished upload's first `size` bytes (what its session row records) over, left
    resumable in the target (`writer(path, append=True)`). False if the source cannot give them
    (a driver whose unfinished uploads are not readable, bytes gone): the upload is then dropped."""
    if size == 0:
        return True  # nothing stored yet: the session row is all there is
    path = upload_data_path(upload_id)
    try:
        stream = source.open_read(path)
    except (PathNotFound, StorageError):
        return False
    writer = target.writer(path)
    try:
        remaining = size
        with stream:
            while remaining and (chunk := stream.read(min(COPY_CHUNK, remaining))):
                writer.write(chunk)
                remaining -= len(chunk)
        if remaining:
            writer.cancel()
            return False
    except BaseException:
        writer.cancel()
        raise
    writer.close()
    return True


def parallel(
    items: Iterable[T], work: Callable[[T], R], workers: int
) -> Iterator[tuple[T, R | BaseException]]:
    """(item, result or the exception it raised) for every item, `workers` at a time (`work` must be
    thread-safe), with at most twice that many queued: the items are read lazily, so a long listing
    is never all in memory."""
    if workers <= 1:
        for item in items:
            try:
                yield item, work(item)
            except Exception as exc:
                yield item, exc
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="copy") as pool:
        running: dict[Future[R], T] = {}
        iterator = iter(items)
        exhausted = False
        while running or not exhausted:
            while not exhausted and len(running) < workers * 2:
                try:
                    item = next(iterator)
                except StopIteration:
                    exhausted = True
                    break
                running[pool.submit(work, item)] = item
            if not running:
                break
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                item = running.pop(future)
                error = future.exception()
                yield item, (error if error is not None else future.result())
