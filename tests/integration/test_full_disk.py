"""A full disk on a real `dockyard serve` (two workers, auth on): writes are refused with 507 and a body
saying storage is full, pulls and every read go on, no worker dies, and writes work again once space is
freed, without a restart. The disk is a real tmpfs the test mounts.

Before the fix: pushes got `500 UNKNOWN`, then the workers died of SIGBUS writing into holes of their
memory-mapped run files (metrics, drain counts), the server saw a crash loop and exited, and every pull
got "connection refused".
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from dockyard.observability.metrics import FLUSH_SECONDS
from tests.support.authz import Session, login
from tests.support.ociclient import (
    OCI_MANIFEST,
    OCIClient,
    bearer_client,
    describe,
    digest_of,
)
from tests.support.server import RunningServer, start_server
from tests.support.timeouts import HTTP_TIMEOUT
from tests.support.tmpfs import database_on_small_filesystem, fill, small_filesystem

ADMIN_PASSWORD = "full-disk-admin-password-1"
ADMIN = ("admin", ADMIN_PASSWORD)
PULLER = ("puller", "puller-password-never-used-1")
REPO = "full/app"
LAYER = 1 << 20
RESERVE = 6 << 20  # set aside at the start, freed at the end: room for the pushes after
SQLITE = os.environ.get("DOCKYARD_TEST_DB", "sqlite") == "sqlite"


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    with small_filesystem(tmp_path / "disk", "40m") as mounted:
        yield mounted


def worker_pids(server: RunningServer) -> set[int]:
    """The serve process's children: its HTTP workers and its job runner."""
    found = subprocess.run(["pgrep", "-P", str(server.process.pid)], capture_output=True, text=True)
    return {int(pid) for pid in found.stdout.split()}


_sessions: dict[str, Session] = {}


def api(server: RunningServer, method: str, path: str, body: Any = None) -> httpx.Response:
    """A management API call as admin, in a session (Basic auth would hash the password again after
    every write: a write forgets the logins each worker remembers)."""
    with httpx.Client(base_url=server.url, timeout=HTTP_TIMEOUT) as http:
        if server.url not in _sessions:
            _sessions[server.url] = login(http, *ADMIN)
        headers = _sessions[server.url].headers(method)
        return http.request(method, f"/api/v1{path}", json=body, headers=headers)


def past_metrics_flush() -> None:
    """Until each worker has written the requests it answered into its metrics file (a thread does
    every FLUSH_SECONDS): the write that once hit a hole of the file on a full disk and killed it."""
    time.sleep(FLUSH_SECONDS + 0.2)


def push_layer(oci: OCIClient, data: bytes) -> httpx.Response:
    start = oci.start_upload(REPO)
    if start.status_code != 202:
        return start
    return oci.finish_upload(start.headers["Location"], digest_of(data), data)


def assert_storage_full(response: httpx.Response) -> None:
    assert response.status_code == 507, describe(response)
    body = response.json()
    message = body["errors"][0]["message"]
    assert "storage is full" in message, describe(response)
    assert "/disk" not in response.text and "Errno" not in response.text  # no internals


def assert_pulls(server: RunningServer, image: dict[str, bytes], credentials: tuple[str, str]) -> None:
    """The image pulls whole (manifest by tag, every blob), with a fresh token for `credentials`."""
    with bearer_client(server.url, credentials, (REPO,)) as http:
        manifest = http.get(f"/v2/{REPO}/manifests/v1", headers={"Accept": OCI_MANIFEST})
        assert manifest.status_code == 200, describe(manifest)
        assert manifest.content == image["manifest"]
        for name in ("config", "layer"):
            blob = http.get(f"/v2/{REPO}/blobs/{digest_of(image[name])}")
            assert blob.status_code == 200, describe(blob)
            assert blob.content == image[name]
        assert "v1" in http.get(f"/v2/{REPO}/tags/list").json()["tags"]


def test_a_full_disk_refuses_writes_with_507_and_keeps_serving_pulls(disk: Path, tmp_path: Path) -> None:
    settings = {
        "datadir": str(disk / "data"),
        "auth": {"enabled": True},
        "http": {"workers": 2},
        "jobs": {"run_in_serve": True},  # the job runner must live through it too
    }
    server = start_server(tmp_path / "server", settings, env={"DOCKYARD_ADMIN_PASSWORD": ADMIN_PASSWORD})
    try:
        assert api(server, "POST", "/projects", {"name": "full", "public": True}).status_code == 201
        created = api(server, "POST", "/users", {"username": PULLER[0], "password": PULLER[1]})
        assert created.status_code == 201, created.text
        reserve = disk / "reserve"
        reserve.write_bytes(b"\0" * RESERVE)
        with bearer_client(server.url, ADMIN, (REPO,)) as http:
            oci = OCIClient(http)
            config = b'{"architecture":"amd64","os":"linux"}'
            layer = os.urandom(4096)
            oci.push_blob(REPO, config)
            oci.push_blob(REPO, layer)
            manifest = (
                b'{"schemaVersion":2,"mediaType":"%s","config":{"mediaType":'
                b'"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[{'
                b'"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%d}]}'
                % (
                    OCI_MANIFEST.encode(),
                    digest_of(config).encode(),
                    len(config),
                    digest_of(layer).encode(),
                    len(layer),
                )
            )
            oci.push_manifest(REPO, "v1", manifest, OCI_MANIFEST)
            image = {"manifest": manifest, "config": config, "layer": layer}
            pids = worker_pids(server)
            assert len(pids) == 3  # two HTTP workers and the job runner

            # Fill the disk with pushes: each is stored or refused with 507, never a 500.
            refused = 0
            for _ in range(60):
                answer = push_layer(oci, os.urandom(LAYER))
                if answer.status_code == 201:
                    continue
                assert_storage_full(answer)
                refused += 1
                if refused == 3:
                    break
            assert refused == 3, "the disk never filled up"
            fill(disk / "filler")  # to the last block: every write now needs space there is not

            assert_storage_full(push_layer(oci, os.urandom(LAYER)))
            assert_storage_full(push_layer(oci, b"tiny"))
            retag = oci.put_manifest(REPO, "v2", manifest, OCI_MANIFEST)
            if SQLITE:  # the database is on the full disk too
                assert_storage_full(retag)
                assert_storage_full(api(server, "POST", "/projects", {"name": "another"}))
            else:
                assert retag.status_code == 201, describe(retag)
                untagged = oci.http.delete(f"/v2/{REPO}/manifests/v2")  # a tag: a row, no byte on disk
                assert untagged.status_code == 202, describe(untagged)

        # Reads go on: pulls by a user logging in for the first time too (their login time is not
        # recorded on a full database, and that does not fail the login).
        for _ in range(3):  # on new connections: both workers serve some
            assert_pulls(server, image, ADMIN)
            assert_pulls(server, image, PULLER)
            assert api(server, "GET", "/projects/full").status_code == 200
        past_metrics_flush()
        assert worker_pids(server) == pids, server.log()[-3000:]
        assert server.process.poll() is None
        log = server.log()
        assert "Traceback" not in log, log[-3000:]
        assert "Unexpected exit from worker" not in log

        # A restart while the disk is still full: it starts, serves pulls, refuses writes.
        server.stop()
        server = start_server(tmp_path / "server", settings, env={"DOCKYARD_ADMIN_PASSWORD": ADMIN_PASSWORD})
        assert_pulls(server, image, PULLER)
        fill(disk / "filler-2")  # what the restart freed (the old run's metrics files)
        with bearer_client(server.url, ADMIN, (REPO,)) as http:
            assert_storage_full(push_layer(OCIClient(http), os.urandom(LAYER)))
        assert_pulls(server, image, PULLER)
        pids = worker_pids(server)

        # Space freed: writes work again at once, without a restart.
        (disk / "filler").unlink()
        (disk / "filler-2").unlink()
        reserve.unlink()
        with bearer_client(server.url, ADMIN, (REPO,)) as http:
            oci = OCIClient(http)
            answer = push_layer(oci, os.urandom(LAYER))
            assert answer.status_code == 201, describe(answer)
            assert oci.put_manifest(REPO, "v3", manifest, OCI_MANIFEST).status_code == 201
        assert api(server, "POST", "/projects", {"name": "another"}).status_code == 201
        assert_pulls(server, image, PULLER)
        assert worker_pids(server) == pids
        assert "Traceback" not in server.log(), server.log()[-3000:]
    finally:
        server.stop()


@pytest.fixture
def small_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """The server's database alone on a small tmpfs (the blobs have room): SQLite, or PostgreSQL in the
    PostgreSQL pass (a tablespace on the tmpfs, on a cluster of the module's own: `own_postgres_server`)."""
    server = None if SQLITE else request.getfixturevalue("own_postgres_server").database_url("postgres")
    with database_on_small_filesystem(server, tmp_path, "24m") as (url, mount):
        yield url.replace("postgresql+psycopg://", "postgresql://", 1), mount


def test_a_full_database_refuses_writes_with_507_and_keeps_serving_pulls(
    small_database: tuple[str, Path], tmp_path: Path
) -> None:
    url, mount = small_database
    settings = {"database": {"url": url}, "auth": {"enabled": True}, "http": {"workers": 2}}
    server = start_server(tmp_path / "server", settings, env={"DOCKYARD_ADMIN_PASSWORD": ADMIN_PASSWORD})
    try:
        assert api(server, "POST", "/projects", {"name": "full", "public": True}).status_code == 201
        assert (
            api(server, "POST", "/users", {"username": PULLER[0], "password": PULLER[1]}).status_code == 201
        )
        with bearer_client(server.url, ADMIN, (REPO,)) as http:
            oci = OCIClient(http)
            pushed = oci.push_image(REPO, "v1")
            layer = os.urandom(4096)
            oci.push_blob(REPO, layer)
            pids = worker_pids(server)
            fill(mount / "filler")

            # Every write the database must grow for is refused with 507. Some still fit in pages a
            # table has free (PostgreSQL keeps a file per table): write until each is full to the page.
            assert_storage_full(
                first_refusal(lambda n: oci.put_manifest(REPO, f"t{n}", pushed.body, OCI_MANIFEST))
            )
            assert_storage_full(oci.put_manifest(REPO, "later", pushed.body, OCI_MANIFEST))
            assert_storage_full(first_refusal(lambda n: push_layer(oci, os.urandom(4096))))
            refused = first_refusal(lambda n: api(server, "POST", "/projects", {"name": f"another{n}"}))
            # CI once got a 503 here (database unavailable) on PostgreSQL: the log says which error.
            assert refused.status_code == 507, f"{describe(refused)}\n{server.log()[-6000:]}"
            assert_storage_full(refused)
            assert refused.json()["errors"][0]["code"] == "INSUFFICIENT_STORAGE"

            # Reads go on, a first login included.
            assert oci.get_manifest(REPO, "v1").content == pushed.body
            assert http.get(f"/v2/{REPO}/blobs/{digest_of(layer)}").content == layer
        with bearer_client(server.url, PULLER, (REPO,)) as http:
            assert OCIClient(http).get_manifest(REPO, "v1").content == pushed.body
        assert api(server, "GET", "/projects/full").status_code == 200
        past_metrics_flush()
        assert worker_pids(server) == pids

        (mount / "filler").unlink()
        with bearer_client(server.url, ADMIN, (REPO,)) as http:
            oci = OCIClient(http)
            assert oci.put_manifest(REPO, "later", pushed.body, OCI_MANIFEST).status_code == 201
            assert push_layer(oci, os.urandom(LAYER)).status_code == 201
        assert api(server, "POST", "/projects", {"name": "after"}).status_code == 201
        assert worker_pids(server) == pids
        assert "Traceback" not in server.log(), server.log()[-3000:]
    finally:
        server.stop()


def first_refusal(write: Callable[[int], httpx.Response], limit: int = 2000) -> httpx.Response:
    """Call write(0), write(1), ... until one is not a success; that answer."""
    for n in range(limit):
        answer = write(n)
        if answer.status_code >= 300:
            return answer
    raise AssertionError(f"{limit} writes all succeeded on a full disk")
