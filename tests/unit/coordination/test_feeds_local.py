"""What only the node's file feed (`LocalChangeFeed`) does besides the feed contract (test_feeds.py):
its file, and real worker processes that share it."""

from __future__ import annotations

import multiprocessing
import os
import stat
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import pytest

from dockyard.coordination.caches import GenerationCache
from dockyard.coordination.feeds import LocalChangeFeed
from dockyard.coordination.interfaces import Topic, generation_of


def test_local_feeds_on_one_file_see_each_others_bumps(tmp_path: Path) -> None:
    path = tmp_path / "changes"
    first, second = LocalChangeFeed(path), LocalChangeFeed(path)
    for writer, reader in [(first, second), (second, first)]:
        for topic in Topic:
            before = reader.generation(topic)
            writer.bump(topic)
            assert reader.generation(topic) != before
            assert reader.generation(topic) == writer.generation(topic)


def test_local_feed_keeps_generations_when_reopened(tmp_path: Path) -> None:
    # A restarted worker must not go back to a generation another worker cached under.
    path = tmp_path / "changes"
    LocalChangeFeed(path).bump(Topic.MANIFESTS)
    before = LocalChangeFeed(path).generation(Topic.MANIFESTS)
    assert before != 0
    assert LocalChangeFeed(path).generation(Topic.MANIFESTS) == before


def test_local_feed_file_is_private_even_under_a_permissive_umask(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "run" / "changes"
    old_umask = os.umask(0)
    try:
        LocalChangeFeed(path)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.stat().st_size >= 8 * len(Topic)


def test_local_feed_grows_a_short_file(tmp_path: Path) -> None:
    path = tmp_path / "changes"
    path.write_bytes(b"\x01")
    feed = LocalChangeFeed(path)
    feed.bump(Topic.BLOB_DELETES)
    assert path.stat().st_size >= 8 * len(Topic)
    assert LocalChangeFeed(path).generation(Topic.BLOB_DELETES) == feed.generation(Topic.BLOB_DELETES)


def _child_worker(path: str, conn: Connection) -> None:
    """A second process: reports what it sees, bumps when asked."""
    feed = LocalChangeFeed(Path(path))
    cache: GenerationCache[str, str] = GenerationCache(generation_of(feed, Topic.MANIFESTS))
    cache.put("k", "cached in child", cache.current_generation())
    while True:
        command = conn.recv()
        if command == "stop":
            return
        if command == "bump":
            feed.bump(Topic.MANIFESTS)
            conn.send(feed.generation(Topic.MANIFESTS))
        elif command == "read":
            conn.send((feed.generation(Topic.MANIFESTS), cache.get("k")))


@pytest.fixture
def child(tmp_path: Path) -> Iterator[tuple[Path, Callable[[str], Any]]]:
    path = tmp_path / "changes"
    LocalChangeFeed(path)  # create it first, as the server does before forking workers
    context = multiprocessing.get_context("spawn")  # a fresh interpreter, no shared memory but the file
    parent_end, child_end = context.Pipe()
    process = context.Process(target=_child_worker, args=(str(path), child_end))
    process.start()

    def ask(command: str) -> object:
        parent_end.send(command)
        assert parent_end.poll(30), "the child process did not answer"
        return parent_end.recv()

    try:
        yield path, ask
    finally:
        parent_end.send("stop")
        process.join(30)
        if process.is_alive():
            process.kill()
            process.join()
    assert process.exitcode == 0


def test_a_bump_in_another_process_is_seen_here(child: tuple[Path, Callable[[str], Any]]) -> None:
    path, ask = child
    feed = LocalChangeFeed(path)
    cache: GenerationCache[str, str] = GenerationCache(generation_of(feed, Topic.MANIFESTS))
    cache.put("k", "cached in parent", cache.current_generation())
    blob_generation = feed.generation(Topic.BLOB_DELETES)

    child_generation = ask("bump")
    assert feed.generation(Topic.MANIFESTS) == child_generation
    assert cache.get("k") is None  # the other process's write dropped our answer
    assert feed.generation(Topic.BLOB_DELETES) == blob_generation


def test_a_bump_here_is_seen_in_another_process(child: tuple[Path, Callable[[str], Any]]) -> None:
    path, ask = child
    feed = LocalChangeFeed(path)
    generation, cached = ask("read")
    assert generation == feed.generation(Topic.MANIFESTS)
    assert cached == "cached in child"

    feed.bump(Topic.MANIFESTS)
    generation, cached = ask("read")
    assert generation == feed.generation(Topic.MANIFESTS)
    assert cached is None
