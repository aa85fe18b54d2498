"""Online garbage collection against a real server: `dockyard garbage-collect` runs in a loop while
clients push images that share layers; afterwards every pushed image pulls bit for bit and storage holds
exactly what the manifests use (SQLite, or PostgreSQL under DOCKYARD_TEST_DB=postgresql)."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import Engine, text

from dockyard.config.loader import load_settings
from dockyard.db.engine import build_engine
from tests.support.cli import run_dockyard
from tests.support.ociclient import (
    OCI_CONFIG,
    OCI_LAYER,
    OCI_MANIFEST,
    OCIClient,
    assert_serves_bit_for_bit,
    descriptor,
    digest_of,
    image_manifest,
)
from tests.support.server import RunningServer
from tests.support.timeouts import HTTP_TIMEOUT

WINDOW = "10m"  # what the pushes below do is younger; the garbage is made to look 5 hours old
BASE_LAYER = os.urandom(256 * 1024)  # every image shares it
PUSHERS = 4
IMAGES_PER_PUSHER = 5

Pushed = dict[tuple[str, str], bytes]


def gc(server: RunningServer, *args: str) -> subprocess.CompletedProcess[str]:
    return run_dockyard("garbage-collect", "--config", server.config_path, *args)


@contextmanager
def metadata_db(server: RunningServer) -> Iterator[Engine]:
    engine = build_engine(load_settings(server.config_path, {}).database_url)
    try:
        yield engine
    finally:
        engine.dispose()


def stored_blobs(server: RunningServer) -> set[str]:
    root = load_settings(server.config_path, {}).storage_root / "blobs"
    return {f"{data.parent.parent.parent.name}:{data.parent.name}" for data in root.rglob("data")}


def push_image(oci: OCIClient, repo: str, tag: str, layers: list[bytes]) -> bytes:
    diff_ids = [digest_of(layer) for layer in layers]  # stands in for the uncompressed layers' digests
    config = json.dumps({"os": "linux", "architecture": "amd64", "rootfs": {"diff_ids": diff_ids}}).encode()
    for blob in [config, *layers]:
        if oci.head_blob(repo, digest_of(blob)).status_code != 200:  # what clients do: skip what is there
            oci.push_blob(repo, blob)
    body = image_manifest(descriptor(OCI_CONFIG, config), [descriptor(OCI_LAYER, layer) for layer in layers])
    oci.push_manifest(repo, tag, body, OCI_MANIFEST)
    return body


def blobs_of(body: bytes) -> set[str]:
    document = json.loads(body)
    return {document["config"]["digest"], *(layer["digest"] for layer in document["layers"])}


def make_garbage(server: RunningServer) -> tuple[Pushed, set[str]]:
    """Old content: kept images, and what nothing uses any more (deleted manifests' own layers and an
    upload never used). Returns the kept images and the garbage blob digests."""
    garbage: set[str] = set()
    kept: Pushed = {}
    with httpx.Client(base_url=server.url, timeout=HTTP_TIMEOUT) as http:
        oci = OCIClient(http)
        for number in range(3):
            repo = f"gc/old-{number}"
            kept[(repo, "stable")] = push_image(oci, repo, "stable", [BASE_LAYER, f"kept {number}".encode()])
            doomed = push_image(oci, repo, "doomed", [BASE_LAYER, f"doomed {number}".encode()])
            response = http.delete(f"/v2/{repo}/manifests/{digest_of(doomed)}")
            assert response.status_code == 202, response.text
            garbage |= blobs_of(doomed) - {digest_of(BASE_LAYER)}
        garbage.add(oci.push_blob("gc/old-0", b"uploaded, never used by a manifest"))
    with metadata_db(server) as engine, engine.begin() as connection:  # make all of it old
        old = datetime.now(UTC) - timedelta(hours=5)
        connection.execute(text("UPDATE blobs SET created_at = :old"), {"old": old})
        connection.execute(
            text("UPDATE blobs SET unreferenced_at = :old WHERE unreferenced_at IS NOT NULL"), {"old": old}
        )
        connection.execute(text("UPDATE repository_blobs SET created_at = :old"), {"old": old})
        connection.execute(text("UPDATE manifests SET created_at = :old"), {"old": old})
    return kept, garbage


def in_threads(*targets: Callable[[], None]) -> list[BaseException]:
    errors: list[BaseException] = []

    def guarded(target: Callable[[], None]) -> None:
        try:
            target()
        except BaseException as exc:  # reported by the test, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(target,)) for target in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    return errors


def test_gc_while_pushing_keeps_every_pushed_image_and_removes_exactly_the_old_garbage(
    make_server: Callable[..., RunningServer],
) -> None:
    server = make_server()
    kept, garbage = make_garbage(server)
    assert garbage <= stored_blobs(server)

    dry = gc(server, "--dry-run", "--min-age", WINDOW)
    assert dry.returncode == 0, dry.stderr
    assert {
        line.split(": ")[1] for line in dry.stdout.splitlines() if line.startswith("blob eligible")
    } == garbage
    assert f"would delete 0 manifests and {len(garbage)} blobs" in dry.stdout
    assert garbage <= stored_blobs(server)  # a dry run deletes nothing

    pushed: Pushed = {}
    pushing = threading.Event()
    pushing.set()
    runs: list[subprocess.CompletedProcess[str]] = []

    def pusher(number: int) -> Callable[[], None]:
        def push() -> None:
            with httpx.Client(base_url=server.url, timeout=HTTP_TIMEOUT) as http:
                oci = OCIClient(http)
                for image in range(IMAGES_PER_PUSHER):
                    repo = f"gc/live-{image % 2}"  # pushers share repositories too
                    tag = f"p{number}-{image}"
                    layers = [BASE_LAYER, f"pusher {number}".encode() * 1000, os.urandom(4096)]
                    pushed[(repo, tag)] = push_image(oci, repo, tag, layers)

        return push

    def collect_in_a_loop() -> None:
        while pushing.is_set() or len(runs) < 2:
            runs.append(gc(server, "--min-age", WINDOW))

    def pushers() -> None:
        try:
            errors = in_threads(*(pusher(n) for n in range(PUSHERS)))
            assert not errors, errors
        finally:
            pushing.clear()

    errors = in_threads(pushers, collect_in_a_loop)
    assert not errors, errors
    assert len(pushed) == PUSHERS * IMAGES_PER_PUSHER
    assert all(run.returncode == 0 for run in runs), [run.stderr for run in runs]
    assert any("deleted 0 manifests and" in run.stdout and "freed" in run.stdout for run in runs)

    # The garbage went (in whichever run got to it); everything pushed or kept is served whole.
    assert not garbage & stored_blobs(server)
    assert_serves_bit_for_bit(server.url, {**kept, **pushed}).http.close()
    expected = set().union(*(blobs_of(body) for body in [*kept.values(), *pushed.values()]))
    assert stored_blobs(server) == expected
    final = gc(server, "--min-age", WINDOW)
    assert final.returncode == 0, final.stderr
    assert "deleted 0 manifests and 0 blobs" in final.stdout


def test_delete_untagged_removes_old_untagged_images_with_their_layers(
    make_server: Callable[..., RunningServer],
) -> None:
    server = make_server()
    with httpx.Client(base_url=server.url, timeout=HTTP_TIMEOUT) as http:
        oci = OCIClient(http)
        first = push_image(oci, "gc/app", "latest", [BASE_LAYER, b"release 1"])
        second = push_image(oci, "gc/app", "latest", [BASE_LAYER, b"release 2"])  # the tag moves on
    zero_window = gc(server, "--delete-untagged", "--min-age", "0s", "--dry-run")
    assert zero_window.returncode == 0, zero_window.stderr
    assert f"manifest eligible for deletion: gc/app@{digest_of(first)}" in zero_window.stdout

    kept_by_window = gc(server, "--delete-untagged")  # default window: 2 hours
    assert "deleted 0 manifests and 0 blobs" in kept_by_window.stdout

    real = gc(server, "--delete-untagged", "--min-age", "0s")
    assert real.returncode == 0, real.stderr
    assert f"deleted manifest: gc/app@{digest_of(first)}" in real.stdout
    assert "deleted 1 manifests and 2 blobs" in real.stdout  # release 1's layer and config
    with httpx.Client(base_url=server.url, timeout=HTTP_TIMEOUT) as http:
        assert OCIClient(http).get_manifest("gc/app", digest_of(first)).status_code == 404
    assert_serves_bit_for_bit(server.url, {("gc/app", "latest"): second}).http.close()
    assert stored_blobs(server) == blobs_of(second)
