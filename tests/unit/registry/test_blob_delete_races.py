"""A blob DELETE racing a manifest PUT that uses the blob, in both orders, on SQLite and PostgreSQL: the
image must never end up with a manifest whose blob is unlinked (its pulls would fail). Each test holds
one side's transaction open at a real point of its code and starts the other side meanwhile."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from dockyard.content import mediatypes
from dockyard.db.session import Database
from dockyard.errors import BlobReferenced, ManifestBlobUnknown
from dockyard.registry import services
from tests.unit.gc.fixtures import Env

pytestmark = pytest.mark.db_independent  # `database` runs each test on both databases
HELD = 0.5  # how long the first side keeps its transaction open once the second has started


@pytest.fixture
def env(database: Database, tmp_path: Path) -> Env:
    return Env.on(database, tmp_path / "storage")


class Outcome:
    """Runs a call in a thread; `error` is what it raised, if anything."""

    def __init__(self, call: Callable[[], Any]) -> None:
        self.error: BaseException | None = None
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(call,), daemon=True)
        self.thread.start()

    def _run(self, call: Callable[[], Any]) -> None:
        try:
            call()
        except BaseException as exc:  # reported to the test
            self.error = exc
        finally:
            self.done.set()

    def wait(self) -> BaseException | None:
        assert self.done.wait(30), "the call never finished"
        return self.error


def hold_inside(monkeypatch: pytest.MonkeyPatch, name: str) -> tuple[threading.Event, threading.Event]:
    """Make services.<name> (a step inside a write transaction) stop after it ran, until released.
    Returns (reached, release)."""
    reached, release = threading.Event(), threading.Event()
    real = getattr(services, name)

    def held(*args: Any, **kwargs: Any) -> Any:
        result = real(*args, **kwargs)
        reached.set()
        assert release.wait(30)
        return result

    monkeypatch.setattr(services, name, held)
    return reached, release


def image(env: Env, repo: str) -> tuple[bytes, str]:
    config = env.push_blob(repo, json.dumps({"os": "linux", "architecture": "amd64"}).encode())
    config["mediaType"] = mediatypes.OCI_CONFIG
    layer = env.push_blob(repo, f"a layer of {repo}".encode())
    document = {"schemaVersion": 2, "mediaType": mediatypes.OCI_MANIFEST, "config": config, "layers": [layer]}
    return json.dumps(document).encode(), layer["digest"]


@pytest.fixture
def released() -> Iterator[list[threading.Event]]:
    """Events to set at the end whatever happens, so no thread stays blocked."""
    events: list[threading.Event] = []
    yield events
    for event in events:
        event.set()


def test_a_delete_during_a_manifest_push_waits_for_it_and_is_refused(
    env: Env, monkeypatch: pytest.MonkeyPatch, released: list[threading.Event]
) -> None:
    body, layer = image(env, "team/app")
    reached, release = hold_inside(monkeypatch, "store_manifest")
    released.append(release)
    push = Outcome(lambda: env.registry.put_manifest("team/app", "v1", body, mediatypes.OCI_MANIFEST))
    assert reached.wait(30)
    delete = Outcome(lambda: env.registry.delete_blob("team/app", layer))
    # The push has checked its blobs and written the manifest, not committed: the delete must wait.
    assert not delete.done.wait(HELD), f"the delete went ahead of the push: {delete.error!r}"
    release.set()
    assert push.wait() is None
    assert isinstance(delete.wait(), BlobReferenced)
    assert env.registry.blob_size("team/app", layer) > 0


def test_a_push_during_a_blob_delete_waits_for_it_and_finds_the_blob_gone(
    env: Env, monkeypatch: pytest.MonkeyPatch, released: list[threading.Event]
) -> None:
    body, layer = image(env, "team/app")
    reached, release = hold_inside(monkeypatch, "release")  # the delete's last step: the link is gone
    released.append(release)
    delete = Outcome(lambda: env.registry.delete_blob("team/app", layer))
    assert reached.wait(30)
    push = Outcome(lambda: env.registry.put_manifest("team/app", "v1", body, mediatypes.OCI_MANIFEST))
    assert not push.done.wait(HELD), f"the push went ahead of the delete: {push.error!r}"
    release.set()
    assert delete.wait() is None
    error = push.wait()
    assert isinstance(error, ManifestBlobUnknown), repr(error)
    assert env.manifest_count() == 0
