"""The upstream client receiving a large blob (more than one chunk) straight off the socket, over HTTP
and HTTPS, from a loopback server speaking raw HTTP/1.1: the bytes come whole and in order, in chunks
of the size asked for; a body cut short or stalled fails with UpstreamUnavailable (never a short blob
taken as whole); the client goes on working after it (the next request gets a new connection)."""

from __future__ import annotations

import hashlib
import socket
import time
from pathlib import Path

import pytest

from dockyard.upstream.addresses import AddressGuard
from dockyard.upstream.client import HttpRemoteRegistry
from dockyard.upstream.interfaces import Timeouts, TLSOptions, UpstreamUnavailable
from tests.e2e.conftest import dockyard_cert
from tests.support.loopback import raw_server

pytestmark = pytest.mark.db_independent("no metadata database: the upstream client and loopback servers")

CHUNK = 1 << 20
# Bytes without repeats, made in one call: every test process builds this when it collects the module.
BLOB = hashlib.shake_256(b"upstream blob").digest(5 * CHUNK + 12345)
DIGEST = "sha256:" + hashlib.sha256(BLOB).hexdigest()
LOOPBACK = AddressGuard(["127.0.0.0/8"])
TIMEOUTS = Timeouts(connect=2, read=1, total=5)



def whole(connection: socket.socket) -> None:
    _read_request(connection)
    connection.sendall(_head(len(BLOB)) + BLOB)


def cut(connection: socket.socket) -> None:
    _read_request(connection)
    connection.sendall(_head(len(BLOB)) + BLOB[: 3 * CHUNK + 7])  # then the connection closes


def stalled(connection: socket.socket) -> None:
    _read_request(connection)
    connection.sendall(_head(len(BLOB)) + BLOB[: 2 * CHUNK])
    time.sleep(3)  # longer than the read timeout


def _head(length: int) -> bytes:
    return f"HTTP/1.1 200 OK\r\nContent-Length: {length}\r\nDocker-Content-Digest: {DIGEST}\r\n\r\n".encode()


def _read_request(connection: socket.socket) -> None:
    received = b""
    while b"\r\n\r\n" not in received:
        piece = connection.recv(65536)
        if not piece:
            return
        received += piece




def receive(remote: HttpRemoteRegistry) -> list[bytes]:
    with remote.open_blob("team/app", DIGEST) as stream:
        assert stream.size == len(BLOB)
        return list(stream.chunks(CHUNK))


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_large_blob_comes_whole_in_chunks_of_the_size_asked(scheme: str, tmp_path: Path) -> None:
    certs = dockyard_cert("127.0.0.1", tmp_path / "certs") if scheme == "https" else None
    with raw_server(whole, certs) as url:
        tls = TLSOptions(ca_pem=(certs / "ca.crt").read_text()) if certs else TLSOptions()
        remote = HttpRemoteRegistry(url, guard=LOOPBACK, tls=tls, timeouts=TIMEOUTS)
        try:
            for _ in range(2):  # the second on a new connection: the first is not reused
                chunks = receive(remote)
                assert [len(chunk) for chunk in chunks] == [CHUNK] * 5 + [12345]
                assert b"".join(chunks) == BLOB
        finally:
            remote.close()


def test_a_body_cut_short_fails_instead_of_ending_early() -> None:
    with raw_server(cut) as url:
        remote = HttpRemoteRegistry(url, guard=LOOPBACK, timeouts=TIMEOUTS)
        received: list[bytes] = []
        with pytest.raises(UpstreamUnavailable), remote.open_blob("team/app", DIGEST) as stream:
            for chunk in stream.chunks(CHUNK):
                received.append(chunk)
        assert b"".join(received) == BLOB[: 3 * CHUNK]  # whole chunks only, every one of them right
        remote.close()


def test_a_body_that_stalls_fails_within_the_read_timeout() -> None:
    with raw_server(stalled) as url:
        remote = HttpRemoteRegistry(url, guard=LOOPBACK, timeouts=TIMEOUTS)
        started = time.monotonic()
        with (
            pytest.raises(UpstreamUnavailable, match="stalled"),
            remote.open_blob("team/app", DIGEST) as stream,
        ):
            for _ in stream.chunks(CHUNK):
                pass
        assert time.monotonic() - started < 2.5
        remote.close()
