"""One `dockyard serve` node with two workers sharing the node's change file: a tag moved or deleted
through one worker is answered anew by every worker as soon as the write is acknowledged, and a write
to one repository leaves the workers' cached answers about the others alone, and a write to one tag
those about the repository's other tags.

To see whether a worker answers from its cache, a tag is moved behind the registry's back (an UPDATE
in the database, which bumps nothing): a worker that cached it keeps answering the old digest.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import yaml
from sqlalchemy import text

from dockyard.db.engine import build_engine
from tests.support.ociclient import ALL_MANIFEST_TYPES, OCIClient
from tests.support.server import RunningServer, start_server
from tests.support.timeouts import HTTP_TIMEOUT

ACCEPT = {"Accept": ", ".join(ALL_MANIFEST_TYPES)}
REQUESTS = 16  # on fresh connections: enough for both workers to answer several


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    server = start_server(tmp_path_factory.mktemp("worker-caches"), {"http": {"workers": 2}})
    try:
        yield server
    finally:
        server.stop()


def digests(node: RunningServer, repo: str, tag: str) -> set[str | int]:
    """What every worker answers for the tag (fresh connections spread over the workers)."""
    seen: set[str | int] = set()
    for _ in range(REQUESTS):
        answer = httpx.get(f"{node.url}/v2/{repo}/manifests/{tag}", timeout=HTTP_TIMEOUT, headers=ACCEPT)
        seen.add(answer.headers["Docker-Content-Digest"] if answer.status_code == 200 else answer.status_code)
    return seen


def move_tag_behind_the_registrys_back(node: RunningServer, repo: str, tag: str, digest: str) -> None:
    config = yaml.safe_load(node.config_path.read_text())
    url = config.get("database", {}).get("url") or f"sqlite:///{node.datadir / 'dockyard.db'}"
    engine = build_engine(url)
    try:
        with engine.begin() as connection:
            moved = connection.execute(
                text(
                    "UPDATE tags SET manifest_id = (SELECT id FROM manifests WHERE digest = :digest) "
                    "WHERE name = :tag AND repository_id = (SELECT id FROM repositories WHERE name = :repo)"
                ),
                {"digest": digest, "tag": tag, "repo": repo},
            )
            assert moved.rowcount == 1
    finally:
        engine.dispose()


def test_a_moved_or_deleted_tag_is_seen_by_every_worker_at_once(node: RunningServer) -> None:
    client = OCIClient(httpx.Client(base_url=node.url, timeout=HTTP_TIMEOUT))
    old = client.push_image("workers/moving", "latest", seed="old").digest
    assert digests(node, "workers/moving", "latest") == {old}  # every worker has it cached now

    new = client.push_image("workers/moving", "latest", seed="new").digest
    assert digests(node, "workers/moving", "latest") == {new}  # no wait: the file moved before the 201

    assert client.http.delete(f"/v2/workers/moving/manifests/{new}").status_code == 202
    assert digests(node, "workers/moving", "latest") == {404}


def test_a_push_to_one_repository_keeps_the_other_repositories_cached(node: RunningServer) -> None:
    client = OCIClient(httpx.Client(base_url=node.url, timeout=HTTP_TIMEOUT))
    kept = client.push_image("workers/kept", "latest", seed="kept").digest
    sneaky = client.push_image("workers/kept", None, seed="sneaky").digest
    client.push_image("workers/busy", "latest", seed="busy-0")
    assert digests(node, "workers/kept", "latest") == {kept}  # cached by both workers
    move_tag_behind_the_registrys_back(node, "workers/kept", "latest", sneaky)
    assert digests(node, "workers/kept", "latest") == {kept}  # answered from the caches

    for round in range(1, 4):  # pushes to another repository, through either worker
        busy = client.push_image("workers/busy", "latest", seed=f"busy-{round}").digest
        assert digests(node, "workers/busy", "latest") == {busy}
        assert digests(node, "workers/kept", "latest") == {kept}  # still cached: not read again

    other = client.push_image("workers/kept", "other", seed="other").digest  # another tag of it
    assert digests(node, "workers/kept", "latest") == {kept}  # still cached: a write to another tag
    assert client.http.delete(f"/v2/workers/kept/manifests/{other}").status_code == 202
    assert digests(node, "workers/kept", "latest") == {sneaky}  # a manifest deleted: read again
