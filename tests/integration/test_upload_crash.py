"""A server killed (SIGKILL, every process) in the middle of a PATCH, and started again on the same data
directory: the upload resumes from the offset `GET` reports and completes, bit for bit. (And one killed
in the middle of a monolithic PUT leaves no byte of it in storage.) Before, the temp
object held more bytes than the session recorded, and the next PATCH got 400 "upload state is
inconsistent" and deleted the session.

On the filesystem the killed chunk's bytes are in the temp file past the recorded size; on S3 they are
parts of the multipart upload that no saved state names. SQLite here, PostgreSQL in the
DOCKYARD_TEST_DB=postgresql pass (the restarted server gets the same database)."""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import httpx
import pytest

from tests.support.ociclient import OCIClient, describe, digest_of
from tests.support.seaweedfs import RunningSeaweedFS, start_seaweedfs
from tests.support.server import RunningServer
from tests.support.timeouts import HTTP_TIMEOUT

MiB = 1024 * 1024
REPO = "crash/app"


@pytest.fixture(scope="module")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSeaweedFS]:
    store = start_seaweedfs(tmp_path_factory.mktemp("seaweedfs"))
    try:
        yield store
    finally:
        store.stop()


def s3_section(store: RunningSeaweedFS, root: str) -> dict[str, Any]:
    return {
        "bucket": store.bucket,
        "region": "us-east-1",
        "regionendpoint": store.endpoint,
        "accesskey": store.access_key,
        "secretkey": store.secret_key,
        "rootdirectory": root,
    }


def kill_everything(server: RunningServer) -> None:
    """SIGKILL the server's whole process group (the main process and its HTTP workers)."""
    os.killpg(server.process.pid, signal.SIGKILL)
    server.process.wait(timeout=10)


def stalled_patch(server: RunningServer, path: str, body: bytes, declared: int) -> socket.socket:
    """Send a PATCH that promises `declared` bytes, send `body` of them, and stall (socket left open)."""
    host, port = server.host.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=10)
    head = (
        f"PATCH {path} HTTP/1.1\r\nHost: {server.host}\r\nContent-Type: application/octet-stream\r\n"
        f"Content-Length: {declared}\r\n\r\n"
    ).encode()
    sock.sendall(head + body)
    return sock


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def crash_mid_patch_then_resume(
    make_server: Callable[..., RunningServer],
    config: dict[str, Any],
    holds_unrecorded_bytes: Callable[[RunningServer, str], bool],
    first: int,
    sent: int,
) -> None:
    data = os.urandom(first + sent + 3 * MiB)
    server = make_server(config)
    with httpx.Client(base_url=server.url, timeout=HTTP_TIMEOUT) as http:
        oci = OCIClient(http)
        recorded = oci.patch_chunk(oci.upload_location(REPO), data[:first], start=0)
        assert recorded.status_code == 202, describe(recorded)
        upload_id = recorded.headers["Docker-Upload-UUID"]
    path = f"/v2/{REPO}/blobs/uploads/{upload_id}"
    sock = stalled_patch(server, path, data[first : first + sent], len(data) - first)
    try:
        wait_for(lambda: holds_unrecorded_bytes(server, upload_id), "the chunk's bytes to reach storage")
        kill_everything(server)
    finally:
        sock.close()

    again = make_server({**config, "datadir": str(server.datadir)})
    with httpx.Client(base_url=again.url, timeout=HTTP_TIMEOUT) as http:
        oci = OCIClient(http)
        status = http.get(path)
        assert status.status_code == 204, describe(status)
        assert status.headers["Range"] == f"0-{first - 1}"
        resumed = oci.patch_chunk(path, data[first:], start=first)
        assert resumed.status_code == 202, describe(resumed)
        assert resumed.headers["Range"] == f"0-{len(data) - 1}"
        done = oci.finish_upload(path, digest_of(data))
        assert done.status_code == 201, describe(done)
        fetched = http.get(f"/v2/{REPO}/blobs/{digest_of(data)}", follow_redirects=True)
        assert fetched.status_code == 200 and fetched.content == data


def test_a_kill_mid_patch_on_the_filesystem_resumes(make_server: Callable[..., RunningServer]) -> None:
    def temp_file_is_longer(server: RunningServer, upload_id: str) -> bool:
        data = server.datadir / "storage" / "uploads" / upload_id / "data"
        return data.exists() and data.stat().st_size >= MiB + 2 * MiB  # the recorded MiB and more

    # As shipped: each commit flushes SQLite's WAL (the test servers' default turns it off).
    shipped = {"database": {"flush_commits": True}}
    crash_mid_patch_then_resume(make_server, shipped, temp_file_is_longer, first=MiB, sent=6 * MiB)


def test_a_kill_mid_patch_on_s3_resumes(
    make_server: Callable[..., RunningServer], seaweedfs: RunningSeaweedFS
) -> None:
    client = boto3.client(
        "s3",
        endpoint_url=seaweedfs.endpoint,
        aws_access_key_id=seaweedfs.access_key,
        aws_secret_access_key=seaweedfs.secret_key,
        region_name="us-east-1",
    )

    def a_part_past_the_saved_state(server: RunningServer, upload_id: str) -> bool:
        # The first chunk (6 MiB) left part 1 and a 1 MiB tail in the saved state; the killed chunk
        # uploads part 2 onwards.
        key = f"crashing/uploads/{upload_id}/data"
        listed = client.list_multipart_uploads(Bucket=seaweedfs.bucket, Prefix=key).get("Uploads", [])
        for upload in listed:
            parts = client.list_parts(Bucket=seaweedfs.bucket, Key=key, UploadId=upload["UploadId"])
            if len(parts.get("Parts", [])) >= 2:
                return True
        return False

    config = {"storage": {"s3": s3_section(seaweedfs, "/crashing")}}
    crash_mid_patch_then_resume(
        make_server, config, a_part_past_the_saved_state, first=6 * MiB, sent=12 * MiB
    )


def unnamed_files_of(server: RunningServer) -> list[int]:
    """Sizes of the files with no name (O_TMPFILE, or deleted) under the server's storage that its
    processes hold open."""
    storage = str(server.datadir / "storage")
    sizes = []
    for pid in os.listdir("/proc"):
        try:
            if not pid.isdigit() or os.getpgid(int(pid)) != server.process.pid:
                continue
            for fd in os.listdir(f"/proc/{pid}/fd"):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith(storage) and target.endswith(" (deleted)"):
                    sizes.append(os.stat(f"/proc/{pid}/fd/{fd}").st_size)
        except OSError:  # gone meanwhile
            continue
    return sizes


def test_a_kill_mid_monolithic_put_leaves_nothing_and_the_push_goes_again(
    make_server: Callable[..., RunningServer],
) -> None:
    """A PUT bringing a whole blob writes it to a file with no name until its digest matched: killed
    half-way, the server leaves no byte of it in storage, and the same push completes after a restart."""
    data = os.urandom(8 * MiB)
    server = make_server({})
    with httpx.Client(base_url=server.url, timeout=HTTP_TIMEOUT) as http:
        location = OCIClient(http).upload_location(REPO)
    path = f"{location}?digest={digest_of(data)}"
    host, port = server.host.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=10)
    head = (
        f"PUT {path} HTTP/1.1\r\nHost: {server.host}\r\nContent-Type: application/octet-stream\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    ).encode()
    try:
        sock.sendall(head + data[: 3 * MiB])
        wait_for(lambda: any(size >= MiB for size in unnamed_files_of(server)), "the body to reach storage")
        kill_everything(server)
    finally:
        sock.close()
    uploads = server.datadir / "storage" / "uploads"
    assert not uploads.exists() or list(uploads.iterdir()) == []

    again = make_server({"datadir": str(server.datadir)})
    with httpx.Client(base_url=again.url, timeout=HTTP_TIMEOUT) as http:
        status = http.get(location)
        assert status.status_code == 204, describe(status)
        assert status.headers["Range"] == "0-0"  # nothing was recorded
        done = OCIClient(http).finish_upload(location, digest_of(data), data)
        assert done.status_code == 201, describe(done)
        fetched = http.get(f"/v2/{REPO}/blobs/{digest_of(data)}")
        assert fetched.status_code == 200 and fetched.content == data
