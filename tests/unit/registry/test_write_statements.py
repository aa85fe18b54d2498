"""The statements a push's small requests run (a cross-repository mount, a manifest PUT), on SQLite and
PostgreSQL: one transaction each, nothing read back that the transaction already knows (the
repository's project comes with its id), content the project counts already charged with one INSERT."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import String, cast, event, func, select

from dockyard.content import mediatypes
from dockyard.content.digest import digest_of
from dockyard.db.session import Database
from dockyard.errors import BlobUnknown, DigestInvalid, ManifestBlobUnknown, ManifestInvalid, PathNotFound
from dockyard.projects.interfaces import QuotaExceeded
from dockyard.projects.models import ProjectRow
from dockyard.registry import manifest_writes
from dockyard.registry.models import Manifest, ManifestReference, Repository, Tag
from dockyard.storage.models import Blob, Upload
from tests.unit.gc.fixtures import Env

pytestmark = pytest.mark.db_independent  # `database` runs each test on both databases


@pytest.fixture
def env(database: Database, tmp_path: Path) -> Env:
    return Env.on(database, tmp_path / "storage")


@contextmanager
def statements_of(database: Database) -> Iterator[list[str]]:
    """Every statement sent, transaction control (BEGIN) left out."""
    sent: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if not statement.startswith("BEGIN"):
            sent.append(" ".join(statement.split()))

    event.listen(database.engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(database.engine, "before_cursor_execute", record)


def _image(env: Env, repo: str) -> tuple[dict[str, Any], dict[str, Any], bytes]:
    config = env.push_blob(repo, b'{"os": "linux", "architecture": "amd64"}')
    config["mediaType"] = mediatypes.OCI_CONFIG
    layer = env.push_blob(repo, b"the one layer")
    body = json.dumps(
        {"schemaVersion": 2, "mediaType": mediatypes.OCI_MANIFEST, "config": config, "layers": [layer]}
    ).encode()
    env.registry.put_manifest(repo, "latest", body, mediatypes.OCI_MANIFEST)
    return config, layer, body


def _reads_back_the_project(statements: list[str]) -> list[str]:
    """What the repository's row gives already: its project (by id or by name)."""
    return [s for s in statements if s.startswith(("SELECT repositories.project_id", "SELECT projects.id"))]


def test_a_mount_into_a_new_repository_of_a_known_project(env: Env, database: Database) -> None:
    _, layer, _ = _image(env, "team/base")
    with statements_of(database) as sent:
        assert env.registry.mount_blob("team/new", layer["digest"], "team/base") == layer["size"]
    # The blob from the source with the repository (missing), the repository created in its project,
    # the link, the count (the project counts the layer already: its count row found by the INSERT on
    # SQLite; on PostgreSQL share-locked in the link's statement).
    assert len(sent) == (3 if database.dialect == "postgresql" else 4), sent
    assert not [s for s in sent if s.startswith("INSERT INTO projects")]
    assert _reads_back_the_project(sent) == []
    with database.read() as connection:
        project = connection.scalar(select(ProjectRow.id).where(ProjectRow.name == "team"))
        new = connection.scalar(select(Repository.project_id).where(Repository.name == "team/new"))
    assert new == project


def test_a_mount_into_an_existing_repository(env: Env, database: Database) -> None:
    config, layer, _ = _image(env, "team/base")
    assert env.registry.mount_blob("team/app", config["digest"], "team/base") == config["size"]
    with statements_of(database) as sent:
        assert env.registry.mount_blob("team/app", layer["digest"], "team/base") == layer["size"]
    # The blob with the repository, the link, the count (PostgreSQL: one statement does all three).
    assert len(sent) == (1 if database.dialect == "postgresql" else 3), sent
    assert _reads_back_the_project(sent) == []
    # Counted already: the project's row is not locked, so such pushes into one project run side by side.
    assert not [s for s in sent if "FROM projects" in s]


def test_a_mount_from_another_project_into_an_existing_repository_counts_once(
    env: Env, database: Database
) -> None:
    """A mount into an existing repository (on PostgreSQL linked by the statement that finds the blob)
    charges the project a blob it does not count yet, once; past the project's limit it is refused
    and nothing is linked."""
    config, layer, _ = _image(env, "other/base")
    env.registry.mount_blob("team/app", config["digest"], "other/base")  # team/app exists from here
    env.registry.mount_blob("team/web", config["digest"], "other/base")
    used = env.quotas.get("team").used_bytes
    assert used == config["size"]
    assert env.registry.mount_blob("team/app", layer["digest"], "other/base") == layer["size"]
    assert env.quotas.get("team").used_bytes == used + layer["size"]
    assert env.registry.mount_blob("team/web", layer["digest"], "other/base") == layer["size"]
    assert env.quotas.get("team").used_bytes == used + layer["size"]  # counted once per project
    extra = env.push_blob("other/base", b"one more layer")
    env.quotas.set("team", used + layer["size"])  # full
    with pytest.raises(QuotaExceeded):
        env.registry.mount_blob("team/app", extra["digest"], "other/base")
    with pytest.raises(BlobUnknown):
        env.registry.blob_size("team/app", extra["digest"])  # not linked
    assert env.quotas.get("team").used_bytes == used + layer["size"]


def test_the_first_push_to_a_new_project_creates_it(env: Env, database: Database) -> None:
    _, layer, _ = _image(env, "team/base")
    assert env.registry.mount_blob("fresh/app", layer["digest"], "team/base") == layer["size"]
    with database.read() as connection:
        project = connection.scalar(select(ProjectRow.id).where(ProjectRow.name == "fresh"))
        assert project is not None
        app = connection.scalar(select(Repository.project_id).where(Repository.name == "fresh/app"))
    assert app == project
    assert env.quotas.get("fresh").used_bytes == layer["size"]


def test_a_manifest_put_reads_nothing_back(env: Env, database: Database) -> None:
    config, layer, body = _image(env, "team/base")
    for blob in (config, layer):
        env.registry.mount_blob("team/app", blob["digest"], "team/base")
    with statements_of(database) as sent:
        result = env.registry.put_manifest("team/app", "latest", body, mediatypes.OCI_MANIFEST)
    assert result.digest == digest_of(body)
    # The repository with the blobs, their links, the manifest (new: nothing looked up before), its
    # references, the count, the tag: on PostgreSQL the last five are one statement.
    assert len(sent) == (2 if database.dialect == "postgresql" else 6), "\n".join(sent)
    assert _reads_back_the_project(sent) == []
    assert env.registry.get_manifest("team/app", "latest").digest == result.digest


def test_a_manifest_put_with_a_blob_not_linked_here_or_of_another_size_leaves_nothing(
    env: Env, database: Database
) -> None:
    """The links are checked after the blobs' locks (on PostgreSQL in the statement that inserts the
    manifest): a blob live but not linked to the repository, or linked with another size than the
    descriptor says, refuses the PUT, and the manifest, its references, its tag and its count roll back."""
    config, layer, _ = _image(env, "team/base")
    env.registry.mount_blob("team/app", config["digest"], "team/base")  # the layer is not linked here
    used = env.quotas.get("team").used_bytes
    document = {"schemaVersion": 2, "mediaType": mediatypes.OCI_MANIFEST, "config": config, "layers": [layer]}
    body = json.dumps({**document, "annotations": {"new": "to the project"}}).encode()
    with pytest.raises(ManifestBlobUnknown) as unknown:
        env.registry.put_manifest("team/app", "v1", body, mediatypes.OCI_MANIFEST)
    assert unknown.value.detail == {"digest": layer["digest"], "missing": [layer["digest"]]}
    env.registry.mount_blob("team/app", layer["digest"], "team/base")
    wrong = json.dumps({**document, "layers": [{**layer, "size": layer["size"] + 1}]}).encode()
    with pytest.raises(ManifestInvalid):
        env.registry.put_manifest("team/app", "v1", wrong, mediatypes.OCI_MANIFEST)
    with database.read() as connection:
        manifests = connection.scalar(
            select(func.count())
            .select_from(Manifest)
            .join(Repository, Repository.id == Manifest.repository_id)
            .where(Repository.name == "team/app")
        )
        tags = connection.scalar(
            select(func.count())
            .select_from(Tag)
            .join(Repository, Repository.id == Tag.repository_id)
            .where(Repository.name == "team/app")
        )
        references = connection.scalar(select(func.count()).select_from(ManifestReference))
    assert (manifests, tags, references) == (0, 0, 2)  # team/base's manifest's two references only
    assert env.quotas.get("team").used_bytes == used  # neither manifest counted


def test_a_manifest_put_again_under_another_tag_keeps_its_row(env: Env, database: Database) -> None:
    _, _, body = _image(env, "team/app")
    with statements_of(database) as sent:
        env.registry.put_manifest("team/app", "again", body, mediatypes.OCI_MANIFEST)
    # The repository with the blobs, their links, the INSERT that finds the manifest there, its row
    # (share-locked on PostgreSQL), the tag; no references, no count.
    assert len(sent) == 5, "\n".join(sent)
    with database.read() as connection:
        rows = connection.execute(
            select(Tag.name, Tag.manifest_id)
            .join(Repository, Repository.id == Tag.repository_id)
            .where(Repository.name == "team/app")
        ).all()
        manifests = connection.scalar(
            select(func.count()).select_from(Manifest).where(Manifest.digest == digest_of(body))
        )
        references = connection.scalar(select(func.count()).select_from(ManifestReference))
    assert {name for name, _ in rows} == {"latest", "again"}
    assert len({manifest_id for _, manifest_id in rows}) == 1
    assert manifests == 1
    assert references == 2  # the config and the layer, once


def test_a_manifest_stored_on_the_driver_keeps_its_columns(env: Env, database: Database) -> None:
    """The PUT's INSERT runs on the driver connection: the platform read from the config (once per
    config, however many repositories it is pushed to), no annotations as JSON null, and the
    annotations, subject and references of a manifest that has them, as a Connection stored them."""
    opened: list[str] = []
    open_blob = env.blobs.open

    def counting_open(digest: str, offset: int = 0) -> Any:
        opened.append(digest)
        return open_blob(digest, offset)

    env.blobs.open = counting_open  # type: ignore[method-assign]
    manifest_writes._platforms.clear()  # the process's: an earlier test may have read this config
    config, layer, body = _image(env, "team/base")
    assert opened == [config["digest"]]
    for blob in (config, layer):
        env.registry.mount_blob("team/copy", blob["digest"], "team/base")
    env.registry.put_manifest("team/copy", "latest", body, mediatypes.OCI_MANIFEST)
    assert opened == [config["digest"]]  # the platform of that config is known
    annotated = json.loads(body)
    annotated["annotations"] = {"org.opencontainers.image.title": "annotated"}
    subject = {"mediaType": mediatypes.OCI_MANIFEST, "digest": digest_of(body), "size": len(body)}
    annotated["subject"] = subject
    annotated_body = json.dumps(annotated).encode()
    env.registry.put_manifest("team/copy", "annotated", annotated_body, mediatypes.OCI_MANIFEST)
    with database.read() as connection:
        rows = connection.execute(
            select(Manifest.digest, Manifest.platform, Manifest.annotations, Manifest.subject_digest)
            .join(Repository, Repository.id == Manifest.repository_id)
            .where(Repository.name == "team/copy")
        ).all()
        stored = {row[0]: row[1:] for row in rows}
        null_annotations = connection.scalar(
            select(func.count()).select_from(Manifest).where(cast(Manifest.annotations, String) == "null")
        )
        references = connection.scalars(
            select(ManifestReference.digest)
            .join(Manifest, Manifest.id == ManifestReference.manifest_id)
            .where(Manifest.digest == digest_of(annotated_body))
        ).all()
    platform = {"os": "linux", "architecture": "amd64"}
    assert stored[digest_of(body)] == (platform, None, None)
    assert stored[digest_of(annotated_body)] == (
        platform,
        {"org.opencontainers.image.title": "annotated"},
        digest_of(body),
    )
    assert null_annotations == 2  # team/base's and team/copy's `latest`: JSON null, as before
    assert sorted(references) == sorted([config["digest"], layer["digest"]])


def test_a_blob_upload_commits_in_one_transaction_without_reading_back_its_blob(
    env: Env, database: Database
) -> None:
    """A new blob's commit inserts its row and, having made it, does not look at it again: the
    quota's room (read before anything moves; a server keeps it cached), then in one transaction the
    row, the repository, the link, the count and the usage, the upload's row."""
    env.registry.mount_blob("team/app", env.push_blob("team/base", b"x")["digest"], "team/base")
    data = b"a new layer"
    state = env.blob_uploads.start("team/app")
    session = env.blob_uploads.begin_append(state, commits=True)
    session.write(data)
    state = session.finish(False)
    with statements_of(database) as sent:
        assert env.blob_uploads.commit(state, digest_of(data)) == len(data)
    assert not [s for s in sent if s.startswith("SELECT blobs.deleting_since")], sent
    # PostgreSQL also looks for the count (in the link's statement) and locks the project's row
    # (quotas.charge).
    expected = 8 if database.dialect == "postgresql" else 7
    assert len(sent) == expected, "\n".join(sent)
    with database.read() as connection:
        stored = connection.scalar(select(Blob.size).where(Blob.digest == digest_of(data)))
    assert stored == len(data)


def test_a_single_post_upload_writes_no_upload_row(env: Env, database: Database) -> None:
    """`POST ?digest=` with the whole blob: its session has no row, so it is neither inserted nor
    deleted; the blob is recorded all the same, and a refused one leaves no bytes behind."""
    env.registry.mount_blob("team/app", env.push_blob("team/base", b"x")["digest"], "team/base")
    data = b"a layer in one POST"
    with statements_of(database) as sent:
        state = env.blob_uploads.start("team/app", recorded=False)
        session = env.blob_uploads.begin_append(state, commits=True)
        session.write(data)
        state = session.finish(False)
        assert env.blob_uploads.commit(state, digest_of(data)) == len(data)
    assert not [s for s in sent if "uploads" in s], sent
    with database.read() as connection:
        stored = connection.scalar(select(Blob.size).where(Blob.digest == digest_of(data)))
        uploads = connection.scalar(select(func.count()).select_from(Upload))
    assert (stored, uploads) == (len(data), 0)

    refused = env.blob_uploads.start("team/app", recorded=False)
    session = env.blob_uploads.begin_append(refused, commits=True)
    session.write(b"not what the digest says")
    refused = session.finish(False)
    with pytest.raises(DigestInvalid):
        env.blob_uploads.commit(refused, digest_of(b"something else"))
    env.blob_uploads.drop(refused)
    try:
        left = env.driver.list("uploads")
    except PathNotFound:
        left = []
    assert left == []


def test_a_new_manifest_counts_once_with_its_references_and_tag(env: Env, database: Database) -> None:
    """What the PUT's one statement on PostgreSQL (and its statements on SQLite) leave: the manifest's
    row, its references and the tag; the manifest counted in its project once, the first time (not
    counted yet: the project's row locked and its usage raised), not again from another repository;
    pushed by digest, no tag; past the limit, refused with nothing left behind."""
    config, layer, body = _image(env, "quota/base")
    blobs = config["size"] + layer["size"]
    assert env.quotas.get("quota").used_bytes == blobs + len(body)
    for blob in (config, layer):
        env.registry.mount_blob("quota/copy", blob["digest"], "quota/base")
    env.registry.put_manifest("quota/copy", "v1", body, mediatypes.OCI_MANIFEST)
    assert env.quotas.get("quota").used_bytes == blobs + len(body)  # counted once per project
    by_digest = json.loads(body)
    by_digest["annotations"] = {"pushed": "by digest"}
    by_digest_body = json.dumps(by_digest).encode()
    env.registry.put_manifest(
        "quota/copy", digest_of(by_digest_body), by_digest_body, mediatypes.OCI_MANIFEST
    )
    assert env.quotas.get("quota").used_bytes == blobs + len(body) + len(by_digest_body)
    env.quotas.set("quota", blobs + len(body) + len(by_digest_body))  # full
    refused = json.loads(body)
    refused["annotations"] = {"one": "too many"}
    refused_body = json.dumps(refused).encode()
    with pytest.raises(QuotaExceeded):
        env.registry.put_manifest("quota/copy", "v2", refused_body, mediatypes.OCI_MANIFEST)
    with database.read() as connection:
        tags = connection.execute(
            select(Tag.name, Manifest.digest)
            .join(Manifest, Manifest.id == Tag.manifest_id)
            .join(Repository, Repository.id == Tag.repository_id)
            .where(Repository.name == "quota/copy")
        ).all()
        references = connection.execute(
            select(Manifest.digest, ManifestReference.digest, ManifestReference.kind)
            .join(Manifest, Manifest.id == ManifestReference.manifest_id)
            .join(Repository, Repository.id == Manifest.repository_id)
            .where(Repository.name == "quota/copy")
        ).all()
        refused_rows = connection.scalar(
            select(func.count()).select_from(Manifest).where(Manifest.digest == digest_of(refused_body))
        )
    assert tags == [("v1", digest_of(body))]
    expected = {(config["digest"], "blob"), (layer["digest"], "blob")}
    assert {(d, k) for m, d, k in references if m == digest_of(body)} == expected
    assert {(d, k) for m, d, k in references if m == digest_of(by_digest_body)} == expected
    assert refused_rows == 0
    assert env.quotas.get("quota").used_bytes == blobs + len(body) + len(by_digest_body)
