"""Bytes in any S3-compatible object store (AWS S3, Ceph RGW, SeaweedFS, MinIO), like registry:2's s3 driver.

A path is the key `{rootdirectory}/{path}`. Directories are implicit: a directory exists while a real
object exists below it. "Directory" marker objects (keys ending in `/`) and the empty folders some
stores keep after a delete (SeaweedFS shows them as common prefixes) are ignored, so `list` and `stat`
read flat listings rather than trusting the store's common prefixes.

Writers map onto multipart uploads (`s3writer`, whose parts upload a few at once: `s3parts`); a closed,
uncommitted writer leaves its state in a sidecar object under `{rootdirectory}/.~uploads/`, which
listings skip.
"""

from __future__ import annotations

import builtins
import io
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from typing import Any, BinaryIO, cast

import boto3
from botocore.client import Config
from botocore.exceptions import ClientError

from dockyard.errors import PathNotFound
from dockyard.storage.driver.base import (
    FileInfo,
    FileWriter,
    PathLock,
    delete_each,
    is_valid_segment,
)
from dockyard.storage.driver.locks import ProcessLocks
from dockyard.storage.driver.s3errors import NOT_FOUND_CODES, error_code, s3_errors
from dockyard.storage.driver.s3writer import MIN_PART_SIZE, S3FileWriter

MiB = 1 << 20
# registry:2 buffers 10 MiB; half that halves each upload's buffer and the parts in flight.
DEFAULT_CHUNK_SIZE = MIN_PART_SIZE
MAX_COPY_OBJECT_SIZE = 5 * 1024 * MiB  # larger objects are copied part by part
COPY_PART_SIZE = 1024 * MiB
# Parts one writer uploads at once, and parts in flight in the whole process. Each part in flight
# holds its bytes (and its thread a malloc arena): with 4 per process, one lone upload goes 4 parts
# at a time while many uploads at once hold no more than 4 serial writers did (measured: the same
# peak RSS with 4 writers of 64 MiB; 8 per process cost 60-120 MiB more).
DEFAULT_PART_CONCURRENCY = 4
DEFAULT_PARTS_IN_FLIGHT = 4
PENDING_DIR = ".~uploads"
# Sorts after every valid key below a directory (segments are ASCII below 0x7f), so a listing can
# skip a whole subtree with StartAfter.
_SUBTREE_END = "/\x7f"


class S3Driver:
    name = "s3"
    list_page_size = 1000  # keys per ListObjectsV2 request (S3's maximum)

    def __init__(
        self,
        bucket: str,
        *,
        client: Any = None,
        region: str | None = None,
        endpoint_url: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        rootdirectory: str = "",
        chunksize: int = DEFAULT_CHUNK_SIZE,
        force_path_style: bool = False,
        v4auth: bool = True,
        verify: bool = True,
        part_concurrency: int = DEFAULT_PART_CONCURRENCY,
        parts_in_flight: int = DEFAULT_PARTS_IN_FLIGHT,
    ) -> None:
        if chunksize < MIN_PART_SIZE:
            raise ValueError(f"chunksize {chunksize} is below S3's minimum part size {MIN_PART_SIZE}")
        if part_concurrency < 1 or parts_in_flight < 1:
            raise ValueError("part_concurrency and parts_in_flight must be at least 1")
        self.bucket = bucket
        self.chunksize = chunksize
        self.part_concurrency = part_concurrency
        self.parts_budget = threading.BoundedSemaphore(parts_in_flight)
        self._parts_in_flight = parts_in_flight
        self._part_threads: ThreadPoolExecutor | None = None
        self._part_threads_lock = threading.Lock()
        # Other nodes cannot see these: S3 offers no lock, so only this process's threads are excluded.
        self._locks = ProcessLocks(exclusive=False)
        root = rootdirectory.strip("/")
        self._root = f"{root}/" if root else ""
        if client is None:
            config = Config(
                signature_version="s3v4" if v4auth else "s3",
                s3={"addressing_style": "path" if force_path_style else "auto"},
                retries={"max_attempts": 5, "mode": "standard"},
                max_pool_connections=32,
                # Newer botocore adds CRC checksums many S3-compatible stores reject; send them only
                # where the API requires one.
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            )
            client = boto3.client(
                "s3",
                region_name=region or "us-east-1",
                endpoint_url=endpoint_url,
                aws_access_key_id=access_key,
                aws_secret_access_key=secret_key,
                config=config,
                verify=verify,
            )
        self.client = client

    def part_threads(self) -> ThreadPoolExecutor:
        """The threads every writer's parts upload on (made on first use: after a fork, in the worker)."""
        with self._part_threads_lock:
            if self._part_threads is None:
                self._part_threads = ThreadPoolExecutor(self._parts_in_flight, thread_name_prefix="s3-part")
            return self._part_threads

    # --- keys ---------------------------------------------------------------------------------
    def _key(self, path: str) -> str:
        return self._root + path

    def _pending_key(self, path: str) -> str:
        return f"{self._root}{PENDING_DIR}/{path}"

    def _keys_below(self, prefix: str, start_after: str = "") -> Iterator[dict[str, Any]]:
        """Every object under prefix, directory markers included, in key order."""
        paginator = self.client.get_paginator("list_objects_v2")
        pages = paginator.paginate(Bucket=self.bucket, Prefix=prefix, StartAfter=start_after)
        for page in pages:
            yield from page.get("Contents", [])

    def _has_objects(self, prefix: str) -> bool:
        return any(not obj["Key"].endswith("/") for obj in self._keys_below(prefix))

    # --- reading ------------------------------------------------------------------------------
    def get_content(self, path: str) -> bytes:
        key = self._key(path)
        with s3_errors(path):
            return cast(bytes, self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read())

    def open_read(self, path: str, offset: int = 0) -> BinaryIO:
        key = self._key(path)
        if offset < 0:
            raise ValueError(f"negative read offset {offset}")
        extra = {"Range": f"bytes={offset}-"} if offset else {}
        with s3_errors(path):
            try:
                response = self.client.get_object(Bucket=self.bucket, Key=key, **extra)
            except ClientError as exc:
                if error_code(exc) != "InvalidRange":
                    raise
                self.client.head_object(Bucket=self.bucket, Key=key)  # past the end of a real file
                return io.BytesIO(b"")
        return cast(BinaryIO, response["Body"])

    def stat(self, path: str) -> FileInfo:
        key = self._key(path)
        with s3_errors(path):
            try:
                head = self.client.head_object(Bucket=self.bucket, Key=key)
                return FileInfo(path, int(head["ContentLength"]), head["LastModified"].timestamp())
            except ClientError as exc:
                if error_code(exc) not in NOT_FOUND_CODES:
                    raise
            if self._has_objects(key + "/"):
                return FileInfo(path, 0, 0.0, is_dir=True)
        raise PathNotFound(f"path not found: {path}")

    def list(self, path: str) -> list[str]:
        prefix = self._root if path == "" else self._key(path) + "/"
        children: set[str] = set()
        start_after = ""
        with s3_errors(path):
            # A flat listing, jumping over each subtree once one real object in it was seen.
            while True:
                response = self.client.list_objects_v2(
                    Bucket=self.bucket, Prefix=prefix, StartAfter=start_after, MaxKeys=self.list_page_size
                )
                contents = response.get("Contents", [])
                for obj in contents:
                    if not obj["Key"].endswith("/"):  # not a directory marker
                        children.add(obj["Key"][len(prefix) :].split("/", 1)[0])
                if not response.get("IsTruncated") or not contents:
                    break
                last = contents[-1]["Key"]
                name, below, _ = last[len(prefix) :].partition("/")
                start_after = prefix + name + _SUBTREE_END if below else last
        names = sorted(name for name in children if is_valid_segment(name))
        if not names and path != "":
            raise PathNotFound(f"path not found: {path}")
        return [f"{path}/{name}" if path else name for name in names]

    # --- writing ------------------------------------------------------------------------------
    def put_content(self, path: str, data: bytes) -> None:
        key = self._key(path)
        with s3_errors(path):
            self.client.put_object(Bucket=self.bucket, Key=key, Body=bytes(data))

    def writer(self, path: str, append: bool = False) -> FileWriter:
        key = self._key(path)
        if append:
            return S3FileWriter.resume(self, path, key)
        # A fresh writer replaces whatever upload a previous writer left pending here.
        with suppress(PathNotFound), s3_errors(path):
            S3FileWriter.resume(self, path, key, from_object=False).cancel_pending()
        return S3FileWriter(self, path, key)

    def move(self, source: str, dest: str) -> None:
        source_key, dest_key = self._key(source), self._key(dest)
        with s3_errors(source):
            size = int(self.client.head_object(Bucket=self.bucket, Key=source_key)["ContentLength"])
            if source_key == dest_key:
                return
            self._copy(source_key, dest_key, size)
            self.client.delete_object(Bucket=self.bucket, Key=source_key)

    def _copy(self, source_key: str, dest_key: str, size: int) -> None:
        """One CopyObject, or a multipart copy for an object above CopyObject's 5 GiB limit."""
        if size <= MAX_COPY_OBJECT_SIZE:
            self.client.copy_object(
                Bucket=self.bucket, Key=dest_key, CopySource={"Bucket": self.bucket, "Key": source_key}
            )
            return
        upload_id = self.client.create_multipart_upload(Bucket=self.bucket, Key=dest_key)["UploadId"]
        try:
            parts = self._copy_parts(source_key, dest_key, upload_id, size, first_part=1)
            self._complete(dest_key, upload_id, parts)
        except BaseException:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=dest_key, UploadId=upload_id)
            raise

    def _copy_parts(
        self, source_key: str, dest_key: str, upload_id: str, size: int, first_part: int
    ) -> builtins.list[dict[str, Any]]:
        """UploadPartCopy source into upload_id in COPY_PART_SIZE ranges; the parts written."""
        parts = []
        for number, start in enumerate(range(0, size, COPY_PART_SIZE), start=first_part):
            end = min(start + COPY_PART_SIZE, size) - 1
            result = self.client.upload_part_copy(
                Bucket=self.bucket,
                Key=dest_key,
                UploadId=upload_id,
                PartNumber=number,
                CopySource={"Bucket": self.bucket, "Key": source_key},
                CopySourceRange=f"bytes={start}-{end}",
            )
            parts.append({"n": number, "etag": result["CopyPartResult"]["ETag"], "size": end - start + 1})
        return parts

    def _complete(self, key: str, upload_id: str, parts: builtins.list[dict[str, Any]]) -> None:
        self.client.complete_multipart_upload(
            Bucket=self.bucket,
            Key=key,
            UploadId=upload_id,
            MultipartUpload={"Parts": [{"PartNumber": p["n"], "ETag": p["etag"]} for p in parts]},
        )

    def delete(self, path: str) -> None:
        key = self._key(path)
        with s3_errors(path):
            keys = [obj["Key"] for obj in self._keys_below(key + "/")]
            found = any(not k.endswith("/") for k in keys)
            try:
                self.client.head_object(Bucket=self.bucket, Key=key)
                keys.append(key)
                found = True
            except ClientError as exc:
                if error_code(exc) not in NOT_FOUND_CODES:
                    raise
            pending = self._pending_below(path)
            if not found and not pending:
                raise PathNotFound(f"path not found: {path}")
            for pending_path in pending:  # abort uploads closed but never committed
                with suppress(PathNotFound):
                    pending_key = self._key(pending_path)
                    S3FileWriter.resume(self, pending_path, pending_key, from_object=False).cancel()
            for start in range(0, len(keys), 1000):
                batch = [{"Key": k} for k in keys[start : start + 1000]]
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})

    def delete_files(self, paths: Sequence[str]) -> dict[str, Exception]:
        # One DeleteObjects per 1000 keys would do for the objects, but each path may have a
        # closed, uncommitted writer to abort too: only `delete` looks for one.
        return delete_each(self.delete, paths)

    def _pending_below(self, path: str) -> builtins.list[str]:
        """Paths at or below path with a closed, uncommitted writer."""
        base = self._pending_key(path)
        strip = len(self._pending_key(""))
        found = [obj["Key"][strip:] for obj in self._keys_below(base + "/")]
        try:
            self.client.head_object(Bucket=self.bucket, Key=base)
            found.append(path)
        except ClientError as exc:
            if error_code(exc) not in NOT_FOUND_CODES:
                raise
        return found

    # --- direct access ------------------------------------------------------------------------
    def url_for(self, path: str, method: str = "GET", expires_in: int = 1200) -> str | None:
        key = self._key(path)
        operation = {"GET": "get_object", "HEAD": "head_object"}.get(method.upper())
        if operation is None:
            return None
        with s3_errors(path):
            url = self.client.generate_presigned_url(
                operation, Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expires_in
            )
        return cast(str, url)

    def local_path(self, path: str) -> str | None:
        return None

    def unlinked_writer(self, path: str) -> FileWriter | None:
        return None  # uploads lock their path and use `writer`

    def try_lock(self, path: str) -> PathLock | None:
        return self._locks.try_lock(path)
