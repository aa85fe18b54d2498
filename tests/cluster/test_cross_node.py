"""Any node serves any request: an upload started on node A continues on B and commits on C; a
manifest pushed through one node is seen (tag list, GET) on the others at once; a token one node
issued is accepted by every node; and a real client (skopeo) works through HAProxy with token auth."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.cluster.deployment import ADMIN, Cluster
from tests.cluster.resilient import OCI_MANIFEST, digest_of, make_image
from tests.support.oci import read_oci_layout, write_oci_layout
from tests.support.timeouts import HTTP_TIMEOUT
from tests.support.tools import ContainerTools

MiB = 1024 * 1024
PROPAGATION_SECONDS = 3.0  # pub/sub through Redis: milliseconds; generous for a loaded machine


def on(http: httpx.Client, location: str) -> httpx.URL:
    """A Location header (absolute or not) on the node `http` talks to: its path and query only."""
    parsed = httpx.URL(location)
    return http.base_url.join(parsed.raw_path.decode())


def eventually(read: Callable[[], object], expected: object, timeout: float = PROPAGATION_SECONDS) -> object:
    deadline = time.monotonic() + timeout
    seen = read()
    while seen != expected and time.monotonic() < deadline:
        time.sleep(0.02)
        seen = read()
    return seen


def test_an_upload_started_on_a_continues_on_b_and_commits_on_c(cluster: Cluster) -> None:
    a, b, c = (cluster.http(node.url) for node in cluster.nodes)
    # 13 MiB in 3 MiB chunks: S3 multipart parts (5 MiB) are completed by whichever node holds the
    # bytes that fill one, and the tail below a part travels between nodes in the sidecar object.
    data = os.urandom(13 * MiB + 17)
    digest = digest_of(data)
    started = a.post("/v2/cross/layer/blobs/uploads/", headers={"Content-Length": "0"})
    assert started.status_code == 202, started.text
    location = started.headers["Location"]
    chunk, offset, patched_on = 3 * MiB, 0, []
    for http in (b, c, b, c):
        piece = data[offset : offset + chunk]
        headers = {"Content-Range": f"{offset}-{offset + len(piece) - 1}",
                   "Content-Type": "application/octet-stream"}  # fmt: skip
        answer = http.patch(on(http, location), content=piece, headers=headers)
        assert answer.status_code == 202, answer.text
        offset += len(piece)
        assert answer.headers["Range"] == f"0-{offset - 1}"
        location = answer.headers["Location"]
        patched_on.append(str(http.base_url))
    status = a.get(on(a, location))  # the session as another node sees it
    assert status.status_code == 204 and status.headers["Range"] == f"0-{offset - 1}"

    # The last bytes ride on the PUT that commits, on the third node.
    url = on(c, location).copy_merge_params({"digest": digest})
    committed = c.put(url, content=data[offset:], headers={"Content-Type": "application/octet-stream"})
    assert committed.status_code == 201, committed.text
    assert committed.headers["Docker-Content-Digest"] == digest

    with cluster.http() as proxy:
        pulled = proxy.get(f"/v2/cross/layer/blobs/{digest}")
        assert pulled.status_code == 200
        assert pulled.content == data
        assert pulled.headers["Docker-Content-Digest"] == digest
    for http in (a, b, c):  # each node serves it, bit for bit
        assert digest_of(http.get(f"/v2/cross/layer/blobs/{digest}").content) == digest
        http.close()


def test_a_manifest_pushed_on_one_node_is_seen_by_the_others_at_once(cluster: Cluster) -> None:
    a, b, c = (cluster.http(node.url) for node in cluster.nodes)
    repo = "cross/seen"
    first = make_image(repo, "v1", [b"first layer " + os.urandom(64)])
    for digest, data in first.blobs.items():
        assert (
            a.post(f"/v2/{repo}/blobs/uploads/", params={"digest": digest}, content=data).status_code == 201
        )
    put = b.put(f"/v2/{repo}/manifests/v1", content=first.manifest, headers={"Content-Type": OCI_MANIFEST})
    assert put.status_code == 201, put.text

    def tags(http: httpx.Client) -> list[str]:
        answer = http.get(f"/v2/{repo}/tags/list")
        return sorted(answer.json().get("tags") or []) if answer.status_code == 200 else []

    def tag_digest(http: httpx.Client, tag: str) -> str:
        answer = http.get(f"/v2/{repo}/manifests/{tag}", headers={"Accept": OCI_MANIFEST})
        return answer.headers.get("Docker-Content-Digest", str(answer.status_code))

    for http in (a, c):  # read (and cache) v1 and the tag list on the other nodes first
        assert tags(http) == ["v1"]
        assert tag_digest(http, "v1") == first.digest
        assert tag_digest(http, "v1") == first.digest

    # v1 moves to a new image and v2 appears, both through node B.
    second = make_image(repo, "v1", [b"second layer " + os.urandom(64)])
    for digest, data in second.blobs.items():
        assert (
            b.post(f"/v2/{repo}/blobs/uploads/", params={"digest": digest}, content=data).status_code == 201
        )
    for tag in ("v1", "v2"):
        answer = b.put(f"/v2/{repo}/manifests/{tag}", content=second.manifest,
                       headers={"Content-Type": OCI_MANIFEST})  # fmt: skip
        assert answer.status_code == 201, answer.text

    for http in (a, c):
        assert eventually(lambda http=http: tags(http), ["v1", "v2"]) == ["v1", "v2"]
        assert eventually(lambda http=http: tag_digest(http, "v1"), second.digest) == second.digest
        got = http.get(f"/v2/{repo}/manifests/v2", headers={"Accept": OCI_MANIFEST})
        assert got.status_code == 200 and got.content == second.manifest
    for http in (a, b, c):
        http.close()


def test_a_token_from_one_node_is_accepted_by_every_node(cluster: Cluster) -> None:
    """The signing keys are in the shared database, encrypted with the shared http.secret."""
    with cluster.http() as proxy:
        challenge = httpx.get(f"{cluster.proxy.url}/v2/", timeout=HTTP_TIMEOUT)
        assert challenge.status_code == 401
        # The realm names the address the client used (HAProxy's), so the token is fetched through it.
        assert f'realm="{cluster.proxy.url}/token"' in challenge.headers["WWW-Authenticate"]
        issued = proxy.get(
            "/token", params={"service": "dockyard", "scope": "repository:cross/token:pull,push"}
        )
        assert issued.status_code == 200, issued.text
        token = issued.json()["token"]
    for node in cluster.nodes:
        answer = httpx.get(
            f"{node.url}/v2/", headers={"Authorization": f"Bearer {token}"}, timeout=HTTP_TIMEOUT
        )
        assert answer.status_code == 200, (node.url, answer.text)


def test_skopeo_copies_through_haproxy_with_token_auth(cluster: Cluster, tmp_path: Path) -> None:
    tools = ContainerTools(tmp_path / "home")
    try:
        layout = write_oci_layout(tmp_path / "image", layers=3, layer_size=2 * MiB, seed=7)
        target = f"docker://{cluster.proxy.host}/skopeo/app:1.0"
        creds = f"{ADMIN[0]}:{ADMIN[1]}"
        tools.skopeo("copy", "--dest-tls-verify=false", "--dest-creds", creds, layout.transport_ref, target)
        back = tmp_path / "back"
        tools.skopeo("copy", "--src-tls-verify=false", "--src-creds", creds, target, f"oci:{back}:pulled")
        top, blobs = read_oci_layout(back, "pulled")
        assert top.digest == layout.top.digest
        for digest, data in layout.blobs.items():
            assert blobs[digest] == data
    finally:
        tools.cleanup()
