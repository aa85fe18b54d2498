"""Mirror modes of the pull-through cache with real parts (a real `dockyard serve`, Debian's
docker-registry upstream behind a counting front on loopback): containerd's `?ns=` mapped by
`proxy.namespaces`, docker's registry-mirrors through `proxy.default_namespace`, and registry:2's
`proxy:` section (from the file and from REGISTRY_PROXY_*), whose address goes through the SSRF guard."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.test_proxy import USER, Challenged, manifest_of, push
from tests.support.fronts import Front, running_front
from tests.support.ociclient import OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, OCIClient, descriptor, image_manifest
from tests.support.registry2 import running_registry2
from tests.support.server import RunningServer, start_server
from tests.support.timeouts import HTTP_TIMEOUT

ADMIN = ("admin", "mirror-tests-admin-password-1")
LOOPBACK = {"allowed_networks": ["127.0.0.0/8"], "total_timeout": "3s", "read_timeout": "2s"}
CONFIG = {
    "auth": {"enabled": True},
    "upstream": LOOPBACK,
    "proxy": {"namespaces": {"docker.io": "hub", "quay.io": "quay"}, "default_namespace": "docker.io"},
}


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_registry2(tmp_path_factory.mktemp("mirror-upstream"), USER) as url:
        yield url


@pytest.fixture(scope="module")
def front(upstream: str) -> Iterator[Front]:
    with running_front(upstream) as running:
        yield running


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, front: Front) -> Iterator[RunningServer]:
    running = start_server(
        tmp_path_factory.mktemp("mirror-server"), CONFIG, env={"DOCKYARD_ADMIN_PASSWORD": ADMIN[1]}
    )
    with httpx.Client(base_url=running.url + "/api/v1", auth=ADMIN, timeout=HTTP_TIMEOUT) as api:
        credentials = {"kind": "basic", "username": USER[0], "secret": USER[1]}
        endpoint = {"name": "up", "url": front.url, "kind": "registry", "credentials": credentials}
        assert api.post("/endpoints", json=endpoint).status_code == 201
        project = {"name": "hub", "public": True, "proxy": {"endpoint": "up", "tag_ttl_seconds": 60}}
        assert api.post("/projects", json=project).status_code == 201
        assert api.post("/projects", json={"name": "own", "public": True}).status_code == 201
        private = {"name": "quay", "public": False, "proxy": {"endpoint": "up", "tag_ttl_seconds": 60}}
        assert api.post("/projects", json=private).status_code == 201
    yield running
    running.stop()


@pytest.fixture
def v2(server: RunningServer, front: Front) -> Iterator[httpx.Client]:
    front.reset()
    with httpx.Client(base_url=server.url + "/v2", timeout=HTTP_TIMEOUT, auth=Challenged()) as client:
        yield client


def test_a_containerd_ns_request_is_served_by_the_mapped_proxy_project(
    server: RunningServer, upstream: str, front: Front, v2: httpx.Client
) -> None:
    image = push(upstream, "library/nsalpine", "3.20", layer_size=64 * 1024)
    got = v2.get("/library/nsalpine/manifests/3.20?ns=docker.io", headers={"Accept": OCI_MANIFEST})
    assert got.status_code == 200, got.text
    assert got.content == image.manifest and got.headers["docker-content-digest"] == image.digest
    for digest, data in image.blobs.items():
        blob = v2.get(f"/library/nsalpine/blobs/{digest}", params={"ns": "docker.io"})
        assert blob.status_code == 200 and blob.content == data
    # It was cached inside the proxy project, under the name the project gives it.
    assert manifest_of(v2, "hub/library/nsalpine", image.digest).content == image.manifest
    assert v2.get("/hub/library/nsalpine/tags/list").json()["tags"] == ["3.20"]
    assert front.count("GET", "manifest") == 1 and front.count("GET", "blob") == 2
    # A host that is not mapped, and the name without `ns`, keep their meaning: no such repository
    # here (`library` is no project; the default namespace takes only names of no project, see below).
    other = v2.get("/library/nsalpine/manifests/3.20?ns=ghcr.io", headers={"Accept": OCI_MANIFEST})
    assert other.status_code == 401 and front.count("GET", "manifest") == 1


def test_pushes_with_ns_are_refused_as_pushes_into_the_proxy_project(v2: httpx.Client) -> None:
    answer = v2.post("/library/pushme/blobs/uploads/?ns=docker.io")
    assert answer.status_code == 401  # anonymous may not push; with rights, DENIED (below)
    with httpx.Client(timeout=HTTP_TIMEOUT, auth=Challenged(ADMIN)) as admin:
        base = str(v2.base_url).rstrip("/")
        answer = admin.post(f"{base}/library/pushme/blobs/uploads/?ns=docker.io")
        assert answer.status_code == 403 and answer.json()["errors"][0]["code"] == "DENIED", answer.text
        assert "pull-through cache" in answer.text


def test_docker_registry_mirror_names_of_no_project_go_to_the_default_project(
    server: RunningServer, upstream: str, front: Front, v2: httpx.Client
) -> None:
    image = push(upstream, "library/mirrored", "1", layer_size=32 * 1024)
    got = manifest_of(v2, "library/mirrored", "1")  # no ns: what dockerd asks its registry-mirror
    assert got.status_code == 200, got.text
    assert got.content == image.manifest
    for digest, data in image.blobs.items():
        assert v2.get(f"/library/mirrored/blobs/{digest}").content == data
    assert v2.head(f"/library/mirrored/manifests/{image.digest}").status_code == 200
    assert manifest_of(v2, "hub/library/mirrored", "1").content == image.manifest


def test_a_token_for_dockers_own_scope_works_on_the_mirror(
    server: RunningServer, upstream: str, v2: httpx.Client
) -> None:
    """dockerd asks /token for `repository:library/x:pull` (its own scope, not the challenge's): the
    token must open the renamed repository; a pull,push scope is not renamed."""
    image = push(upstream, "library/tokened", "1", layer_size=1024)
    challenge = httpx.get(f"{server.url}/v2/library/tokened/manifests/1", timeout=HTTP_TIMEOUT)
    assert challenge.status_code == 401
    realm = challenge.headers["www-authenticate"].split('realm="')[1].split('"')[0]
    granted = httpx.get(
        realm, params={"scope": "repository:library/tokened:pull"}, timeout=HTTP_TIMEOUT
    ).json()
    headers = {"Authorization": f"Bearer {granted['token']}", "Accept": OCI_MANIFEST}
    got = httpx.get(f"{server.url}/v2/library/tokened/manifests/1", headers=headers, timeout=HTTP_TIMEOUT)
    assert got.status_code == 200 and got.content == image.manifest, got.text
    pushing = httpx.get(
        realm, params={"scope": "repository:library/tokened:pull,push"}, auth=ADMIN, timeout=HTTP_TIMEOUT
    ).json()
    headers["Authorization"] = f"Bearer {pushing['token']}"
    # Admin's pull,push token names library/tokened itself, which is not what the mirror serves.
    refused = httpx.get(f"{server.url}/v2/library/tokened/manifests/1", headers=headers, timeout=HTTP_TIMEOUT)
    assert refused.status_code == 401


def test_an_existing_project_and_pushes_are_not_taken_by_the_default_namespace(
    server: RunningServer, upstream: str, front: Front, v2: httpx.Client
) -> None:
    # Same name upstream and in an ordinary project: the project's copy is served.
    push(upstream, "own/app", "1", layer_size=1024, seed="upstream")
    config, layer = b'{"architecture":"amd64","os":"linux"}', b"local layer"
    with httpx.Client(base_url=server.url, auth=Challenged(ADMIN), timeout=HTTP_TIMEOUT) as admin:
        client = OCIClient(admin)
        client.push_blob("own/app", config)
        client.push_blob("own/app", layer)
        body = image_manifest(descriptor(OCI_CONFIG, config), [descriptor(OCI_LAYER, layer)])
        local = client.push_manifest("own/app", "1", body, OCI_MANIFEST)
        # A push to a project that does not exist yet creates it, as before (not redirected).
        client.push_blob("fresh/app", config)
        client.push_blob("fresh/app", layer)
        client.push_manifest("fresh/app", "1", body, OCI_MANIFEST)
    assert manifest_of(v2, "own/app", "1").headers["docker-content-digest"] == local.digest
    with httpx.Client(base_url=server.url + "/v2", auth=Challenged(ADMIN), timeout=HTTP_TIMEOUT) as admin_v2:
        got = manifest_of(admin_v2, "fresh/app", "1")
        assert got.status_code == 200 and got.content == body
    assert front.count("GET", "manifest") == 0 and front.count("HEAD", "manifest") == 0


def test_mirror_requests_get_no_access_the_project_does_not_give(
    server: RunningServer, upstream: str, front: Front, v2: httpx.Client
) -> None:
    """The rename happens before the auth gate: a private proxy project stays private through `ns`, an
    `ns` cannot smuggle path segments into the name, and only the first `ns` counts."""
    image = push(upstream, "org/secret", "1", layer_size=1024)
    assert v2.get("/org/secret/manifests/1?ns=quay.io", headers={"Accept": OCI_MANIFEST}).status_code == 401
    with httpx.Client(base_url=str(v2.base_url), auth=Challenged(ADMIN), timeout=HTTP_TIMEOUT) as admin:
        got = admin.get("/org/secret/manifests/1?ns=quay.io", headers={"Accept": OCI_MANIFEST})
        assert got.status_code == 200 and got.content == image.manifest
    # Only the first ns is read; an unmapped first one leaves the name alone (`org` is no project).
    both = v2.get("/org/secret/manifests/1?ns=ghcr.io&ns=docker.io", headers={"Accept": OCI_MANIFEST})
    assert both.status_code == 401
    # A crafted ns is only ever a key of the map: it names no path.
    crafted = v2.get("/org/secret/manifests/1?ns=docker.io%2F..%2Fquay", headers={"Accept": OCI_MANIFEST})
    assert crafted.status_code == 401
    assert front.count("GET", "manifest") == 1  # the admin's pull only


# --- registry:2's proxy section -----------------------------------------------------------------------
REGISTRY2 = {"version": "0.1", "storage": {"inmemory": None}}


def _registry2_mirror(tmp_path: Path, config: dict, env: dict[str, str]) -> RunningServer:
    return start_server(tmp_path, {**REGISTRY2, **config}, env=env)


@pytest.mark.parametrize("source", ["file", "env"])
def test_registry2_proxy_section_mirrors_every_name_and_refuses_pushes(
    tmp_path: Path, upstream: str, front: Front, source: str
) -> None:
    image = push(upstream, "team/r2", "v1", layer_size=16 * 1024, seed=source)
    proxy = {"remoteurl": front.url, "username": USER[0], "password": USER[1], "ttl": "168h"}
    if source == "file":
        config, env = {"proxy": proxy}, {"DOCKYARD_UPSTREAM_ALLOWED_NETWORKS": "127.0.0.0/8"}
    else:
        config = {}
        env = {f"REGISTRY_PROXY_{key.upper()}": value for key, value in proxy.items()}
        env["DOCKYARD_UPSTREAM_ALLOWED_NETWORKS"] = "127.0.0.0/8"
    front.reset()
    server = _registry2_mirror(tmp_path, config, env)
    try:
        with httpx.Client(base_url=server.url + "/v2", timeout=HTTP_TIMEOUT) as v2:
            got = manifest_of(v2, "team/r2", "v1")
            assert got.status_code == 200, got.text
            assert got.content == image.manifest
            for digest, data in image.blobs.items():
                assert v2.get(f"/team/r2/blobs/{digest}").content == data
            # Cached: by digest nobody is asked; a pull by tag HEADs upstream (tag_ttl 0, as registry:2
            # asks on every pull by tag) and GETs nothing while the digest is unchanged.
            assert manifest_of(v2, "team/r2", image.digest).content == image.manifest
            assert front.count("GET", "manifest") == 1 and front.count("HEAD", "manifest") == 0
            assert manifest_of(v2, "team/r2", "v1").content == image.manifest
            assert front.count("GET", "manifest") == 1 and front.count("HEAD", "manifest") == 1
            assert "proxy.ttl" in server.log()  # accepted, with the warning that it is not applied
            # A name upstream does not have is upstream's 404.
            assert manifest_of(v2, "team/none", "v1").status_code == 404
            # Pushes are refused, as registry:2 (2.8) in proxy mode refuses them: 405 UNSUPPORTED.
            answer = v2.post("/team/r2/blobs/uploads/")
            assert answer.status_code == 405 and answer.json()["errors"][0]["code"] == "UNSUPPORTED"
            assert "pull-through cache (proxy.remoteurl)" in answer.text
            headers = {"Content-Type": OCI_MANIFEST}
            answer = v2.put("/team/r2/manifests/v2", content=image.manifest, headers=headers)
            assert answer.status_code == 405
    finally:
        server.stop()


def test_registry2_proxy_remoteurl_goes_through_the_address_guard(tmp_path: Path, front: Front) -> None:
    """Without upstream.allowed_networks, a loopback remoteurl is refused at fetch time (503 naming
    the refusal), as any endpoint's would be."""
    front.reset()
    server = _registry2_mirror(
        tmp_path, {"proxy": {"remoteurl": front.url, "username": USER[0], "password": USER[1]}}, {}
    )
    try:
        answer = httpx.get(
            f"{server.url}/v2/team/r2/manifests/v1", headers={"Accept": OCI_MANIFEST}, timeout=HTTP_TIMEOUT
        )
        assert answer.status_code == 503, answer.text
        assert "127.0.0.1, which the server may not fetch from" in answer.text, answer.text
        assert sum(front.counts.values()) == 0
    finally:
        server.stop()
