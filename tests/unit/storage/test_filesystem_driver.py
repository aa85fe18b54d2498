"""What only the filesystem driver has: a real directory tree under a root, shared by processes."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from dockyard.errors import InvalidPath, PathNotFound, StorageError
from dockyard.storage.driver import filesystem, filesystem_files
from dockyard.storage.driver.filesystem import FilesystemDriver


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "storage"


@pytest.fixture
def driver(root: Path) -> FilesystemDriver:
    return FilesystemDriver(root)


def all_entries(root: Path) -> list[str]:
    return sorted(str(path.relative_to(root)) for path in root.rglob("*"))


def descriptors_under(root: Path) -> list[str]:
    """What this process's open descriptors point at under root (deleted directories too). Only
    those: other tests' threads in this worker (the closer thread of an earlier test's locks, a
    leaked file the garbage collector closes) open and close descriptors of their own meanwhile."""
    prefix = str(root.resolve()) + os.sep
    targets = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # closed since the listing (the listing's own descriptor among them)
        if target.startswith(prefix):
            targets.append(target)
    return targets


def test_root_is_created(root: Path) -> None:
    FilesystemDriver(root / "nested" / "deeper")
    assert (root / "nested" / "deeper").is_dir()


def test_files_live_at_their_path_under_root(driver: FilesystemDriver, root: Path) -> None:
    driver.put_content("blobs/sha256/ab/abcd/data", b"bytes")
    assert (root / "blobs/sha256/ab/abcd/data").read_bytes() == b"bytes"
    assert driver.local_path("blobs/sha256/ab/abcd/data") == str(
        (root / "blobs/sha256/ab/abcd/data").resolve()
    )


def test_symlinked_directory_leading_out_of_root_is_refused(
    driver: FilesystemDriver, root: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"secret")
    (root / "escape").symlink_to(outside)
    calls = [
        lambda: driver.get_content("escape/secret"),
        lambda: driver.open_read("escape/secret"),
        lambda: driver.stat("escape/secret"),
        lambda: driver.list("escape"),
        lambda: driver.put_content("escape/new", b"x"),
        lambda: driver.writer("escape/new"),
        lambda: driver.writer("escape/secret", append=True),
        lambda: driver.delete("escape/secret"),
        lambda: driver.delete("escape"),
        lambda: driver.move("escape/secret", "inside"),
        lambda: driver.local_path("escape/secret"),
    ]
    for call in calls:
        with pytest.raises(InvalidPath):
            call()
    assert sorted(p.name for p in outside.iterdir()) == ["secret"]
    assert (outside / "secret").read_bytes() == b"secret"


def test_symlinked_file_leading_out_of_root_is_refused(
    driver: FilesystemDriver, root: Path, tmp_path: Path
) -> None:
    (tmp_path / "passwd").write_bytes(b"root:x:0:0")
    root.joinpath("dir").mkdir()
    (root / "dir" / "data").symlink_to(tmp_path / "passwd")
    with pytest.raises(InvalidPath):
        driver.get_content("dir/data")
    with pytest.raises(InvalidPath):
        driver.put_content("dir/data", b"overwritten")
    assert (tmp_path / "passwd").read_bytes() == b"root:x:0:0"


def test_a_dangling_symlink_leading_out_of_root_is_refused(
    driver: FilesystemDriver, root: Path, tmp_path: Path
) -> None:
    """A link at the end of the path whose target does not exist yet: a writer must not create the
    target outside the root, and a lock must not make a directory there."""
    root.joinpath("dir").mkdir()
    (root / "dir" / "data").symlink_to(tmp_path / "created-outside")
    (root / "dir" / "lock").symlink_to(tmp_path / "lock-outside")
    for call in (
        lambda: driver.writer("dir/data"),
        lambda: driver.put_content("dir/data/below", b"x"),
        lambda: driver.try_lock("dir/lock"),
        lambda: driver.move("dir/data", "elsewhere"),
    ):
        with pytest.raises(InvalidPath):
            call()
    assert not (tmp_path / "created-outside").exists()
    assert not (tmp_path / "lock-outside").exists()


def test_dot_dot_handed_to_the_driver_itself_stays_inside(
    driver: FilesystemDriver, root: Path, tmp_path: Path
) -> None:
    """The base wrapper refuses `..` before a driver sees it; the driver alone still never leaves
    its root, for paths that exist and for paths it would create."""
    (tmp_path / "outside").write_bytes(b"secret")
    driver.put_content("dir/file", b"inside")
    for path in ("../outside", "dir/../../outside", "dir/../../new/file", "dir/.."):
        with pytest.raises(InvalidPath):
            driver.writer(path)
    assert driver.get_content("dir/../dir/file") == b"inside"
    assert not (tmp_path / "new").exists()


def test_paths_are_resolved_without_a_walk_in_python(
    driver: FilesystemDriver, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A push resolves several storage paths; none of the common ones takes os.path.realpath (an
    lstat per component, in Python), whether the path exists yet or not."""
    driver.put_content("blobs/sha256/ab/abcd/data", b"x")
    expected = str(root.resolve() / "blobs/sha256/cd/cdef/data")

    def refused(path: str, *args: object, **kwargs: object) -> str:
        raise AssertionError(f"realpath({path!r})")

    monkeypatch.setattr(filesystem, "_realpath", refused)
    assert driver.get_content("blobs/sha256/ab/abcd/data") == b"x"
    writer = driver.writer("uploads/u1/data")
    writer.write(b"y")
    lock = driver.try_lock("uploads/u2")
    assert lock is not None
    lock.release()
    writer.commit_to("blobs/sha256/cd/cdef/data")
    assert driver.local_path("blobs/sha256/cd/cdef/data") == expected


def test_symlink_to_root_itself_is_refused(driver: FilesystemDriver, root: Path) -> None:
    (root / "self").symlink_to(root)
    with pytest.raises(InvalidPath):
        driver.delete("self")
    assert root.is_dir()


def test_symlink_within_root_is_followed(driver: FilesystemDriver, root: Path) -> None:
    driver.put_content("real/file", b"inside")
    (root / "alias").symlink_to(root / "real")
    assert driver.get_content("alias/file") == b"inside"


def test_delete_prunes_empty_parents_but_not_root(driver: FilesystemDriver, root: Path) -> None:
    driver.put_content("blobs/sha256/ab/abcd/data", b"x")
    driver.delete("blobs/sha256/ab/abcd/data")
    assert root.is_dir()
    assert all_entries(root) == []


def test_prune_stops_at_a_non_empty_directory(driver: FilesystemDriver, root: Path) -> None:
    driver.put_content("blobs/sha256/ab/one/data", b"1")
    driver.put_content("blobs/sha256/ab/two/data", b"2")
    driver.delete("blobs/sha256/ab/one")
    assert all_entries(root) == [
        "blobs",
        "blobs/sha256",
        "blobs/sha256/ab",
        "blobs/sha256/ab/two",
        "blobs/sha256/ab/two/data",
    ]


def test_delete_files_prunes_once_but_as_delete_does(driver: FilesystemDriver, root: Path) -> None:
    for path in ("blobs/sha256/ab/one/data", "blobs/sha256/ab/two/data", "blobs/sha256/cd/x/data"):
        driver.put_content(path, b"1")
    driver.put_content("blobs/sha256/ef/file", b"a file, not a directory, keeps ef")
    failed = driver.delete_files(
        ["blobs/sha256/ab/one/data", "blobs/sha256/cd/x/data", "blobs/sha256/ef/gone/data"]
    )
    assert failed == {}
    assert all_entries(root) == [
        "blobs",
        "blobs/sha256",
        "blobs/sha256/ab",
        "blobs/sha256/ab/two",
        "blobs/sha256/ab/two/data",
        "blobs/sha256/ef",
        "blobs/sha256/ef/file",
    ]


def test_delete_files_removes_a_symlinked_file_not_its_target(
    driver: FilesystemDriver, root: Path, tmp_path: Path
) -> None:
    (tmp_path / "passwd").write_bytes(b"root:x:0:0")
    root.joinpath("blobs/d").mkdir(parents=True)
    (root / "blobs/d/data").symlink_to(tmp_path / "passwd")
    assert driver.delete_files(["blobs/d/data"]) == {}
    assert (tmp_path / "passwd").read_bytes() == b"root:x:0:0"
    assert all_entries(root) == []


def test_delete_files_through_a_symlinked_directory_is_refused_outside_root(
    driver: FilesystemDriver, root: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    (outside / "d").mkdir(parents=True)
    (outside / "d" / "secret").write_bytes(b"secret")
    (root / "escape").symlink_to(outside)
    failed = driver.delete_files(["escape/d/secret"])
    assert isinstance(failed["escape/d/secret"], InvalidPath)
    assert (outside / "d" / "secret").read_bytes() == b"secret"


def test_delete_files_follows_a_symlinked_directory_within_root(driver: FilesystemDriver, root: Path) -> None:
    driver.put_content("real/d/file", b"inside")
    driver.put_content("real/d/other", b"stays")
    (root / "alias").symlink_to(root / "real")
    assert driver.delete_files(["alias/d/file"]) == {}
    assert all_entries(root) == ["alias", "real", "real/d", "real/d/other"]


def test_move_and_cancel_prune_source_directories(driver: FilesystemDriver, root: Path) -> None:
    driver.put_content("uploads/u1/data", b"x")
    driver.move("uploads/u1/data", "blobs/x/data")
    writer = driver.writer("uploads/u2/data")
    writer.write(b"y")
    writer.cancel()
    assert all_entries(root) == ["blobs", "blobs/x", "blobs/x/data"]


def test_put_leaves_no_temp_files(driver: FilesystemDriver, root: Path) -> None:
    for i in range(20):
        driver.put_content("dir/file", b"v%d" % i)
    assert all_entries(root) == ["dir", "dir/file"]


def test_failed_put_leaves_old_content_and_no_temp_file(driver: FilesystemDriver, root: Path) -> None:
    driver.put_content("dir/file", b"old")

    with pytest.raises(TypeError):  # not bytes-like: fails after the temp file was opened
        driver.put_content("dir/file", object())  # type: ignore[arg-type]
    assert driver.get_content("dir/file") == b"old"
    assert all_entries(root) == ["dir", "dir/file"]


def test_leftover_temp_files_are_not_listed(driver: FilesystemDriver, root: Path) -> None:
    driver.put_content("dir/file", b"x")
    (root / "dir" / "file.~tmp-0123").write_bytes(b"crash leftover")
    assert driver.list("dir") == ["dir/file"]


def test_append_resumes_in_another_driver_and_process(driver: FilesystemDriver, root: Path) -> None:
    writer = driver.writer("uploads/u/data")
    writer.write(b"first request,")
    writer.close()
    script = (
        "import sys\n"
        "from dockyard.storage.driver.filesystem import FilesystemDriver\n"
        "w = FilesystemDriver(sys.argv[1]).writer('uploads/u/data', append=True)\n"
        "assert w.size == 14, w.size\n"
        "w.write(b'second request,')\n"
        "w.close()\n"
    )
    subprocess.run([sys.executable, "-c", script, str(root)], check=True)
    third = FilesystemDriver(root).writer("uploads/u/data", append=True)
    assert third.size == 29
    third.write(b"third")
    third.commit()
    assert driver.get_content("uploads/u/data") == b"first request,second request,third"


def test_written_bytes_reach_the_file_by_close(driver: FilesystemDriver, root: Path) -> None:
    writer = driver.writer("f")
    writer.write(b"a" * 10)  # smaller than the buffer: held in memory until close
    writer.close()
    assert (root / "f").stat().st_size == 10


def test_os_errors_become_storage_errors(driver: FilesystemDriver, root: Path) -> None:
    if os.geteuid() == 0:
        # root ignores permission bits; a file where a directory must go fails for everyone
        driver.put_content("file", b"x")
        with pytest.raises(StorageError):
            driver.put_content("file/child", b"y")
        return
    driver.put_content("locked/file", b"x")
    (root / "locked").chmod(0o500)
    try:
        with pytest.raises(StorageError):
            driver.put_content("locked/other", b"y")
    finally:
        (root / "locked").chmod(0o700)


def test_missing_file_error_names_the_path(driver: FilesystemDriver) -> None:
    with pytest.raises(PathNotFound, match="no/such"):
        driver.get_content("no/such")


def test_a_lock_excludes_other_processes_and_dies_with_its_holder(
    driver: FilesystemDriver, root: Path
) -> None:
    """try_lock is flock(2) on the directory: another process sees it, and a holder killed with
    SIGKILL leaves it free (a crashed request must not keep its upload locked)."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from dockyard.storage.driver.filesystem import FilesystemDriver\n"
            f"lock = FilesystemDriver({str(root)!r}).try_lock('uploads/u1')\n"
            "assert lock is not None\n"
            "print('locked', flush=True)\n"
            "time.sleep(60)\n",
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"locked\n"
        assert driver.try_lock("uploads/u1") is None
        assert (root / "uploads" / "u1").is_dir()
    finally:
        holder.kill()
        holder.wait()
    lock = driver.try_lock("uploads/u1")
    assert lock is not None and lock.exclusive
    lock.release()
    assert all_entries(root) == []  # released with nothing below it: pruned


def test_a_lock_on_a_directory_deleted_meanwhile_is_not_taken(driver: FilesystemDriver, root: Path) -> None:
    """A holder whose directory was deleted (the upload was cancelled) does not exclude the next one,
    who gets a lock on the directory now at the path."""
    first = driver.try_lock("uploads/u2")
    assert first is not None
    driver.delete("uploads/u2")
    second = driver.try_lock("uploads/u2")
    assert second is not None
    first.release()
    second.release()


def test_a_lock_whose_directory_came_and_went_while_it_was_made_is_taken(
    driver: FilesystemDriver, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another holder's directory existed when mkdir ran and was pruned by its release before makedirs
    looked again: makedirs raises FileExistsError for a path that is not there. try_lock tries again
    (a bench of 1 MiB pushes at c=8 once failed a push with "storage error on uploads/...: File
    exists")."""
    real_makedirs = os.makedirs
    raced: list[str] = []

    def makedirs_losing_the_race(name: str, *args: object, **kwargs: object) -> None:
        if name.endswith("uploads/u9") and not raced:
            raced.append(name)
            raise FileExistsError(17, "File exists", name)
        real_makedirs(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(filesystem.os, "makedirs", makedirs_losing_the_race)
    lock = driver.try_lock("uploads/u9")
    assert raced and lock is not None and lock.exclusive
    lock.release()


def test_locks_released_after_their_bytes_moved_on_leave_nothing_open(
    driver: FilesystemDriver, root: Path
) -> None:
    """A commit's lock goes with its directory at once; the descriptor that held it closes a moment later
    in a thread of its own (the last close of a deleted directory waits for the journal), never leaks."""
    for n in range(20):
        lock = driver.try_lock(f"uploads/u{n}")
        assert lock is not None
        writer = driver.writer(f"uploads/u{n}/data")
        writer.write(b"bytes %d" % n)
        writer.commit_to(f"blobs/b{n}/data")
        lock.release()
        again = driver.try_lock(f"uploads/u{n}")  # the upload's path is free at once
        assert again is not None
        again.release()
    stored = [f"blobs/b{n}" for n in range(20)] + [f"blobs/b{n}/data" for n in range(20)]
    assert all_entries(root) == sorted(["blobs", *stored])  # no upload directory left
    deadline = time.monotonic() + 10
    while descriptors_under(root) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert descriptors_under(root) == []


def test_a_lock_is_released_where_no_closer_thread_can_start(
    driver: FilesystemDriver, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At interpreter shutdown no thread starts: the descriptor is closed in release itself."""

    def refuse(thread: threading.Thread) -> None:
        raise RuntimeError("can't create new thread at interpreter shutdown")

    monkeypatch.setattr(filesystem, "_DEFERRED_CLOSES", filesystem._DeferredCloses(start_thread=refuse))
    lock = driver.try_lock("uploads/u1")
    assert lock is not None and descriptors_under(root) == [str(root.resolve() / "uploads" / "u1")]
    lock.release()
    assert descriptors_under(root) == []
    assert all_entries(root) == []


def test_a_lock_on_an_upload_with_bytes_is_free_for_other_processes_at_release(
    driver: FilesystemDriver, root: Path
) -> None:
    """A chunk's lock (its bytes stay for the next one) is dropped in release itself: the next chunk,
    in any process, gets it at once."""
    lock = driver.try_lock("uploads/u1")
    assert lock is not None
    writer = driver.writer("uploads/u1/data")
    writer.write(b"first chunk")
    writer.close()
    lock.release()
    taken = subprocess.run(
        [
            sys.executable,
            "-c",
            "from dockyard.storage.driver.filesystem import FilesystemDriver\n"
            f"lock = FilesystemDriver({str(root)!r}).try_lock('uploads/u1')\n"
            "print(lock is not None)\n",
        ],
        capture_output=True,
        check=True,
    )
    assert taken.stdout == b"True\n"
    assert (root / "uploads" / "u1" / "data").read_bytes() == b"first chunk"


def test_a_writer_starts_the_disk_writes_as_the_bytes_arrive(
    driver: FilesystemDriver, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every WRITEBACK_EVERY bytes a writer asks the kernel to start writing them (without waiting), so
    the commit's fsync finds most of a large blob on disk already; a chunk's writer starts the rest when
    it closes (else each chunk's tail waited for the commit); a resumed upload goes on from its end."""
    started: list[tuple[int, int]] = []

    def record(fd: int, offset: int, length: int) -> None:
        started.append((offset, length))

    monkeypatch.setattr(filesystem_files, "_WRITEBACK", [record])
    mib = 1 << 20
    assert 4 * mib == filesystem_files.WRITEBACK_EVERY
    writer = driver.writer("uploads/u1/data")
    for _ in range(10):
        writer.write(b"x" * mib)
    assert started == [(0, 4 * mib), (4 * mib, 4 * mib)]
    writer.close()
    assert started[2:] == [(8 * mib, 2 * mib)]
    resumed = driver.writer("uploads/u1/data", append=True)
    resumed.write(b"y" * (5 * mib))
    assert started[3:] == [(10 * mib, 5 * mib)]
    resumed.commit_to("blobs/b1/data")
    assert (root / "blobs/b1/data").stat().st_size == 15 * mib


def test_a_writer_lets_the_kernel_drop_what_is_on_disk_from_the_cache(
    driver: FilesystemDriver, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A range whose writes started one step earlier may leave the page cache as the next bytes
    arrive; the whole file may once the commit's fsync has made it durable, not before."""
    events: list[tuple[str, int, int]] = []
    monkeypatch.setattr(
        filesystem_files, "_WRITEBACK", [lambda fd, offset, length: events.append(("write", offset, length))]
    )
    monkeypatch.setattr(
        filesystem_files, "_drop_cached", lambda fd, offset, length: events.append(("drop", offset, length))
    )
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        events.append(("fsync", 0, 0))
        real_fsync(fd)

    monkeypatch.setattr(filesystem.os, "fsync", fsync)
    mib = 1 << 20
    writer = driver.writer("uploads/u1/data")
    for _ in range(13):
        writer.write(b"x" * mib)
    assert events == [
        ("write", 0, 4 * mib),
        ("write", 4 * mib, 4 * mib),
        ("drop", 0, 4 * mib),
        ("write", 8 * mib, 4 * mib),
        ("drop", 4 * mib, 4 * mib),
    ]
    events.clear()
    writer.commit_to("blobs/b1/data")
    assert events[:2] == [("fsync", 0, 0), ("drop", 0, 0)]  # the file's, then its directory's
    assert (root / "blobs/b1/data").read_bytes() == b"x" * (13 * mib)


def test_a_chunks_writer_starts_its_last_bytes_when_it_closes(
    driver: FilesystemDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A PATCH's writer closes with the bytes since its last WRITEBACK_EVERY step not yet started: it
    starts them (else they wait for the commit's fsync, with the client waiting on the PUT) and lets
    the range started before leave the cache."""
    events: list[tuple[str, int, int]] = []
    monkeypatch.setattr(
        filesystem_files, "_WRITEBACK", [lambda fd, offset, length: events.append(("write", offset, length))]
    )
    monkeypatch.setattr(
        filesystem_files, "_drop_cached", lambda fd, offset, length: events.append(("drop", offset, length))
    )
    mib = 1 << 20
    writer = driver.writer("uploads/u1/data")
    for _ in range(6):
        writer.write(b"x" * mib)
    writer.close()
    assert events == [("write", 0, 4 * mib), ("write", 4 * mib, 2 * mib), ("drop", 0, 4 * mib)]
    events.clear()
    writer.close()  # twice: nothing more
    small = driver.writer("uploads/u1/data", append=True)
    small.write(b"y" * 100)
    small.close()
    assert events == [("write", 6 * mib, 100)]


def test_the_kernels_writeback_call_is_harmless(tmp_path: Path) -> None:
    start_writeback = filesystem_files._load_writeback()
    path = tmp_path / "file"
    with open(path, "wb") as file:
        file.write(b"z" * 65536)
        file.flush()
        start_writeback(file.fileno(), 0, 65536)
        os.fsync(file.fileno())
        filesystem_files._drop_cached(file.fileno(), 0, 0)
    assert path.read_bytes() == b"z" * 65536


def test_a_blob_lands_with_its_file_and_its_new_directory_fsynced_at_once(
    driver: FilesystemDriver, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unlinked writer's `commit_to` fsyncs the file and the directory of its new name at the same
    time (each fsync waits for a disk flush of its own), and returns only once both are done: the
    blob is recorded after that."""
    directory_started = threading.Event()
    done: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            directory_started.set()
            time.sleep(0.2)  # a slow flush: commit_to must still wait for it
            real_fsync(fd)
            done.append("directory")
            return
        # The file's: the directory's began meanwhile (in series it would only start after this).
        assert directory_started.wait(10), "the directory's fsync did not start beside the file's"
        real_fsync(fd)
        done.append("file")

    monkeypatch.setattr(filesystem_files.os, "fsync", fsync)
    (root / "blobs/b1").mkdir(parents=True)  # no new directory to fsync the parent of (a later test's)
    writer = driver.unlinked_writer("uploads/u1/data")
    assert writer is not None
    writer.write(b"x" * 100)
    writer.commit_to("blobs/b1/data")
    assert sorted(done) == ["directory", "file"]
    assert (root / "blobs/b1/data").read_bytes() == b"x" * 100


def test_with_no_sync_thread_free_the_directory_is_fsynced_after_the_file(
    driver: FilesystemDriver, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many commits at once leave no sync thread free: the committing thread fsyncs the directory
    itself, after the file, rather than wait for a thread."""
    release = threading.Event()
    pool = filesystem_files._sync_threads()
    busy = [pool.submit(release.wait, 10) for _ in range(filesystem_files._DIRECTORY_SYNCS)]
    synced: list[tuple[str, int]] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        kind = "directory" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file"
        synced.append((kind, threading.get_ident()))
        real_fsync(fd)

    monkeypatch.setattr(filesystem_files.os, "fsync", fsync)
    (root / "blobs/b2").mkdir(parents=True)  # only the file's name is new
    try:
        writer = driver.unlinked_writer("uploads/u2/data")
        assert writer is not None
        writer.write(b"y" * 100)
        writer.commit_to("blobs/b2/data")
    finally:
        release.set()
        for job in busy:
            job.result()
    here = threading.get_ident()
    assert synced == [("file", here), ("directory", here)]
    assert (root / "blobs/b2/data").read_bytes() == b"y" * 100


def _land_by_unlinked_commit_to(driver: FilesystemDriver, dest: str) -> None:
    writer = driver.unlinked_writer("uploads/u/data")
    assert writer is not None
    writer.write(b"bytes")
    writer.commit_to(dest)


def _land_by_unlinked_commit(driver: FilesystemDriver, dest: str) -> None:
    writer = driver.unlinked_writer(dest)
    assert writer is not None
    writer.write(b"bytes")
    writer.commit()


def _land_by_commit_to(driver: FilesystemDriver, dest: str) -> None:
    writer = driver.writer("uploads/u/data")
    writer.write(b"bytes")
    writer.commit_to(dest)


def _land_by_commit(driver: FilesystemDriver, dest: str) -> None:
    writer = driver.writer(dest)
    writer.write(b"bytes")
    writer.commit()


def _land_by_move(driver: FilesystemDriver, dest: str) -> None:
    (Path(driver.root) / "uploads/u").mkdir(exist_ok=True)  # its fsyncs are not the move's
    (Path(driver.root) / "uploads/u/data").write_bytes(b"bytes")
    driver.move("uploads/u/data", dest)


def _land_by_put(driver: FilesystemDriver, dest: str) -> None:
    driver.put_content(dest, b"bytes")


@pytest.mark.parametrize(
    "land",
    [
        _land_by_unlinked_commit_to,
        _land_by_unlinked_commit,
        _land_by_commit_to,
        _land_by_commit,
        _land_by_move,
        _land_by_put,
    ],
)
def test_a_name_in_new_directories_survives_with_each_of_them(
    driver: FilesystemDriver, root: Path, monkeypatch: pytest.MonkeyPatch, land: Any
) -> None:
    """A new directory's own name is durable only once its parent is fsynced (POSIX; not every
    filesystem's journal does it for the file's fsync): a blob that lands in directories made for it
    returns only once the parent of each is fsynced, as its own directory is. Directories that were
    there already are not fsynced again: a blob in a digest's new directory under an existing prefix
    pays for one directory more, one in an existing directory for none."""
    if (
        land in (_land_by_unlinked_commit_to, _land_by_unlinked_commit)
        and driver.unlinked_writer("x") is None
    ):
        pytest.skip("no O_TMPFILE here")
    synced: list[str] = []
    recording = False
    real_fsync = os.fsync
    lock = threading.Lock()

    def fsync(fd: int) -> None:
        real_fsync(fd)
        if recording and stat.S_ISDIR(os.fstat(fd).st_mode):
            with lock:
                synced.append(os.readlink(f"/proc/self/fd/{fd}"))

    def directories_synced_by(dest: str) -> list[str]:
        nonlocal recording
        synced.clear()
        recording = True
        land(driver, dest)
        recording = False  # what a sync thread did after the landing returned is not counted
        with lock:
            return sorted(str(Path(path).relative_to(root.resolve())) for path in synced)

    monkeypatch.setattr(filesystem_files.os, "fsync", fsync)
    driver.put_content("uploads/other", b"")  # the uploads' directory is there, and is not the blobs'

    assert directories_synced_by("blobs/sha256/ab/abcd/data") == [
        ".",
        "blobs",
        "blobs/sha256",
        "blobs/sha256/ab",
        "blobs/sha256/ab/abcd",
    ]
    assert directories_synced_by("blobs/sha256/ab/abef/data") == ["blobs/sha256/ab", "blobs/sha256/ab/abef"]
    assert directories_synced_by("blobs/sha256/ab/abef/link") == ["blobs/sha256/ab/abef"]
    assert (root / "blobs/sha256/ab/abcd/data").read_bytes() == b"bytes"


def test_a_new_directorys_parent_is_fsynced_beside_the_file(
    driver: FilesystemDriver, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The parent of a digest's new directory is fsynced while the file's fsync runs (each waits for
    a disk flush of its own), not after it: a push into a new directory waits for no flush more."""
    parent = str((root / "blobs/sha256/ab").resolve())
    parent_started = threading.Event()
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if os.readlink(f"/proc/self/fd/{fd}") == parent:
            parent_started.set()
        elif not stat.S_ISDIR(os.fstat(fd).st_mode):  # the file's: the parent's began meanwhile
            assert parent_started.wait(10), "the new directory's parent was not fsynced beside the file"
        real_fsync(fd)

    (root / "blobs/sha256/ab").mkdir(parents=True)
    monkeypatch.setattr(filesystem_files.os, "fsync", fsync)
    writer = driver.unlinked_writer("uploads/u3/data")
    if writer is None:
        pytest.skip("no O_TMPFILE here")
    writer.write(b"z" * 100)
    writer.commit_to("blobs/sha256/ab/abcd/data")
    assert parent_started.is_set()
    assert (root / "blobs/sha256/ab/abcd/data").read_bytes() == b"z" * 100
