"""Proxy projects (the pull-through cache) with real parts: a real `dockyard serve`, Debian's
docker-registry as the upstream (open, and behind htpasswd), reached through a counting front on
loopback (tests/support/fronts.py) that counts what reaches the upstream and can misbehave (503, 429,
cut blobs off, slow them down). Pulls by tag and digest must be bit for bit; a fresh tag asks nobody, an
old one only HEADs; the upstream away serves what is cached (stale) and fails a miss quickly with an
error naming the upstream; concurrent pulls of a blob make one upstream GET; a blob cut off or with the
wrong bytes records nothing and fails its client; one whose store fails after its digest matched reaches
its client whole and records nothing; pushes are refused; the SSRF guard applies at fetch time."""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy import text

from dockyard.config.loader import load_settings
from dockyard.db.engine import build_engine
from tests.support.fronts import Front, running_front
from tests.support.ociclient import OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, OCIClient, descriptor, image_manifest
from tests.support.registry2 import running_registry2
from tests.support.server import RunningServer, start_server
from tests.support.timeouts import HTTP_TIMEOUT

ADMIN = ("admin", "proxy-tests-admin-password-1")
USER = ("puller", "registry2-proxy-password")
TIMEOUT = 3  # the upstream's total timeout, seconds
CONFIG = {
    "auth": {"enabled": True},
    "upstream": {"allowed_networks": ["127.0.0.0/8"], "total_timeout": f"{TIMEOUT}s", "read_timeout": "2s"},
    "http": {"workers": 2},
}
API = "/api/v1"


class Challenged(httpx.Auth):
    """What docker does on /v2: on a 401, a token from the challenge's realm for its scope (anonymous
    unless `credentials`), and the request again with it."""

    def __init__(self, credentials: tuple[str, str] | None = None) -> None:
        self.credentials = credentials

    def auth_flow(self, request: httpx.Request) -> Iterator[httpx.Request]:
        response = yield request
        challenge = response.headers.get("www-authenticate", "")
        if response.status_code != 401 or not challenge.startswith("Bearer "):
            return
        params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        realm = params.pop("realm")
        token = httpx.get(realm, params=params, auth=self.credentials, timeout=HTTP_TIMEOUT).json()["token"]
        request.headers["Authorization"] = f"Bearer {token}"
        yield request


@dataclass
class Image:
    manifest: bytes
    digest: str
    blobs: dict[str, bytes]  # digest -> bytes: config and layers

    @property
    def layer(self) -> str:
        return list(self.blobs)[-1]


def push(upstream: str, repository: str, tag: str, layer_size: int = 3 << 20, seed: str = "") -> Image:
    """An image with one layer of `layer_size` random-looking bytes, pushed to the upstream."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "seed": seed or tag}).encode()
    block = hashlib.sha256(f"{repository}:{tag}:{seed}".encode()).digest()
    layer = (block * (layer_size // len(block) + 1))[:layer_size]
    layer = bytes(b ^ (i & 0xFF) for i, b in enumerate(layer[:4096])) + layer[4096:]
    with httpx.Client(base_url=upstream, auth=USER, timeout=HTTP_TIMEOUT) as http:
        client = OCIClient(http)
        client.push_blob(repository, config)
        client.push_blob(repository, layer)
        body = image_manifest(descriptor(OCI_CONFIG, config), [descriptor(OCI_LAYER, layer)])
        pushed = client.push_manifest(repository, tag, body, OCI_MANIFEST)
    blobs = {"sha256:" + hashlib.sha256(b).hexdigest(): b for b in (config, layer)}
    return Image(body, pushed.digest, blobs)


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_registry2(tmp_path_factory.mktemp("proxy-upstream"), USER) as url:
        yield url


@pytest.fixture(scope="module")
def front(upstream: str) -> Iterator[Front]:
    with running_front(upstream) as running:
        yield running


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(
        tmp_path_factory.mktemp("proxy-server"), CONFIG, env={"DOCKYARD_ADMIN_PASSWORD": ADMIN[1]}
    )
    yield running
    running.stop()


@pytest.fixture(scope="module")
def api(server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url + API, auth=ADMIN, timeout=HTTP_TIMEOUT) as client:
        yield client


SHORT_TTL = 2  # seconds: project `short`'s tags go stale while a test waits
BRIEF_TTL = 1  # seconds: project `brief`'s, for tests that only wait for its tags to go stale


@pytest.fixture(scope="module")
def hub(api: httpx.Client, front: Front) -> str:
    """Endpoint `up` (the front, with the htpasswd user), public proxy project `hub` of it, whose tags
    stay fresh through any test (a loaded machine once took more than a 2 s TTL between two pulls), and
    `short` and `brief`, of the same endpoint, whose tags go stale after SHORT_TTL and BRIEF_TTL."""
    credentials = {"kind": "basic", "username": USER[0], "secret": USER[1]}
    answer = api.post(
        "/endpoints", json={"name": "up", "url": front.url, "kind": "registry", "credentials": credentials}
    )
    assert answer.status_code == 201, answer.text
    for name, ttl in (("hub", 3600), ("short", SHORT_TTL), ("brief", BRIEF_TTL)):
        proxy = {"endpoint": "up", "tag_ttl_seconds": ttl}
        answer = api.post("/projects", json={"name": name, "public": True, "proxy": proxy})
        assert answer.status_code == 201, answer.text
        assert answer.json()["proxy"] == proxy
    return "hub"


@pytest.fixture
def v2(server: RunningServer, front: Front) -> Iterator[httpx.Client]:
    front.reset()
    with httpx.Client(
        base_url=server.url + "/v2", timeout=HTTP_TIMEOUT, auth=Challenged()
    ) as client:  # anonymous
        yield client
    front.reset()


def manifest_of(v2: httpx.Client, name: str, reference: str, method: str = "GET") -> httpx.Response:
    return v2.request(method, f"/{name}/manifests/{reference}", headers={"Accept": OCI_MANIFEST})


def assert_fails(get: Callable[[], httpx.Response]) -> None:
    """The response fails: cut short (the server stopped mid-body), or an error status when nothing of
    the body had been sent yet (the server may still replace the answer then)."""
    try:
        answer = get()
    except httpx.HTTPError:
        return
    assert answer.status_code >= 500, f"answered {answer.status_code} with {len(answer.content)} bytes"


def metric(server: RunningServer, kind: str, outcome: str) -> float:
    text_ = httpx.get(f"{server.url}/metrics", auth=ADMIN, timeout=HTTP_TIMEOUT).text
    line = f'proxy_requests_total{{kind="{kind}",outcome="{outcome}"}}'
    for row in text_.splitlines():
        if row.startswith(line):
            return float(row.split()[-1])
    return 0.0


def test_pull_by_tag_and_digest_is_bit_for_bit_and_cached(
    hub: str, upstream: str, front: Front, v2: httpx.Client
) -> None:
    image = push(upstream, "team/app", "1.0")
    got = manifest_of(v2, "hub/team/app", "1.0")
    assert got.status_code == 200, got.text
    assert got.content == image.manifest and got.headers["docker-content-digest"] == image.digest
    for digest, data in image.blobs.items():
        blob = v2.get(f"/hub/team/app/blobs/{digest}")
        assert blob.status_code == 200 and blob.content == data, digest
    assert front.count("GET", "blob") == 2 and front.count("GET", "manifest") == 1

    # Again, by tag (fresh: within the TTL) and by digest: nothing goes upstream.
    assert manifest_of(v2, "hub/team/app", "1.0").content == image.manifest
    assert manifest_of(v2, "hub/team/app", image.digest).content == image.manifest
    for digest, data in image.blobs.items():
        assert v2.get(f"/hub/team/app/blobs/{digest}").content == data
    assert sum(front.counts.values()) == 3
    # Recorded as an ordinary repository and tag: listed, with the tag.
    assert v2.get("/hub/team/app/tags/list").json()["tags"] == ["1.0"]


def test_an_old_tag_is_checked_with_a_head_and_fetched_only_when_it_changed(
    hub: str, upstream: str, front: Front, v2: httpx.Client
) -> None:
    first = push(upstream, "team/ttl", "v", layer_size=1024, seed="a")
    # The next image waits upstream under another tag: moving `v` to it below is one request, well
    # within the TTL of the check before it.
    second = push(upstream, "team/ttl", "next", layer_size=1024, seed="b")
    assert manifest_of(v2, "short/team/ttl", "v").content == first.manifest
    time.sleep(SHORT_TTL + 0.2)  # past the project's TTL
    assert manifest_of(v2, "short/team/ttl", "v").content == first.manifest
    assert (front.count("HEAD", "manifest"), front.count("GET", "manifest")) == (1, 1)

    with httpx.Client(base_url=upstream, auth=USER, timeout=HTTP_TIMEOUT) as http:
        OCIClient(http).push_manifest("team/ttl", "v", second.manifest, OCI_MANIFEST)
    assert manifest_of(v2, "short/team/ttl", "v").content == first.manifest  # still fresh: checked just now
    time.sleep(SHORT_TTL + 0.2)
    got = manifest_of(v2, "short/team/ttl", "v")
    assert got.content == second.manifest and got.headers["docker-content-digest"] == second.digest
    assert (front.count("HEAD", "manifest"), front.count("GET", "manifest")) == (2, 2)
    # The old digest stays pullable by digest, from the cache.
    assert manifest_of(v2, "short/team/ttl", first.digest).content == first.manifest


def test_pushes_to_a_proxy_project_are_refused_with_denied(hub: str, server: RunningServer) -> None:
    with httpx.Client(base_url=server.url + "/v2", auth=Challenged(ADMIN), timeout=HTTP_TIMEOUT) as admin:
        started = admin.post("/hub/team/app/blobs/uploads/")
        assert started.status_code == 403, started.text
        error = started.json()["errors"][0]
        assert error["code"] == "DENIED" and "pull-through cache" in error["message"]
        body = image_manifest(descriptor(OCI_CONFIG, b"{}"), [])
        put = admin.put("/hub/team/app/manifests/x", content=body, headers={"Content-Type": OCI_MANIFEST})
        assert put.status_code == 403 and put.json()["errors"][0]["code"] == "DENIED"
        # An ordinary project next to it still takes pushes.
        assert admin.post("/plain/app/blobs/uploads/").status_code == 202


def test_upstream_failing_serves_stale_and_a_miss_fails_quickly_naming_it(
    hub: str, upstream: str, front: Front, v2: httpx.Client, server: RunningServer
) -> None:
    image = push(upstream, "team/stale", "1", layer_size=2048)
    assert manifest_of(v2, "brief/team/stale", "1").status_code == 200
    assert v2.get(f"/brief/team/stale/blobs/{image.layer}").status_code == 200
    before = metric(server, "manifest", "stale")
    for status in (503, 429):
        time.sleep(BRIEF_TTL + 0.2)  # past the TTL and the stale backoff (the TTL, when under 10 s)
        front.status = status
        got = manifest_of(v2, "brief/team/stale", "1")
        assert got.status_code == 200 and got.content == image.manifest
        assert manifest_of(v2, "brief/team/stale", image.digest).content == image.manifest
        assert v2.get(f"/brief/team/stale/blobs/{image.layer}").content == image.blobs[image.layer]
        started = time.monotonic()
        missing = manifest_of(v2, "brief/team/stale", "never-cached")
        assert time.monotonic() - started < TIMEOUT + 2
        assert missing.status_code == 503, missing.text
        error = missing.json()["errors"][0]
        assert (
            error["code"] == "UNAVAILABLE" and "'up'" in error["message"] and str(status) in error["message"]
        )
    assert metric(server, "manifest", "stale") >= before + 2


def test_an_upstream_stalling_mid_blob_fails_the_client_within_the_read_timeout(
    hub: str, upstream: str, front: Front, v2: httpx.Client
) -> None:
    image = push(upstream, "team/slow", "1", layer_size=1024)
    assert manifest_of(v2, "hub/team/slow", "1").status_code == 200
    front.blob_delay = TIMEOUT + 3  # headers at once, then nothing
    started = time.monotonic()
    assert_fails(lambda: v2.get(f"/hub/team/slow/blobs/{image.layer}"))
    assert time.monotonic() - started < TIMEOUT + 2


def test_concurrent_pulls_of_one_blob_make_one_upstream_get(
    hub: str, upstream: str, front: Front, server: RunningServer, v2: httpx.Client
) -> None:
    image = push(upstream, "team/crowd", "1", layer_size=8 << 20)
    assert manifest_of(v2, "hub/team/crowd", "1").status_code == 200
    front.blob_delay = 1.0  # all clients arrive while the first fetch is in flight
    results: list[bytes] = []

    def pull() -> None:
        with httpx.Client(timeout=HTTP_TIMEOUT, auth=Challenged()) as client:
            results.append(client.get(f"{server.url}/v2/hub/team/crowd/blobs/{image.layer}").content)

    threads = [threading.Thread(target=pull) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [image.blobs[image.layer]] * 6
    assert front.count("GET", "blob") == 1


def test_concurrent_pulls_of_one_new_tag_make_one_upstream_manifest_get(
    hub: str, upstream: str, front: Front, server: RunningServer, v2: httpx.Client
) -> None:
    image = push(upstream, "team/herd", "1", layer_size=1024)
    front.manifest_delay = 1.0  # every client arrives while the first fetch is in flight
    results: list[tuple[int, bytes]] = []

    def pull() -> None:
        with httpx.Client(base_url=f"{server.url}/v2", timeout=HTTP_TIMEOUT, auth=Challenged()) as client:
            answer = manifest_of(client, "hub/team/herd", "1")
            results.append((answer.status_code, answer.content))

    threads = [threading.Thread(target=pull) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [(200, image.manifest)] * 6
    assert (front.count("GET", "manifest"), front.count("HEAD", "manifest")) == (1, 0)


def test_a_client_that_goes_away_mid_blob_does_not_stop_the_fetch(
    hub: str, upstream: str, front: Front, v2: httpx.Client
) -> None:
    image = push(upstream, "team/gone", "1", layer_size=16 << 20)
    assert manifest_of(v2, "hub/team/gone", "1").status_code == 200
    with v2.stream("GET", f"/hub/team/gone/blobs/{image.layer}") as response:
        assert response.status_code == 200
        next(response.iter_bytes(64 * 1024))  # a first piece, then hang up
    deadline = time.monotonic() + 20
    while v2.head(f"/hub/team/gone/blobs/{image.layer}").status_code != 200 or front.count("HEAD", "blob"):
        assert time.monotonic() < deadline, "the fetch did not complete without its client"
        with front.lock:  # a HEAD that went upstream: not stored yet
            front.counts.pop(("HEAD", "blob"), None)
        time.sleep(0.3)
    assert v2.get(f"/hub/team/gone/blobs/{image.layer}").content == image.blobs[image.layer]
    assert front.count("GET", "blob") == 1  # served from storage, fetched once


def test_a_blob_cut_off_upstream_records_nothing_and_fails_the_client(
    hub: str, upstream: str, front: Front, v2: httpx.Client
) -> None:
    image = push(upstream, "team/cut", "1", layer_size=4 << 20)
    assert manifest_of(v2, "hub/team/cut", "1").status_code == 200
    front.cut_blobs = True
    assert_fails(lambda: v2.get(f"/hub/team/cut/blobs/{image.layer}"))
    front.cut_blobs = False
    assert v2.get(f"/hub/team/cut/blobs/{image.layer}").content == image.blobs[image.layer]
    assert front.count("GET", "blob") == 2  # the first fetch recorded nothing: fetched again


def test_a_blob_whose_bytes_do_not_match_its_digest_records_nothing(
    hub: str, upstream: str, front: Front, v2: httpx.Client
) -> None:
    image = push(upstream, "team/corrupt", "1", layer_size=3 << 20)
    assert manifest_of(v2, "hub/team/corrupt", "1").status_code == 200
    front.corrupt_blobs = True
    assert_fails(lambda: v2.get(f"/hub/team/corrupt/blobs/{image.layer}"))
    front.corrupt_blobs = False
    assert v2.get(f"/hub/team/corrupt/blobs/{image.layer}").content == image.blobs[image.layer]
    assert front.count("GET", "blob") == 2  # the bad copy was not kept


def test_a_blob_whose_store_fails_after_its_digest_matched_reaches_the_client_whole(
    hub: str, upstream: str, front: Front, server: RunningServer, v2: httpx.Client
) -> None:
    image = push(upstream, "team/unstored", "1", layer_size=3 << 20)
    assert manifest_of(v2, "hub/team/unstored", "1").status_code == 200
    # A file where the blob's directory goes: every byte is written and checked, then landing fails.
    encoded = image.layer.split(":", 1)[1]
    in_the_way = server.datadir / "storage" / "blobs" / "sha256" / encoded[:2] / encoded
    in_the_way.parent.mkdir(parents=True, exist_ok=True)
    in_the_way.write_bytes(b"not a directory")
    before = metric(server, "blob", "not_stored")
    try:
        answer = v2.get(f"/hub/team/unstored/blobs/{image.layer}")
        assert answer.status_code == 200 and answer.content == image.blobs[image.layer]
        deadline = time.monotonic() + 10  # the client can have every byte before the commit failed
        while metric(server, "blob", "not_stored") < before + 1:
            assert time.monotonic() < deadline, "the failed store was not counted"
            time.sleep(0.1)
    finally:
        in_the_way.unlink()
    assert "served to its client but not stored" in server.log()
    # Nothing was recorded: the next pull fetches it again (and stores it).
    assert v2.get(f"/hub/team/unstored/blobs/{image.layer}").content == image.blobs[image.layer]
    assert front.count("GET", "blob") == 2
    assert v2.get(f"/hub/team/unstored/blobs/{image.layer}").content == image.blobs[image.layer]
    assert front.count("GET", "blob") == 2


def test_a_head_of_an_uncached_blob_asks_upstream_and_fetches_nothing(
    hub: str, upstream: str, front: Front, v2: httpx.Client
) -> None:
    image = push(upstream, "team/head", "1", layer_size=4096)
    head = v2.head(f"/hub/team/head/blobs/{image.layer}")
    assert head.status_code == 200 and head.headers["content-length"] == "4096"
    assert (front.count("HEAD", "blob"), front.count("GET", "blob")) == (1, 0)
    missing = v2.head(f"/hub/team/head/blobs/sha256:{'0' * 64}")
    assert missing.status_code == 404


def test_fetches_are_audited_with_the_endpoint(
    hub: str, upstream: str, api: httpx.Client, v2: httpx.Client
) -> None:
    image = push(upstream, "team/audited", "1", layer_size=1024)
    assert manifest_of(v2, "hub/team/audited", "1").status_code == 200
    assert v2.get(f"/hub/team/audited/blobs/{image.layer}").status_code == 200
    deadline = time.monotonic() + 15
    while True:
        events = api.get("/audit", params={"action": "pull"}).json()
        fetched = {
            (e["resource_type"], e["resource_name"]): e["detail"]
            for e in events
            if (e.get("detail") or {}).get("proxy") and "team/audited" in e["resource_name"]
        }
        if len(fetched) == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert fetched == {
        ("artifact", "hub/team/audited:1"): {
            "proxy": "fetched",
            "endpoint": "up",
            "upstream": "team/audited:1",
        },
        ("blob", f"hub/team/audited@{image.layer}"): {
            "proxy": "fetched",
            "endpoint": "up",
            "upstream": f"team/audited@{image.layer}",
        },
    }


def test_proxy_settings_are_the_administrators_and_keep_their_endpoint(
    hub: str, api: httpx.Client, server: RunningServer
) -> None:
    answer = api.delete("/endpoints/up")
    assert answer.status_code == 409 and "proxy project" in answer.text
    api.post("/users", json={"username": "lead", "password": "a-team-lead-password-9x"}).raise_for_status()
    api.post("/projects", json={"name": "own"}).raise_for_status()
    api.post("/projects/own/members", json={"user": "lead", "role": "project_admin"}).raise_for_status()
    lead = ("lead", "a-team-lead-password-9x")
    refused = api.patch("/projects/own", json={"proxy": {"endpoint": "up"}}, auth=lead)
    assert refused.status_code == 403 and "system administrators" in refused.text
    assert api.patch("/projects/own", json={"public": True}, auth=lead).status_code == 200  # the rest: theirs
    unknown = api.patch("/projects/own", json={"proxy": {"endpoint": "nope"}})
    assert unknown.status_code == 422 and "nope" in unknown.text
    bad_ttl = api.patch("/projects/own", json={"proxy": {"endpoint": "up", "tag_ttl_seconds": -1}})
    assert bad_ttl.status_code in (400, 422)
    created = api.post("/projects", json={"name": "half", "proxy": {"endpoint": "nope"}})
    assert created.status_code == 422
    assert api.get("/projects/half").status_code == 404  # all or nothing
    assert api.patch("/projects/own", json={"proxy": {"endpoint": "up"}}).json()["proxy"] == {
        "endpoint": "up",
        "tag_ttl_seconds": 300,
    }
    assert api.patch("/projects/own", json={"proxy": None}).json()["proxy"] is None


def test_the_ssrf_guard_applies_at_fetch_time(
    hub: str, api: httpx.Client, upstream: str, server: RunningServer, v2: httpx.Client
) -> None:
    api.post("/endpoints", json={"name": "meta", "url": upstream, "kind": "registry"}).raise_for_status()
    api.post(
        "/projects", json={"name": "meta", "public": True, "proxy": {"endpoint": "meta"}}
    ).raise_for_status()
    # The name now resolves somewhere the server must not fetch from (as a DNS change would make it).
    engine = build_engine(load_settings(server.config_path).database_url)
    with engine.begin() as connection:
        connection.execute(
            text(
                "UPDATE registry_endpoints SET url = 'http://169.254.169.254', "
                "updated_at = CURRENT_TIMESTAMP WHERE name = 'meta'"
            )
        )
    engine.dispose()
    answer = manifest_of(v2, "meta/library/x", "latest")
    assert answer.status_code == 503, answer.text
    assert "may not fetch from" in answer.json()["errors"][0]["message"]
