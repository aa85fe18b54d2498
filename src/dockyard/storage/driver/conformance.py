"""The one conformance suite every storage driver passes unchanged.

Use it by subclassing in a test module and overriding the `driver` fixture with a fresh, empty
driver for each test, in the base wrapper that `build_driver` puts every driver in (it checks the
paths, so the invalid-path tests here are the wrapper's)::

    class TestMyDriver(StorageDriverConformance):
        @pytest.fixture
        def driver(self, tmp_path): return CheckedDriver(MyDriver(tmp_path))

A driver whose `unlinked_writer` gives a writer subclasses `UnlinkedWriterConformance` instead.

Before a writer commits, the suite checks only the writer's own `size` (an object store keeps the
bytes pending until then), so S3-like drivers can pass it as it is.

It imports pytest, so it is for tests only: nothing in the running registry imports it.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any, cast

import pytest

from dockyard.errors import InvalidPath, PathNotFound, StorageError
from dockyard.storage.driver.base import FileInfo, FileWriter, StorageDriver
from dockyard.storage.driver.checked import CheckedDriver

MiB = 1 << 20

INVALID_PATHS = [
    "../x",
    "a/../../x",
    "/abs",
    "/",
    "a//b",
    "a/./b",
    "a/../b",
    ".",
    "..",
    "a/b/",
    "a/",
    "a\x00b",
    "a\nb",
    "a\n",  # a regex `$` would let a trailing newline through
    "a/b\n",
    "a\\b",
    "a b",
    "caf\u00e9",  # precomposed e-acute
    "cafe\u0301",  # e + combining accent: looks the same, different bytes
    "a\u200bb",  # zero-width space
    "\uff0e\uff0e/x",  # fullwidth dots that some systems normalise to ".."
    "a\u2215b",  # division slash, looks like "/"
    "x" * 256,  # longer than any file name
]


def _invalid_calls(driver: StorageDriver, bad: str) -> list[tuple[str, Callable[[], Any]]]:
    """Every driver method called with the bad path in each of its path arguments."""
    calls: list[tuple[str, Callable[[], Any]]] = [
        ("get_content", lambda: driver.get_content(bad)),
        ("put_content", lambda: driver.put_content(bad, b"x")),
        ("open_read", lambda: driver.open_read(bad)),
        ("writer", lambda: driver.writer(bad)),
        ("writer(append)", lambda: driver.writer(bad, append=True)),
        ("stat", lambda: driver.stat(bad)),
        ("move(source)", lambda: driver.move(bad, "dest")),
        ("move(dest)", lambda: driver.move("source", bad)),
        ("delete", lambda: driver.delete(bad)),
        ("delete_files", lambda: driver.delete_files(["fine", bad])),
        ("url_for", lambda: driver.url_for(bad)),
        ("local_path", lambda: driver.local_path(bad)),
        ("try_lock", lambda: driver.try_lock(bad)),
        ("unlinked_writer", lambda: driver.unlinked_writer(bad)),
    ]
    if bad != "":  # "" is the root for list
        calls.append(("list", lambda: driver.list(bad)))
    return calls


def _pattern(size: int, seed: int = 0) -> bytes:
    """Bytes where every offset is distinguishable, so misplaced ranges show up."""
    block = bytes((seed + i * 7) % 251 for i in range(251))
    return (block * (size // len(block) + 1))[:size]


class StorageDriverConformance:
    """The storage driver contract (see `dockyard.storage.driver.base`), as tests. A driver that
    offers `unlinked_writer` passes `UnlinkedWriterConformance` instead, which adds its tests."""

    UNLINKED_WRITER = False  # whether `unlinked_writer` gives a writer (else None: uploads lock)

    @pytest.fixture
    def driver(self) -> StorageDriver:
        raise NotImplementedError("override the `driver` fixture with a fresh, empty driver")

    # --- the protocol -------------------------------------------------------------------------
    def test_implements_protocol(self, driver: StorageDriver) -> None:
        assert isinstance(driver, StorageDriver)
        assert isinstance(driver.name, str) and driver.name

    def test_unlinked_writer_is_offered_as_declared(self, driver: StorageDriver) -> None:
        writer = driver.unlinked_writer("uploads/u0/data")
        assert (writer is not None) == self.UNLINKED_WRITER
        if writer is not None:
            writer.cancel()
        assert driver.list("") == []  # asking made nothing

    def test_runs_in_the_base_wrapper(self, driver: StorageDriver) -> None:
        # As `build_driver` builds every driver: the path checks below are the wrapper's.
        assert isinstance(driver, CheckedDriver)
        assert isinstance(driver.inner, StorageDriver) and driver.inner.name == driver.name

    # --- put/get ------------------------------------------------------------------------------
    @pytest.mark.parametrize("size", [0, 1, 1000, 10 * MiB])
    def test_put_get_roundtrip(self, driver: StorageDriver, size: int) -> None:
        data = _pattern(size)
        driver.put_content("a/b/c", data)
        assert driver.get_content("a/b/c") == data
        assert driver.stat("a/b/c").size == size

    def test_put_replaces_content(self, driver: StorageDriver) -> None:
        driver.put_content("file", b"a much longer first version")
        driver.put_content("file", b"short")
        assert driver.get_content("file") == b"short"
        assert driver.list("") == ["file"]  # no temp files left visible

    def test_put_accepts_any_bytes_like(self, driver: StorageDriver) -> None:
        driver.put_content("ba", cast(bytes, bytearray(b"bytearray")))
        driver.put_content("mv", cast(bytes, memoryview(b"memoryview")))
        assert driver.get_content("ba") == b"bytearray"
        assert driver.get_content("mv") == b"memoryview"

    def test_concurrent_readers_never_see_a_mix(self, driver: StorageDriver) -> None:
        versions = [bytes([65 + i]) * (256 * 1024) for i in range(2)]
        driver.put_content("contended", versions[0])
        stop = threading.Event()
        seen: list[bytes] = []
        failures: list[BaseException] = []

        def read() -> None:
            try:
                while not stop.is_set():
                    seen.append(driver.get_content("contended"))
                    with driver.open_read("contended") as stream:
                        seen.append(stream.read())
            except BaseException as exc:
                failures.append(exc)

        readers = [threading.Thread(target=read) for _ in range(3)]
        for reader in readers:
            reader.start()
        try:
            for i in range(60):
                driver.put_content("contended", versions[i % 2])
        finally:
            stop.set()
            for reader in readers:
                reader.join()
        assert not failures
        assert seen
        assert all(content in versions for content in seen)
        assert {versions[0], versions[1]} >= set(seen)

    # --- missing paths ------------------------------------------------------------------------
    def test_missing_path_raises_path_not_found(self, driver: StorageDriver) -> None:
        with pytest.raises(PathNotFound):
            driver.get_content("no/such/file")
        with pytest.raises(PathNotFound):
            driver.stat("no/such/file")
        with pytest.raises(PathNotFound):
            driver.open_read("no/such/file")
        with pytest.raises(PathNotFound):
            driver.delete("no/such/file")
        with pytest.raises(PathNotFound):
            driver.list("no/such")
        with pytest.raises(PathNotFound):
            driver.writer("no/such/file", append=True)
        with pytest.raises(PathNotFound):
            driver.move("no/such/file", "dest")

    def test_path_not_found_is_a_storage_error(self) -> None:
        assert issubclass(PathNotFound, StorageError)
        assert issubclass(InvalidPath, StorageError)

    def test_file_below_a_file_is_not_found(self, driver: StorageDriver) -> None:
        driver.put_content("plain", b"x")
        with pytest.raises(PathNotFound):
            driver.get_content("plain/child")
        with pytest.raises(PathNotFound):
            driver.stat("plain/child")

    def test_directory_is_not_readable_as_a_file(self, driver: StorageDriver) -> None:
        driver.put_content("dir/file", b"x")
        with pytest.raises(PathNotFound):
            driver.get_content("dir")
        with pytest.raises(PathNotFound):
            driver.open_read("dir")

    # --- invalid paths ------------------------------------------------------------------------
    @pytest.mark.parametrize("bad", ["", *INVALID_PATHS])
    def test_invalid_path_refused_by_every_method(self, driver: StorageDriver, bad: str) -> None:
        driver.put_content("source", b"kept")
        for method, call in _invalid_calls(driver, bad):
            with pytest.raises(InvalidPath):
                call()
                pytest.fail(f"{method}({bad!r}) did not raise InvalidPath")
        assert driver.get_content("source") == b"kept"
        assert driver.list("") == ["source"]

    def test_valid_path_characters(self, driver: StorageDriver) -> None:
        path = "A-z_0.9/..hidden/x...y/sha256/" + "f" * 64
        driver.put_content(path, b"ok")
        assert driver.get_content(path) == b"ok"

    # --- open_read ----------------------------------------------------------------------------
    @pytest.mark.parametrize("offset", [0, 1, 4096, 99_999, 100_000, 100_001, 10 * MiB])
    def test_open_read_from_offset(self, driver: StorageDriver, offset: int) -> None:
        data = _pattern(100_000)
        driver.put_content("blob", data)
        with driver.open_read("blob", offset) as stream:
            assert stream.read() == data[offset:]

    def test_open_read_streams_in_chunks(self, driver: StorageDriver) -> None:
        data = _pattern(3 * MiB + 5)
        driver.put_content("blob", data)
        chunks = []
        with driver.open_read("blob", 10) as stream:
            while chunk := stream.read(MiB):
                chunks.append(chunk)
        assert b"".join(chunks) == data[10:]

    def test_open_read_negative_offset_refused(self, driver: StorageDriver) -> None:
        driver.put_content("blob", b"abc")
        with pytest.raises(ValueError):
            driver.open_read("blob", -1)

    # --- writer -------------------------------------------------------------------------------
    def test_writer_write_size_commit(self, driver: StorageDriver) -> None:
        writer = driver.writer("uploads/u1/data")
        assert isinstance(writer, FileWriter)
        assert writer.size == 0
        assert writer.write(b"hello ") == 6
        assert writer.write(cast(bytes, bytearray(b"big "))) == 4
        assert writer.write(cast(bytes, memoryview(_pattern(2 * MiB)))) == 2 * MiB
        assert writer.size == 10 + 2 * MiB
        writer.commit()
        assert driver.get_content("uploads/u1/data") == b"hello big " + _pattern(2 * MiB)
        assert driver.stat("uploads/u1/data").size == 10 + 2 * MiB

    def test_writer_without_append_starts_empty(self, driver: StorageDriver) -> None:
        driver.put_content("target", b"old content")
        writer = driver.writer("target")
        assert writer.size == 0
        writer.write(b"new")
        writer.commit()
        assert driver.get_content("target") == b"new"

    def test_writer_close_then_append_resumes(self, driver: StorageDriver) -> None:
        first = driver.writer("uploads/u2/data")
        first.write(b"chunk one,")
        first.close()

        second = driver.writer("uploads/u2/data", append=True)
        assert second.size == 10
        second.write(b"chunk two,")
        assert second.size == 20
        second.close()

        third = driver.writer("uploads/u2/data", append=True)
        assert third.size == 20
        third.write(b"three")
        assert third.size == 25
        third.commit()
        assert driver.get_content("uploads/u2/data") == b"chunk one,chunk two,three"

    def test_empty_writer_can_be_resumed(self, driver: StorageDriver) -> None:
        driver.writer("uploads/u3/data").close()
        resumed = driver.writer("uploads/u3/data", append=True)
        assert resumed.size == 0
        resumed.commit()
        assert driver.get_content("uploads/u3/data") == b""

    def test_finished_writer_refuses_writes(self, driver: StorageDriver) -> None:
        for finish in ("close", "commit", "cancel"):
            writer = driver.writer(f"w/{finish}")
            writer.write(b"x")
            getattr(writer, finish)()
            with pytest.raises(StorageError):
                writer.write(b"more")
            writer.close()  # closing again is harmless

    def test_writer_cancel_removes(self, driver: StorageDriver) -> None:
        driver.put_content("keep", b"k")
        writer = driver.writer("uploads/u4/data")
        writer.write(b"discard me")
        writer.cancel()
        with pytest.raises(PathNotFound):
            driver.stat("uploads/u4/data")
        with pytest.raises(PathNotFound):
            driver.stat("uploads")  # nothing else was there: the directory is gone too
        assert driver.list("") == ["keep"]

    def test_cancel_of_resumed_writer_removes_earlier_bytes(self, driver: StorageDriver) -> None:
        first = driver.writer("up/data")
        first.write(b"earlier")
        first.close()
        resumed = driver.writer("up/data", append=True)
        resumed.write(b"later")
        resumed.cancel()
        with pytest.raises(PathNotFound):
            driver.get_content("up/data")

    def test_truncate_drops_the_bytes_past_a_size(self, driver: StorageDriver) -> None:
        first = driver.writer("up/data")
        first.write(b"recorded|crashed chunk")
        first.close()
        resumed = driver.writer("up/data", append=True)
        resumed.truncate(8)
        assert resumed.size == 8
        resumed.write(b"+resumed")
        assert resumed.size == 16
        resumed.commit()
        assert driver.get_content("up/data") == b"recorded+resumed"

    def test_truncate_never_grows(self, driver: StorageDriver) -> None:
        writer = driver.writer("up/data")
        writer.write(b"abc")
        with pytest.raises(ValueError):
            writer.truncate(4)
        writer.cancel()

    def test_fingerprint_tells_closed_states_apart(self, driver: StorageDriver) -> None:
        first = driver.writer("up/data")
        first.write(b"one")
        first.close()
        resumed = driver.writer("up/data", append=True)
        assert resumed.fingerprint == first.fingerprint  # the state it continues from
        resumed.close()
        other = driver.writer("up/data")  # another writer starts the path afresh, same size
        other.write(b"two")
        other.close()
        again = driver.writer("up/data", append=True)
        assert again.fingerprint == other.fingerprint
        if first.fingerprint is not None:  # a driver that tells states apart
            assert other.fingerprint != first.fingerprint
        again.cancel()

    # --- locks --------------------------------------------------------------------------------
    def test_try_lock_is_exclusive_until_released(self, driver: StorageDriver) -> None:
        lock = driver.try_lock("uploads/u9")
        assert lock is not None and isinstance(lock.exclusive, bool)
        assert driver.try_lock("uploads/u9") is None
        elsewhere: list[object] = []
        thread = threading.Thread(target=lambda: elsewhere.append(driver.try_lock("uploads/u9")))
        thread.start()
        thread.join()
        assert elsewhere == [None]
        other = driver.try_lock("uploads/u10")  # another path: another lock
        assert other is not None
        writer = driver.writer("uploads/u9/data")  # writing below a locked directory is allowed
        writer.write(b"x")
        writer.commit()
        lock.release()
        lock.release()  # harmless
        again = driver.try_lock("uploads/u9")
        assert again is not None
        again.release()
        other.release()
        driver.delete("uploads/u9/data")
        assert driver.list("") == []  # a lock leaves no directory behind

    # --- commit_to: commit and move in one step ------------------------------------------------
    def _assert_nothing_left(self, driver: StorageDriver, path: str) -> None:
        with pytest.raises(PathNotFound):
            driver.stat(path)
        with pytest.raises(PathNotFound):
            driver.writer(path, append=True)  # no pending state either

    @pytest.mark.parametrize("size", [0, 1000, 7 * MiB])
    def test_commit_to_lands_at_dest_only(self, driver: StorageDriver, size: int) -> None:
        data = _pattern(size)
        writer = driver.writer("uploads/c1/data")
        writer.write(data)
        writer.commit_to("blobs/ab/data")
        assert driver.get_content("blobs/ab/data") == data
        assert driver.stat("blobs/ab/data").size == size
        self._assert_nothing_left(driver, "uploads/c1/data")
        with pytest.raises(StorageError):
            writer.write(b"more")
        writer.close()  # harmless once finished

    @pytest.mark.parametrize("first_size", [10, 6 * MiB])
    def test_commit_to_after_resume(self, driver: StorageDriver, first_size: int) -> None:
        data = _pattern(first_size + 2 * MiB + 3)
        first = driver.writer("uploads/c2/data")
        first.write(data[:first_size])
        first.close()
        resumed = driver.writer("uploads/c2/data", append=True)
        resumed.write(data[first_size:])
        resumed.commit_to("blobs/cd/data")
        assert driver.get_content("blobs/cd/data") == data
        self._assert_nothing_left(driver, "uploads/c2/data")

    def test_commit_to_of_a_resumed_committed_file(self, driver: StorageDriver) -> None:
        driver.put_content("uploads/c3/data", b"committed,")
        resumed = driver.writer("uploads/c3/data", append=True)
        resumed.write(b"appended")
        resumed.commit_to("blobs/ef/data")
        assert driver.get_content("blobs/ef/data") == b"committed,appended"
        self._assert_nothing_left(driver, "uploads/c3/data")

    def test_commit_to_replaces_dest(self, driver: StorageDriver) -> None:
        driver.put_content("blobs/gh/data", b"old")
        writer = driver.writer("uploads/c4/data")
        writer.write(b"new")
        writer.commit_to("blobs/gh/data")
        assert driver.get_content("blobs/gh/data") == b"new"

    def test_commit_to_an_invalid_dest_changes_nothing(self, driver: StorageDriver) -> None:
        writer = driver.writer("uploads/c5/data")
        writer.write(b"kept")
        with pytest.raises(InvalidPath):
            writer.commit_to("../escape")
        writer.commit()  # the writer is still open
        assert driver.get_content("uploads/c5/data") == b"kept"

    def test_many_small_writes(self, driver: StorageDriver) -> None:
        writer = driver.writer("small")
        for i in range(5000):
            writer.write(bytes([i % 256]))
        writer.commit()
        assert driver.get_content("small") == bytes(i % 256 for i in range(5000))

    # --- move ---------------------------------------------------------------------------------
    def test_move_to_new_path_creates_parents(self, driver: StorageDriver) -> None:
        driver.put_content("uploads/u5/data", b"blob bytes")
        driver.move("uploads/u5/data", "blobs/sha256/ab/abcd/data")
        assert driver.get_content("blobs/sha256/ab/abcd/data") == b"blob bytes"
        with pytest.raises(PathNotFound):
            driver.stat("uploads/u5/data")
        with pytest.raises(PathNotFound):
            driver.stat("uploads/u5")  # the source's now-empty directories are gone
        assert driver.list("") == ["blobs"]

    def test_move_replaces_dest(self, driver: StorageDriver) -> None:
        driver.put_content("src", b"new")
        driver.put_content("dst", b"old and longer")
        driver.move("src", "dst")
        assert driver.get_content("dst") == b"new"
        assert driver.list("") == ["dst"]

    def test_move_missing_source_leaves_dest(self, driver: StorageDriver) -> None:
        driver.put_content("dst", b"untouched")
        with pytest.raises(PathNotFound):
            driver.move("missing", "dst")
        assert driver.get_content("dst") == b"untouched"

    def test_move_onto_itself_keeps_content(self, driver: StorageDriver) -> None:
        driver.put_content("same", b"content")
        driver.move("same", "same")
        assert driver.get_content("same") == b"content"

    def test_move_keeps_siblings(self, driver: StorageDriver) -> None:
        driver.put_content("uploads/a/data", b"a")
        driver.put_content("uploads/b/data", b"b")
        driver.move("uploads/a/data", "blobs/a")
        assert driver.list("uploads") == ["uploads/b"]

    # --- delete -------------------------------------------------------------------------------
    def test_delete_file(self, driver: StorageDriver) -> None:
        driver.put_content("d/one", b"1")
        driver.put_content("d/two", b"2")
        driver.delete("d/one")
        with pytest.raises(PathNotFound):
            driver.get_content("d/one")
        assert driver.list("d") == ["d/two"]

    def test_delete_tree(self, driver: StorageDriver) -> None:
        for path in ("t/a", "t/sub/b", "t/sub/deeper/c", "tx/kept", "t2"):
            driver.put_content(path, b"x")
        driver.delete("t")
        for path in ("t/a", "t/sub/b", "t/sub/deeper/c"):
            with pytest.raises(PathNotFound):
                driver.stat(path)
        with pytest.raises(PathNotFound):
            driver.stat("t")
        assert driver.list("") == ["t2", "tx"]  # a shared name prefix is not a parent
        assert driver.get_content("tx/kept") == b"x"

    def test_delete_last_file_removes_empty_parents(self, driver: StorageDriver) -> None:
        driver.put_content("blobs/sha256/ab/abcd/data", b"x")
        driver.put_content("blobs/sha256/cd/cdef/data", b"y")
        driver.delete("blobs/sha256/ab/abcd/data")
        assert driver.list("blobs/sha256") == ["blobs/sha256/cd"]
        with pytest.raises(PathNotFound):
            driver.list("blobs/sha256/ab")

    def test_delete_files(self, driver: StorageDriver) -> None:
        for path in ("blobs/sha256/ab/ab01/data", "blobs/sha256/ab/ab02/data", "blobs/sha256/ab/ab03/data"):
            driver.put_content(path, b"x")
        driver.put_content("blobs/sha256/cd/cd01/data", b"y")
        driver.put_content("top", b"z")
        failed = driver.delete_files(
            ["blobs/sha256/ab/ab01/data", "blobs/sha256/cd/cd01/data", "blobs/sha256/ef/ef01/data", "top"]
        )
        assert failed == {}  # a missing file is no failure
        assert driver.list("") == ["blobs"]
        assert driver.list("blobs/sha256") == ["blobs/sha256/ab"]  # cd went with its last file
        assert driver.list("blobs/sha256/ab") == ["blobs/sha256/ab/ab02", "blobs/sha256/ab/ab03"]
        assert driver.get_content("blobs/sha256/ab/ab02/data") == b"x"

    def test_delete_files_all_of_a_tree_leaves_nothing(self, driver: StorageDriver) -> None:
        paths = [f"blobs/sha256/{n:02x}/{n:02x}{m}/data" for n in range(3) for m in range(3)]
        for path in paths:
            driver.put_content(path, b"x")
        assert driver.delete_files(list(reversed(paths))) == {}
        assert driver.list("") == []

    def test_delete_files_refuses_an_invalid_path_before_deleting_any(self, driver: StorageDriver) -> None:
        driver.put_content("d/kept", b"x")
        with pytest.raises(InvalidPath):
            driver.delete_files(["d/kept", "d/../escape"])
        assert driver.get_content("d/kept") == b"x"

    # --- list ---------------------------------------------------------------------------------
    def test_list_empty_root(self, driver: StorageDriver) -> None:
        assert driver.list("") == []

    def test_list_direct_children_sorted(self, driver: StorageDriver) -> None:
        for path in ("dir/b", "dir/a/deep/file", "dir/C", "dir/a-1", "dir/_x", "other/file", "top"):
            driver.put_content(path, b"x")
        assert driver.list("") == ["dir", "other", "top"]
        assert driver.list("dir") == sorted(["dir/C", "dir/_x", "dir/a", "dir/a-1", "dir/b"])
        assert driver.list("dir/a") == ["dir/a/deep"]
        assert driver.list("dir/a/deep") == ["dir/a/deep/file"]

    def test_list_of_a_file_is_not_found(self, driver: StorageDriver) -> None:
        driver.put_content("plain", b"x")
        with pytest.raises(PathNotFound):
            driver.list("plain")

    # --- stat ---------------------------------------------------------------------------------
    def test_stat_file(self, driver: StorageDriver) -> None:
        before = time.time()
        driver.put_content("dir/file", b"12345")
        info = driver.stat("dir/file")
        assert isinstance(info, FileInfo)
        assert (info.path, info.size, info.is_dir) == ("dir/file", 5, False)
        assert before - 5 <= info.modified <= time.time() + 5

    def test_stat_directory(self, driver: StorageDriver) -> None:
        driver.put_content("dir/sub/file", b"12345")
        info = driver.stat("dir")
        assert (info.path, info.size, info.is_dir) == ("dir", 0, True)
        assert driver.stat("dir/sub").is_dir

    def test_stat_after_resumed_commit(self, driver: StorageDriver) -> None:
        writer = driver.writer("growing")
        writer.write(b"x" * 1000)
        writer.close()
        resumed = driver.writer("growing", append=True)
        resumed.write(b"y" * 24)
        resumed.commit()
        assert driver.stat("growing").size == 1024

    # --- direct access ------------------------------------------------------------------------
    def test_url_for_and_local_path_types(self, driver: StorageDriver) -> None:
        driver.put_content("blob", b"bytes")
        url = driver.url_for("blob")
        assert url is None or (isinstance(url, str) and url.startswith(("http://", "https://")))
        local = driver.local_path("blob")
        assert local is None or isinstance(local, str)
        if local is not None:
            assert os.path.isabs(local)
            with open(local, "rb") as file:
                assert file.read() == b"bytes"


class UnlinkedWriterConformance(StorageDriverConformance):
    """The suite for a driver that offers `unlinked_writer` (uploads in one request): every test of
    `StorageDriverConformance`, and what such a writer promises."""

    UNLINKED_WRITER = True

    def test_unlinked_writer_shows_nothing_until_it_lands(self, driver: StorageDriver) -> None:
        writer = driver.unlinked_writer("uploads/u1/data")
        assert writer is not None
        writer.write(b"whole ")
        writer.write(b"body")
        assert writer.size == 10
        assert driver.list("") == []  # no name, no directory, nothing a reader or a purge could see
        writer.commit_to("blobs/u1/data")
        assert driver.get_content("blobs/u1/data") == b"whole body"
        assert driver.list("") == ["blobs"]
        with pytest.raises(StorageError):
            writer.write(b"more")

    def test_unlinked_writer_replaces_dest(self, driver: StorageDriver) -> None:
        driver.put_content("blobs/u2/data", b"old")
        writer = driver.unlinked_writer("uploads/u2/data")
        assert writer is not None
        writer.write(b"new")
        writer.commit_to("blobs/u2/data")
        assert driver.get_content("blobs/u2/data") == b"new"
        assert driver.list("blobs/u2") == ["blobs/u2/data"]  # no temp name left beside it

    def test_unlinked_writer_cancel_leaves_nothing(self, driver: StorageDriver) -> None:
        writer = driver.unlinked_writer("uploads/u3/data")
        assert writer is not None
        writer.write(b"dropped")
        writer.cancel()
        assert driver.list("") == []

    def test_unlinked_writer_close_names_its_bytes_for_a_resume(self, driver: StorageDriver) -> None:
        writer = driver.unlinked_writer("uploads/u4/data")
        assert writer is not None
        writer.write(b"cut short,")
        writer.close()
        resumed = driver.writer("uploads/u4/data", append=True)
        assert resumed.size == 10
        resumed.write(b"resumed")
        resumed.commit()
        assert driver.get_content("uploads/u4/data") == b"cut short,resumed"

    def test_unlinked_writer_never_replaces_bytes_at_its_path(self, driver: StorageDriver) -> None:
        driver.put_content("uploads/u5/data", b"another writer's")
        writer = driver.unlinked_writer("uploads/u5/data")
        assert writer is not None
        writer.write(b"mine")
        with pytest.raises(StorageError):
            writer.close()
        assert driver.get_content("uploads/u5/data") == b"another writer's"
