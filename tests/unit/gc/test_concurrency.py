"""Manifest PUTs racing the sweep: never a manifest whose blob (or child manifest) is gone."""

from __future__ import annotations

import json
import threading

import pytest
from sqlalchemy import select

from dockyard.content import mediatypes
from dockyard.errors import ManifestBlobUnknown
from dockyard.gc.interfaces import GCOptions
from dockyard.registry.models import Manifest, ManifestReference
from dockyard.storage.models import Blob
from tests.unit.gc.fixtures import Env

# Each test runs on SQLite and on PostgreSQL itself (tests/unit/gc/conftest.py's `db`).
pytestmark = pytest.mark.db_independent

ROUNDS = 60


def _image_body(config: dict[str, object]) -> bytes:
    document = {
        "schemaVersion": 2,
        "mediaType": mediatypes.OCI_MANIFEST,
        "config": {**config, "mediaType": mediatypes.OCI_CONFIG},
        "layers": [],
    }
    return json.dumps(document).encode()


def test_manifest_puts_racing_the_sweep_never_lose_a_referenced_blob(env: Env) -> None:
    # Blobs pushed but not yet used by a manifest; the collector (3 h ahead, no window) wants them all.
    blobs = [env.push_blob("team/race", f"config {n}".encode()) for n in range(ROUNDS)]
    collector = env.collector()
    outcomes = {"pushed": 0, "lost the race": 0}
    done = threading.Event()
    errors: list[BaseException] = []

    def push() -> None:
        try:
            for number, blob in enumerate(blobs):
                try:
                    env.registry.put_manifest(
                        "team/race", f"t{number}", _image_body(blob), mediatypes.OCI_MANIFEST
                    )
                    outcomes["pushed"] += 1
                except ManifestBlobUnknown:
                    outcomes["lost the race"] += 1  # the sweep got there first: the client uploads again
        except BaseException as exc:
            errors.append(exc)
        finally:
            done.set()

    def collect() -> None:
        try:
            while not done.is_set():
                collector.run(GCOptions(min_age=GCOptions().min_age * 0, batch_size=7))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=push), threading.Thread(target=collect)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    assert outcomes["pushed"] + outcomes["lost the race"] == ROUNDS

    with env.db.read() as connection:
        referenced = set(
            connection.scalars(select(ManifestReference.digest).where(ManifestReference.kind == "blob"))
        )
        rows = set(connection.scalars(select(Blob.digest)))
        manifests = connection.scalar(select(Manifest.id).limit(1))
    assert referenced <= rows, "a manifest references a blob whose row is gone"
    assert referenced <= env.stored_digests(), "a manifest references a blob whose bytes are gone"
    assert (manifests is not None) == (outcomes["pushed"] > 0)
    # Once the pushes are over, one more run leaves exactly what the manifests use.
    collector.run(GCOptions(min_age=GCOptions().min_age * 0))
    assert env.blob_digests() == referenced == env.stored_digests()


def test_index_puts_racing_the_sweep_never_lose_a_child(env: Env) -> None:
    children = [env.push_image("team/multi", None, [f"layer {n}".encode()], seed=str(n)) for n in range(20)]
    collector = env.collector()
    done = threading.Event()
    errors: list[BaseException] = []

    def push() -> None:
        try:
            for number, child in enumerate(children):
                try:
                    env.push_index("team/multi", f"t{number}", [child])
                except (ManifestBlobUnknown, Exception) as exc:  # the child went first
                    if "unknown" not in str(exc).lower():
                        raise
        except BaseException as exc:
            errors.append(exc)
        finally:
            done.set()

    def collect() -> None:
        try:
            while not done.is_set():
                collector.run(GCOptions(min_age=GCOptions().min_age * 0, delete_untagged=True, batch_size=3))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=push), threading.Thread(target=collect)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    with env.db.read() as connection:
        listed = set(
            connection.scalars(select(ManifestReference.digest).where(ManifestReference.kind == "manifest"))
        )
        present = set(connection.scalars(select(Manifest.digest)))
    assert listed <= present, "an index lists a child manifest that was collected"
