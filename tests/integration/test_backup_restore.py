"""`dockyard backup`, `restore` and `verify` against real servers: on SQLite + filesystem, and on a real
PostgreSQL + S3 (SeaweedFS)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
import yaml

from dockyard.db.engine import build_engine
from dockyard.maintenance.postgres_tools import find_tool, libpq_target, run_tool, server_major_version
from tests.support.cli import run_dockyard
from tests.support.ociclient import (
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    OCIClient,
    assert_serves_bit_for_bit,
    descriptor,
    digest_of,
    image_manifest,
    index_manifest,
)
from tests.support.postgres import PostgresServer
from tests.support.seaweedfs import RunningSeaweedFS, start_seaweedfs
from tests.support.server import RunningServer
from tests.support.tables import dump_tables
from tests.support.timeouts import HTTP_TIMEOUT


def sqlite_config(datadir: Path) -> dict[str, Any]:
    """Pinned to SQLite + filesystem whatever DOCKYARD_TEST_DB says: these are the SQLite variants."""
    return {"datadir": str(datadir), "database": {"url": f"sqlite:///{datadir / 'dockyard.db'}"}}


def dockyard(*args: str | Path, config: Path) -> subprocess.CompletedProcess[str]:
    return run_dockyard(*args, "--config", config, env={**os.environ, "COLUMNS": "120"})


def push_images(oci: OCIClient) -> dict[tuple[str, str], bytes]:
    """A few images, a multi-platform index and a 3 MiB layer; returns {(repo, reference): manifest}."""
    pushed: dict[tuple[str, str], bytes] = {}
    for repo, tag in [("library/alpine", "3.19"), ("library/alpine", "latest"), ("team/app", "v1")]:
        manifest = oci.push_image(repo, tag, seed=f"{repo}:{tag}")
        pushed[(repo, tag)] = manifest.body
        pushed[(repo, manifest.digest)] = manifest.body
    big = os.urandom(3 * 1024 * 1024)
    config = json.dumps({"architecture": "arm64", "os": "linux"}).encode()
    oci.push_blob("team/app", big)
    oci.push_blob("team/app", config)
    image_body = image_manifest(descriptor(OCI_CONFIG, config), [descriptor(OCI_LAYER, big)])
    child = oci.push_manifest("team/app", digest_of(image_body), image_body, OCI_MANIFEST)
    platform = {"os": "linux", "architecture": "arm64"}
    index_body = index_manifest([child.descriptor(platform=platform)])
    index = oci.push_manifest("team/app", "multi", index_body, OCI_INDEX)
    pushed[("team/app", child.digest)] = child.body
    pushed[("team/app", "multi")] = index.body
    return pushed


def assert_serves(url: str, pushed: dict[tuple[str, str], bytes]) -> None:
    """Every manifest by its reference, and every blob it names, bit for bit; and the listings."""
    oci = assert_serves_bit_for_bit(url, pushed)
    try:
        assert sorted(oci.catalog()) == sorted({repo for repo, _ in pushed})
        assert sorted(oci.tags("library/alpine") or []) == ["3.19", "latest"]
        assert sorted(oci.tags("team/app") or []) == ["multi", "v1"]
    finally:
        oci.http.close()


@pytest.mark.db_independent  # SQLite + filesystem whatever DOCKYARD_TEST_DB says
def test_backup_then_restore_into_an_empty_deployment_serves_every_image_bit_for_bit(
    make_server: Callable[..., RunningServer], tmp_path: Path
) -> None:
    source = make_server(sqlite_config(tmp_path / "source"))
    with httpx.Client(base_url=source.url, timeout=HTTP_TIMEOUT) as http:
        pushed = push_images(OCIClient(http))
    dest = tmp_path / "backup"

    first = dockyard("backup", dest, config=source.config_path)  # online: the server keeps running
    assert first.returncode == 0, first.stderr
    manifest = json.loads((dest / "manifest.json").read_text())
    assert manifest["counts"]["repositories"] == 2
    assert manifest["counts"]["tags"] == 4
    assert manifest["counts"]["manifests"] == 5
    assert manifest["counts"]["blobs"] == 8
    assert manifest["schema_revision"]
    assert "8 blobs (8 new" in first.stdout

    again = dockyard("backup", dest, config=source.config_path)
    assert again.returncode == 0, again.stderr
    assert "8 blobs (0 new, 0 bytes copied)" in again.stdout  # content-addressed: incremental

    target_dir = tmp_path / "restored"
    target_config = tmp_path / "restored.yml"
    target_config.write_text(yaml.safe_dump(sqlite_config(target_dir)))
    restored = dockyard("restore", dest, config=target_config)
    assert restored.returncode == 0, restored.stderr
    source.stop()  # the restored copy serves on its own

    target = make_server(sqlite_config(target_dir))
    assert_serves(target.url, pushed)

    refused = dockyard("restore", dest, config=target_config)
    assert refused.returncode == 1
    assert "empty deployment" in refused.stderr
    target.stop()
    forced = dockyard("restore", "--force", dest, config=target_config)
    assert forced.returncode == 0, forced.stderr
    assert_serves(make_server(sqlite_config(target_dir)).url, pushed)


def test_restore_refuses_a_directory_that_is_not_a_backup(tmp_path: Path) -> None:
    config = tmp_path / "config.yml"
    config.write_text(yaml.safe_dump(sqlite_config(tmp_path / "data")))
    (tmp_path / "nothing").mkdir()
    result = dockyard("restore", tmp_path / "nothing", config=config)
    assert result.returncode == 1
    assert "not a dockyard backup" in result.stderr


@pytest.mark.db_independent  # SQLite + filesystem whatever DOCKYARD_TEST_DB says
def test_verify_finds_a_missing_blob_and_deep_finds_a_corrupt_one(
    make_server: Callable[..., RunningServer], tmp_path: Path
) -> None:
    server = make_server(sqlite_config(tmp_path / "data"))
    with httpx.Client(base_url=server.url, timeout=HTTP_TIMEOUT) as http:
        oci = OCIClient(http)
        first = json.loads(oci.push_image("verify/one", "v1").body)
        second = json.loads(oci.push_image("verify/two", "v1").body)

    healthy = dockyard("verify", "--deep", config=server.config_path)
    assert healthy.returncode == 0, healthy.stderr
    assert "verified 2 manifests and 4 blobs" in healthy.stdout

    def blob_file(digest: str) -> Path:
        algorithm, hex_digest = digest.split(":")
        return tmp_path / "data" / "storage" / "blobs" / algorithm / hex_digest[:2] / hex_digest / "data"

    corrupt = first["layers"][0]["digest"]
    data = bytearray(blob_file(corrupt).read_bytes())
    data[0] ^= 0xFF  # same size: only hashing finds it
    blob_file(corrupt).write_bytes(bytes(data))
    shallow = dockyard("verify", config=server.config_path)
    assert shallow.returncode == 0, shallow.stderr
    deep = dockyard("verify", "--deep", config=server.config_path)
    assert deep.returncode == 1
    assert f"blob {corrupt}: corrupt" in deep.stderr

    missing = second["config"]["digest"]
    blob_file(missing).unlink()
    shallow = dockyard("verify", config=server.config_path)
    assert shallow.returncode == 1
    assert f"blob {missing}: missing from storage" in shallow.stderr
    assert corrupt not in shallow.stderr


# --- PostgreSQL + S3 ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def postgres(postgres_server: PostgresServer) -> PostgresServer:
    """Databases of the tests' own on the run's PostgreSQL (tests/support/postgres_shared.py)."""
    return postgres_server


@pytest.fixture(scope="module")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSeaweedFS]:
    store = start_seaweedfs(tmp_path_factory.mktemp("seaweedfs"))
    try:
        yield store
    finally:
        store.stop()


def s3_client(store: RunningSeaweedFS) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=store.endpoint,
        aws_access_key_id=store.access_key,
        aws_secret_access_key=store.secret_key,
        region_name="us-east-1",
    )


def postgres_s3_config(
    datadir: Path, database_url: str, store: RunningSeaweedFS, bucket: str
) -> dict[str, Any]:
    s3 = {
        "bucket": bucket,
        "region": "us-east-1",
        "regionendpoint": store.endpoint,
        "accesskey": store.access_key,
        "secretkey": store.secret_key,
        "rootdirectory": "/registry",
    }
    # The restored server streams blobs itself (no presigned redirect), so the check reads them through it.
    return {
        "datadir": str(datadir),
        "database": {"url": database_url.replace("postgresql+psycopg://", "postgresql://", 1)},
        "storage": {"s3": s3, "redirect": {"disable": True}},
    }


@pytest.mark.db_independent  # PostgreSQL + S3 whatever DOCKYARD_TEST_DB says
def test_backup_and_restore_on_postgresql_and_s3_serves_every_image_bit_for_bit(
    make_server: Callable[..., RunningServer],
    postgres: PostgresServer,
    seaweedfs: RunningSeaweedFS,
    tmp_path: Path,
) -> None:
    source_config = postgres_s3_config(
        tmp_path / "source", postgres.create_database(), seaweedfs, seaweedfs.bucket
    )
    source = make_server(source_config)
    with httpx.Client(base_url=source.url, timeout=HTTP_TIMEOUT) as http:
        oci = OCIClient(http)
        pushed = push_images(oci)
        dest = tmp_path / "backup"
        first = dockyard("backup", dest, config=source.config_path)  # online: the server keeps serving
        assert first.returncode == 0, first.stderr
        assert "8 blobs (8 new" in first.stdout
        manifest = json.loads((dest / "manifest.json").read_text())
        # Backend-neutral: a SQLite file of the PostgreSQL database's rows.
        assert manifest["database"] == {**manifest["database"], "dialect": "sqlite", "source": "postgresql"}
        assert (dest / manifest["database"]["file"]).stat().st_size > 0
        assert manifest["counts"] == {**manifest["counts"], "repositories": 2, "manifests": 5, "tags": 4}

        later = oci.push_image("team/later", "v1", seed="after the first backup")
        pushed[("team/later", "v1")] = later.body
    second = dockyard("backup", dest, config=source.config_path)
    assert second.returncode == 0, second.stderr
    # Content-addressed: only the new image's config and layer are copied.
    assert "10 blobs (2 new" in second.stdout

    bucket = "restored"
    s3_client(seaweedfs).create_bucket(Bucket=bucket)
    target_config = postgres_s3_config(tmp_path / "restored", postgres.create_database(), seaweedfs, bucket)
    target_config_path = tmp_path / "restored.yml"
    target_config_path.write_text(yaml.safe_dump(target_config))
    restored = dockyard("restore", dest, config=target_config_path)
    assert restored.returncode == 0, restored.stderr
    assert "10 blobs" in restored.stdout
    source.stop()  # the restored copy serves on its own

    refused = dockyard("restore", dest, config=target_config_path)
    assert refused.returncode == 1
    assert "already holds" in refused.stderr and "empty deployment" in refused.stderr
    forced = dockyard("restore", "--force", dest, config=target_config_path)
    assert forced.returncode == 0, forced.stderr

    target = make_server(target_config)
    oci_check = assert_serves_bit_for_bit(target.url, pushed)
    try:
        assert sorted(oci_check.catalog()) == ["library/alpine", "team/app", "team/later"]
        assert sorted(oci_check.tags("team/app") or []) == ["multi", "v1"]
    finally:
        oci_check.http.close()

    healthy = dockyard("verify", "--deep", config=target_config_path)
    assert healthy.returncode == 0, healthy.stderr
    assert "verified 6 manifests and 10 blobs" in healthy.stdout

    # Same size, other bytes: only --deep (hashing through the S3 driver) finds it.
    layer = json.loads(later.body)["layers"][0]["digest"]
    client = s3_client(seaweedfs)
    (key,) = [
        item["Key"]
        for item in client.list_objects_v2(Bucket=bucket, Prefix="registry/blobs")["Contents"]
        if item["Key"].endswith(f"{layer.split(':')[1]}/data")
    ]
    original = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    client.put_object(Bucket=bucket, Key=key, Body=bytes([original[0] ^ 0xFF]) + original[1:])
    assert dockyard("verify", config=target_config_path).returncode == 0
    deep = dockyard("verify", "--deep", config=target_config_path)
    assert deep.returncode == 1
    assert f"blob {layer}: corrupt" in deep.stderr


@pytest.mark.db_independent  # SQLite into PostgreSQL and back, whatever DOCKYARD_TEST_DB says
def test_a_backup_restores_into_the_other_kind_of_database(
    make_server: Callable[..., RunningServer], postgres: PostgresServer, tmp_path: Path
) -> None:
    source = make_server(sqlite_config(tmp_path / "source"))
    with httpx.Client(base_url=source.url, timeout=HTTP_TIMEOUT) as http:
        pushed = push_images(OCIClient(http))
    # Stopped first: the audit log writes the pushes' events up to a second late, at the latest on exit.
    source.stop()
    from_sqlite = tmp_path / "from-sqlite"
    assert dockyard("backup", from_sqlite, config=source.config_path).returncode == 0

    # SQLite's backup into PostgreSQL.
    url = postgres.create_database()
    on_postgres = {**sqlite_config(tmp_path / "pg"), "database": {"url": plain(url)}}
    config = tmp_path / "postgres.yml"
    config.write_text(yaml.safe_dump(on_postgres))
    restored = dockyard("restore", from_sqlite, config=config)
    assert restored.returncode == 0, restored.stderr
    assert same_rows(f"sqlite:///{tmp_path / 'source' / 'dockyard.db'}", url)
    server = make_server(on_postgres)
    assert_serves(server.url, pushed)
    with httpx.Client(base_url=server.url, timeout=HTTP_TIMEOUT) as http:  # new ids after the copied ones
        later = OCIClient(http).push_image("library/alpine", "edge", seed="after the restore")
    pushed[("library/alpine", "edge")] = later.body

    # And PostgreSQL's backup (a SQLite file of its rows) into SQLite.
    # Stopped first: it writes the pulls above (last_pulled_at) a few seconds late, at the latest on exit.
    server.stop()
    from_postgres = tmp_path / "from-postgres"
    backed_up = dockyard("backup", from_postgres, config=server.config_path)
    assert backed_up.returncode == 0, backed_up.stderr
    config = tmp_path / "sqlite.yml"
    config.write_text(yaml.safe_dump(sqlite_config(tmp_path / "back")))
    restored = dockyard("restore", from_postgres, config=config)
    assert restored.returncode == 0, restored.stderr
    assert same_rows(url, f"sqlite:///{tmp_path / 'back' / 'dockyard.db'}")
    back = make_server(sqlite_config(tmp_path / "back"))
    oci = assert_serves_bit_for_bit(back.url, pushed)
    try:
        assert sorted(oci.tags("library/alpine") or []) == ["3.19", "edge", "latest"]
    finally:
        oci.http.close()


@pytest.mark.db_independent  # PostgreSQL whatever DOCKYARD_TEST_DB says
def test_an_older_backup_made_with_pg_dump_still_restores_into_postgresql(
    make_server: Callable[..., RunningServer], postgres: PostgresServer, tmp_path: Path
) -> None:
    url = postgres.create_database()
    config = {**sqlite_config(tmp_path / "source"), "database": {"url": plain(url)}}
    source = make_server(config)
    with httpx.Client(base_url=source.url, timeout=HTTP_TIMEOUT) as http:
        pushed = push_images(OCIClient(http))
    dest = tmp_path / "backup"
    assert dockyard("backup", dest, config=source.config_path).returncode == 0
    source.stop()
    # What dockyard wrote before the SQLite format: pg_dump's archive in place of database.sqlite3.
    (dest / "database.sqlite3").unlink()
    uri, env = libpq_target(url)
    engine = build_engine(url)
    with engine.connect() as connection:
        pg_dump = find_tool("pg_dump", server_major_version(connection))
    engine.dispose()
    run_tool([pg_dump, "--format=custom", f"--file={dest / 'database.pgdump'}", f"--dbname={uri}"], env)
    manifest = json.loads((dest / "manifest.json").read_text())
    manifest["database"] = {"dialect": "postgresql", "file": "database.pgdump", "server_major": 15}
    (dest / "manifest.json").write_text(json.dumps(manifest))

    into_sqlite = tmp_path / "sqlite.yml"
    into_sqlite.write_text(yaml.safe_dump(sqlite_config(tmp_path / "nope")))
    refused = dockyard("restore", dest, config=into_sqlite)
    assert refused.returncode == 2
    assert "pg_dump archive" in refused.stderr

    target = {**sqlite_config(tmp_path / "restored"), "database": {"url": plain(postgres.create_database())}}
    target_path = tmp_path / "restored.yml"
    target_path.write_text(yaml.safe_dump(target))
    restored = dockyard("restore", dest, config=target_path)
    assert restored.returncode == 0, restored.stderr
    assert_serves(make_server(target).url, pushed)


def plain(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def same_rows(first: str, second: str) -> bool:
    """Every table holds the same rows in both databases (read through the models)."""
    engines = [build_engine(first), build_engine(second)]
    try:
        with engines[0].connect() as one, engines[1].connect() as other:
            left, right = dump_tables(one), dump_tables(other)
        for table in left:
            assert left[table] == right[table], f"table {table} differs"
        return True
    finally:
        for engine in engines:
            engine.dispose()
