"""Every RemoteRegistry passes the same suite: the fake, and the real client against real registries
started here on loopback (Debian's docker-registry open and behind htpasswd, distribution v3.1.1 behind
htpasswd, dockyard with token auth).

The servers are on loopback, which the client refuses by default (SSRF): these tests allow 127.0.0.0/8.
"""

from __future__ import annotations

import hashlib
import tracemalloc
from collections.abc import Iterator

import httpx
import pytest

from dockyard.upstream.addresses import AddressGuard
from dockyard.upstream.client import HttpRemoteRegistry
from dockyard.upstream.conformance import MiB, Push, RemoteRegistryConformance, Seeded, image
from dockyard.upstream.fake import FakeRemoteRegistry
from dockyard.upstream.interfaces import Credentials, RemoteRegistry, Timeouts, UpstreamUnauthorized
from tests.support.ociclient import OCIClient, bearer_client, describe
from tests.support.registry2 import distribution_v3, running_registry2
from tests.support.server import RunningServer, start_server
from tests.support.timeouts import HTTP_TIMEOUT

LOOPBACK = AddressGuard(["127.0.0.0/8"])
TIMEOUTS = Timeouts(connect=5, read=10, total=20)
USER = ("puller", "a-long-htpasswd-password")
ADMIN = ("admin", "conformance-admin-password-1")
REPOSITORIES = ("conformance/app", "conformance/tags")


def pusher(http: httpx.Client) -> Push:
    client = OCIClient(http)

    def push(repository: str, tag: str, manifest: bytes, media_type: str, blobs: list[bytes]) -> None:
        for blob in blobs:
            client.push_blob(repository, blob)
        response = client.put_manifest(repository, tag, manifest, media_type)
        assert response.status_code == 201, describe(response)

    return push


class SeededOncePerClass(RemoteRegistryConformance):
    """A real registry's class pushes the suite's image once, not once per test (a 3 MiB layer each
    time): the tests only read it, and each class still reads it from its own registry and client."""

    @pytest.fixture(scope="class")
    @classmethod
    def seeded(cls, upstream: tuple[RemoteRegistry, Push]) -> Seeded:
        content = image("conformance/app", "v1")
        upstream[1](content.repository, content.tag, content.manifest, content.media_type,
                    [content.config, content.layer])  # fmt: skip
        return content


class TestFake(RemoteRegistryConformance):
    @pytest.fixture
    def upstream(self) -> tuple[RemoteRegistry, Push]:
        fake = FakeRemoteRegistry()

        def push(repository: str, tag: str, manifest: bytes, media_type: str, blobs: list[bytes]) -> None:
            for blob in blobs:
                fake.put_blob(repository, blob)
            fake.put_manifest(repository, manifest, media_type, tag)

        return fake, push


@pytest.fixture(scope="module")
def open_registry2(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_registry2(tmp_path_factory.mktemp("registry2-open")) as url:
        yield url


@pytest.fixture(scope="module")
def htpasswd_registry2(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_registry2(tmp_path_factory.mktemp("registry2-htpasswd"), USER) as url:
        yield url


@pytest.fixture(scope="module")
def htpasswd_distribution_v3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_registry2(tmp_path_factory.mktemp("distribution-v3"), USER, distribution_v3()) as url:
        yield url


@pytest.fixture(scope="module")
def token_dockyard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    server = start_server(
        tmp_path_factory.mktemp("dockyard-token"),
        {"auth": {"enabled": True}},
        env={"DOCKYARD_ADMIN_PASSWORD": ADMIN[1]},
    )
    yield server
    server.stop()


class TestRegistry2Open(SeededOncePerClass):
    @pytest.fixture(scope="class")
    @classmethod
    def upstream(cls, open_registry2: str) -> Iterator[tuple[RemoteRegistry, Push]]:
        remote = HttpRemoteRegistry(open_registry2, guard=LOOPBACK, timeouts=TIMEOUTS)
        with httpx.Client(base_url=open_registry2, timeout=HTTP_TIMEOUT) as http:
            yield remote, pusher(http)
        remote.close()

    def test_no_credentials_are_sent(self, remote: RemoteRegistry) -> None:
        assert remote.check().auth == "none"

    def test_a_large_blob_streams_through_bounded_memory(
        self, remote: RemoteRegistry, upstream: tuple[RemoteRegistry, Push]
    ) -> None:
        """64 MiB through the client while Python's allocations never pass 8 MiB: never whole in memory."""
        content = image("conformance/large", "v1", layer_size=64 * MiB)
        upstream[1](content.repository, content.tag, content.manifest, content.media_type,
                    [content.config, content.layer])  # fmt: skip
        digest, expected = "sha256:" + hashlib.sha256(content.layer).hexdigest(), len(content.layer)
        del content  # the test's own copy must not count
        hasher, received = hashlib.sha256(), 0
        tracemalloc.start()
        try:
            with remote.open_blob("conformance/large", digest) as stream:
                for chunk in stream.chunks(1 * MiB):
                    hasher.update(chunk)
                    received += len(chunk)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert received == expected and "sha256:" + hasher.hexdigest() == digest
        assert peak < 8 * MiB, f"peak {peak / MiB:.1f} MiB while streaming"


class TestRegistry2Htpasswd(SeededOncePerClass):
    @pytest.fixture(scope="class")
    @classmethod
    def upstream(cls, htpasswd_registry2: str) -> Iterator[tuple[RemoteRegistry, Push]]:
        credentials = Credentials("basic", *USER)
        remote = HttpRemoteRegistry(htpasswd_registry2, credentials, guard=LOOPBACK, timeouts=TIMEOUTS)
        with httpx.Client(base_url=htpasswd_registry2, auth=USER, timeout=HTTP_TIMEOUT) as http:
            yield remote, pusher(http)
        remote.close()

    def test_basic_auth_is_used(self, remote: RemoteRegistry) -> None:
        assert remote.check().auth == "basic"


class TestDistributionV3Htpasswd(SeededOncePerClass):
    @pytest.fixture(scope="class")
    @classmethod
    def upstream(cls, htpasswd_distribution_v3: str) -> Iterator[tuple[RemoteRegistry, Push]]:
        credentials = Credentials("basic", *USER)
        remote = HttpRemoteRegistry(htpasswd_distribution_v3, credentials, guard=LOOPBACK, timeouts=TIMEOUTS)
        with httpx.Client(base_url=htpasswd_distribution_v3, auth=USER, timeout=HTTP_TIMEOUT) as http:
            yield remote, pusher(http)
        remote.close()


class TestDockyardTokenAuth(SeededOncePerClass):
    @pytest.fixture(scope="class")
    @classmethod
    def upstream(cls, token_dockyard: RunningServer) -> Iterator[tuple[RemoteRegistry, Push]]:
        credentials = Credentials("basic", *ADMIN)
        remote = HttpRemoteRegistry(token_dockyard.url, credentials, guard=LOOPBACK, timeouts=TIMEOUTS)
        with bearer_client(token_dockyard.url, ADMIN, REPOSITORIES) as http:
            yield remote, pusher(http)
        remote.close()

    def test_a_token_is_used(self, remote: RemoteRegistry) -> None:
        assert remote.check().auth == "bearer"


def test_wrong_credentials_are_refused_by_each_real_registry(
    htpasswd_registry2: str, token_dockyard: RunningServer
) -> None:
    for url in (htpasswd_registry2, token_dockyard.url):
        wrong = Credentials("basic", "admin", "wrong")
        remote = HttpRemoteRegistry(url, wrong, guard=LOOPBACK, timeouts=TIMEOUTS)
        with pytest.raises(UpstreamUnauthorized):
            remote.check()
        remote.close()
