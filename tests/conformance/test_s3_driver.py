"""The S3 driver passes the storage driver conformance suite against a real SeaweedFS, plus S3's own cases."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError

from dockyard.errors import ConfigError, PathNotFound, StorageError
from dockyard.storage.driver import build_driver, s3writer
from dockyard.storage.driver.base import StorageDriver
from dockyard.storage.driver.checked import CheckedDriver
from dockyard.storage.driver.conformance import StorageDriverConformance, _pattern
from dockyard.storage.driver.s3 import MIN_PART_SIZE, S3Driver
from tests.support.seaweedfs import RunningSeaweedFS, start_seaweedfs
from tests.support.timeouts import HTTP_TIMEOUT

MiB = 1 << 20


@pytest.fixture(scope="module")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSeaweedFS]:
    server = start_seaweedfs(tmp_path_factory.mktemp("seaweedfs"))
    try:
        yield server
    finally:
        server.stop()


def make_driver(server: RunningSeaweedFS, rootdirectory: str, **options: Any) -> S3Driver:
    driver = build_driver(
        "s3",
        bucket=server.bucket,
        region="us-east-1",
        regionendpoint=server.endpoint,
        accesskey=server.access_key,
        secretkey=server.secret_key,
        rootdirectory=rootdirectory,
        **options,
    )
    assert isinstance(driver, CheckedDriver) and isinstance(driver.inner, S3Driver)
    return driver.inner


@pytest.fixture
def s3_driver(seaweedfs: RunningSeaweedFS) -> S3Driver:
    """A driver on a fresh root prefix, so every test starts empty."""
    return make_driver(seaweedfs, f"/tests/{secrets.token_hex(6)}/")


class TestS3Driver(StorageDriverConformance):
    @pytest.fixture
    def driver(self, s3_driver: S3Driver) -> StorageDriver:
        return CheckedDriver(s3_driver)


# --- S3-specific behaviour ------------------------------------------------------------------------
def test_multipart_upload_resumes_in_another_writer(seaweedfs: RunningSeaweedFS, s3_driver: S3Driver) -> None:
    data = _pattern(13 * MiB + 17)
    first = s3_driver.writer("uploads/big/data")
    first.write(data[: 7 * MiB])  # one part of 5+ MiB uploaded, the rest kept aside on close
    first.close()

    # Another driver object (as another process would have): state comes only from the store.
    other = make_driver(seaweedfs, s3_driver._root)
    second = other.writer("uploads/big/data", append=True)
    assert second.size == 7 * MiB
    second.write(data[7 * MiB : 11 * MiB])
    second.close()

    third = other.writer("uploads/big/data", append=True)
    assert third.size == 11 * MiB
    third.write(data[11 * MiB :])
    third.commit()
    assert s3_driver.get_content("uploads/big/data") == data
    assert s3_driver.list("uploads/big") == ["uploads/big/data"]  # no upload state left visible
    stored = s3_driver.client.list_objects_v2(Bucket=s3_driver.bucket, Prefix=s3_driver._root)["Contents"]
    assert [obj["Key"] for obj in stored] == [s3_driver._root + "uploads/big/data"]  # the state is gone
    assert s3_driver.stat("uploads/big/data").size == len(data)


def test_large_write_in_small_chunks(s3_driver: S3Driver) -> None:
    data = _pattern(3 * MIN_PART_SIZE + 12345, seed=3)
    writer = s3_driver.writer("chunks")
    for start in range(0, len(data), 64 * 1024):
        writer.write(data[start : start + 64 * 1024])
        assert writer.size == min(start + 64 * 1024, len(data))
    writer.commit()
    assert s3_driver.stat("chunks").size == len(data)
    with s3_driver.open_read("chunks", 6 * MiB) as stream:
        assert stream.read() == data[6 * MiB :]


def test_cancel_aborts_a_multipart_upload(s3_driver: S3Driver) -> None:
    writer = s3_driver.writer("uploads/x/data")
    writer.write(_pattern(11 * MiB))
    writer.close()
    s3_driver.writer("uploads/x/data", append=True).cancel()
    uploads = s3_driver.client.list_multipart_uploads(Bucket=s3_driver.bucket, Prefix=s3_driver._root)
    assert uploads.get("Uploads", []) == []
    assert s3_driver.list("") == []


def test_move_of_a_12_mib_object(s3_driver: S3Driver) -> None:
    data = _pattern(12 * MiB, seed=5)
    s3_driver.put_content("uploads/m/data", data)
    s3_driver.move("uploads/m/data", "blobs/sha256/ab/abcd/data")
    assert s3_driver.get_content("blobs/sha256/ab/abcd/data") == data
    with pytest.raises(PathNotFound):
        s3_driver.stat("uploads/m/data")
    assert s3_driver.list("") == ["blobs"]


def test_presigned_url_serves_bytes_and_expires(s3_driver: S3Driver) -> None:
    s3_driver.put_content("blobs/presigned", b"straight from the store")
    url = s3_driver.url_for("blobs/presigned", expires_in=2)
    assert url is not None
    response = httpx.get(url, timeout=HTTP_TIMEOUT)
    assert response.status_code == 200
    assert response.content == b"straight from the store"
    time.sleep(3)
    assert httpx.get(url, timeout=HTTP_TIMEOUT).status_code == 403
    assert s3_driver.local_path("blobs/presigned") is None


def test_directory_markers_and_empty_folders_are_ignored(s3_driver: S3Driver) -> None:
    client, bucket, root = s3_driver.client, s3_driver.bucket, s3_driver._root
    s3_driver.put_content("repos/a/file", b"x")
    for marker in ("repos/", "repos/a/", "repos/empty/", "repos/empty/deeper/"):  # as some tools leave
        client.put_object(Bucket=bucket, Key=root + marker, Body=b"")
    assert s3_driver.list("") == ["repos"]
    assert s3_driver.list("repos") == ["repos/a"]
    assert s3_driver.list("repos/a") == ["repos/a/file"]
    with pytest.raises(PathNotFound):
        s3_driver.list("repos/empty")
    with pytest.raises(PathNotFound):
        s3_driver.stat("repos/empty")
    s3_driver.delete("repos")
    assert s3_driver.list("") == []


def test_list_pages_skip_whole_subtrees(s3_driver: S3Driver) -> None:
    paths = ["d/a/x/1", "d/a/x/2", "d/a/y", "d/a-b", "d/b/1", "d/b/2", "d/b/3", "d/c", "d/d/e/f/g", "d/z"]
    for path in paths:
        s3_driver.put_content(path, b"x")
    s3_driver.list_page_size = 2  # every page ends inside a subtree or at a file
    assert s3_driver.list("d") == ["d/a", "d/a-b", "d/b", "d/c", "d/d", "d/z"]
    assert s3_driver.list("d/a") == ["d/a/x", "d/a/y"]
    s3_driver.delete("d")
    assert s3_driver.list("") == []


def test_build_driver_checks_s3_options(seaweedfs: RunningSeaweedFS) -> None:
    with pytest.raises(ConfigError, match="bucket"):
        build_driver("s3", region="us-east-1")
    with pytest.raises(ConfigError, match="chunksize"):
        make_driver(seaweedfs, "x", chunksize=MiB)
    with pytest.raises(ConfigError):
        make_driver(seaweedfs, "x", nosuchoption=1)
    # Env-style strings work as registry:2's do.
    driver = make_driver(seaweedfs, "", chunksize=str(6 * MiB), secure="false", v4auth="true")
    assert driver.chunksize == 6 * MiB


def test_throughput_64_mib(s3_driver: S3Driver, capsys: pytest.CaptureFixture[str]) -> None:
    data = _pattern(64 * MiB, seed=9)
    started = time.perf_counter()
    writer = s3_driver.writer("bench/data")
    for start in range(0, len(data), MiB):
        writer.write(data[start : start + MiB])
    writer.commit()
    written = time.perf_counter()
    chunks = []
    with s3_driver.open_read("bench/data") as stream:
        while chunk := stream.read(MiB):
            chunks.append(chunk)
    read = time.perf_counter()
    assert b"".join(chunks) == data
    with capsys.disabled():
        write_rate, read_rate = 64 / (written - started), 64 / (read - written)
        print(f"\nS3 64 MiB: write {write_rate:.0f} MiB/s, read {read_rate:.0f} MiB/s")


def test_missing_weed_binary_is_a_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tests.support.seaweedfs as support

    monkeypatch.setattr(support.sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RuntimeError, match="weed"):
        support.start_seaweedfs(tmp_path / "w")


# --- parts uploaded concurrently ------------------------------------------------------------------
class PartWatcher:
    """The real boto3 client, with UploadPart slowed a little, counted, and failing on demand."""

    def __init__(self, client: Any, fail_part: int | None = None, delay: float = 0.05) -> None:
        self._client = client
        self.fail_part = fail_part
        self.delay = delay
        self.running = 0
        self.most_running = 0
        self.numbers: list[int] = []
        self.sizes: list[int] = []  # by part number
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def upload_part(self, **kwargs: Any) -> Any:
        with self._lock:
            self.running += 1
            self.most_running = max(self.most_running, self.running)
            self.numbers.append(kwargs["PartNumber"])
            self.sizes += [0] * (kwargs["PartNumber"] - len(self.sizes))
            self.sizes[kwargs["PartNumber"] - 1] = len(kwargs["Body"])
        try:
            time.sleep(self.delay)  # long enough that parts overlap when they can
            if kwargs["PartNumber"] == self.fail_part:
                raise ClientError({"Error": {"Code": "InternalError", "Message": "injected"}}, "UploadPart")
            return self._client.upload_part(**kwargs)
        finally:
            with self._lock:
                self.running -= 1


def watched_driver(
    server: RunningSeaweedFS, root: str, watcher_options: dict[str, Any], **options: Any
) -> Any:
    real = make_driver(server, root)
    watcher = PartWatcher(real.client, **watcher_options)
    driver = S3Driver(server.bucket, client=watcher, rootdirectory=root, chunksize=MIN_PART_SIZE, **options)
    return driver, watcher


def _stored_keys(driver: S3Driver) -> list[str]:
    listed = driver.client.list_objects_v2(Bucket=driver.bucket, Prefix=driver._root)
    return [obj["Key"][len(driver._root) :] for obj in listed.get("Contents", [])]


def _open_uploads(driver: S3Driver) -> list[Any]:
    return list(
        driver.client.list_multipart_uploads(Bucket=driver.bucket, Prefix=driver._root).get("Uploads", [])
    )


def test_parts_upload_concurrently_in_order(seaweedfs: RunningSeaweedFS, s3_driver: S3Driver) -> None:
    driver, watcher = watched_driver(seaweedfs, s3_driver._root, {}, part_concurrency=3)
    data = _pattern(8 * MIN_PART_SIZE + 999, seed=11)
    writer = driver.writer("uploads/c/data")
    for start in range(0, len(data), MiB):
        writer.write(data[start : start + MiB])
        assert writer.size == min(start + MiB, len(data))  # in-flight bytes count as written
    writer.commit()
    assert watcher.most_running == 3  # several at once, never more than the writer's bound
    assert sorted(watcher.numbers) == list(range(1, 10))
    assert driver.get_content("uploads/c/data") == data  # parts assembled in order


def test_parts_grow_so_ten_thousand_hold_a_big_blob(
    seaweedfs: RunningSeaweedFS, s3_driver: S3Driver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every PARTS_PER_SIZE_STEP parts the part size grows by one chunksize (here every 2 parts), across
    a resume too: 5 MiB parts alone would cap a blob at 10,000 x 5 MiB."""
    monkeypatch.setattr(s3writer, "PARTS_PER_SIZE_STEP", 2)
    driver, watcher = watched_driver(seaweedfs, s3_driver._root, {"delay": 0})
    data = _pattern(6 * MIN_PART_SIZE + 3, seed=5)
    first = driver.writer("uploads/g/data")
    first.write(data[: 2 * MIN_PART_SIZE + MiB])  # parts 1, 2 (one chunksize each); 1 MiB kept aside
    first.close()
    resumed = driver.writer("uploads/g/data", append=True)
    for start in range(2 * MIN_PART_SIZE + MiB, len(data), MiB):
        resumed.write(data[start : start + MiB])
    resumed.commit()
    assert watcher.sizes == [MIN_PART_SIZE, MIN_PART_SIZE, 2 * MIN_PART_SIZE, 2 * MIN_PART_SIZE, 3]
    assert driver.get_content("uploads/g/data") == data


def test_parts_in_flight_are_bounded_per_process(seaweedfs: RunningSeaweedFS, s3_driver: S3Driver) -> None:
    driver, watcher = watched_driver(seaweedfs, s3_driver._root, {}, part_concurrency=4, parts_in_flight=2)
    blobs = {
        f"uploads/{name}/data": _pattern(4 * MIN_PART_SIZE + 5, seed=seed) for seed, name in enumerate("ab")
    }

    def upload(path: str) -> None:
        writer = driver.writer(path)
        writer.write(blobs[path])
        writer.commit()

    threads = [threading.Thread(target=upload, args=(path,)) for path in blobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert watcher.most_running == 2
    for path, data in blobs.items():
        assert driver.get_content(path) == data


def test_a_failing_part_aborts_the_upload(seaweedfs: RunningSeaweedFS, s3_driver: S3Driver) -> None:
    driver, watcher = watched_driver(seaweedfs, s3_driver._root, {"fail_part": 3}, part_concurrency=2)
    writer = driver.writer("uploads/f/data")
    with pytest.raises(StorageError, match="injected"):
        for start in range(0, 10 * MIN_PART_SIZE, MiB):
            writer.write(_pattern(MiB, seed=start))
        writer.commit()
    assert watcher.running == 0  # no part still running once the error is raised
    with pytest.raises(StorageError, match="closed"):
        writer.write(b"more")
    assert _open_uploads(driver) == []  # aborted: the parts that made it are gone too
    assert _stored_keys(driver) == []  # no object, no sidecar
    with pytest.raises(PathNotFound):
        driver.writer("uploads/f/data", append=True)


def test_a_failing_part_after_a_resume_drops_the_saved_state(
    seaweedfs: RunningSeaweedFS, s3_driver: S3Driver
) -> None:
    data = _pattern(3 * MIN_PART_SIZE + 7, seed=12)
    first = s3_driver.writer("uploads/r/data")
    first.write(data)
    first.close()  # three parts (5 MiB, 5 MiB, 5 MiB + 7) and a sidecar
    driver, _ = watched_driver(seaweedfs, s3_driver._root, {"fail_part": 4})
    resumed = driver.writer("uploads/r/data", append=True)
    assert resumed.size == len(data)
    with pytest.raises(StorageError, match="injected"):
        resumed.write(_pattern(MIN_PART_SIZE, seed=13))
        resumed.close()
    assert _open_uploads(driver) == []
    assert _stored_keys(driver) == []
    with pytest.raises(PathNotFound):
        driver.stat("uploads/r/data")


def test_close_waits_for_parts_in_flight_and_resumes_elsewhere(
    seaweedfs: RunningSeaweedFS, s3_driver: S3Driver
) -> None:
    driver, _ = watched_driver(seaweedfs, s3_driver._root, {"delay": 0.2}, part_concurrency=4)
    data = _pattern(5 * MIN_PART_SIZE + 3 * MiB, seed=14)
    writer = driver.writer("uploads/w/data")
    writer.write(data[: 4 * MIN_PART_SIZE + MiB])  # four parts in flight when close() starts
    writer.close()
    other = make_driver(seaweedfs, s3_driver._root)  # another process: only the sidecar carries state
    resumed = other.writer("uploads/w/data", append=True)
    assert resumed.size == 4 * MIN_PART_SIZE + MiB
    resumed.write(data[4 * MIN_PART_SIZE + MiB :])
    resumed.commit()
    assert other.get_content("uploads/w/data") == data
    assert _stored_keys(other) == ["uploads/w/data"]
