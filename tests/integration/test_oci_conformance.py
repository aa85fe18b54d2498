"""The OCI distribution-spec conformance suite (v1.1.1, `conformance/0[1-4]_*_test.go`), spec by spec,
against a real `dockyard serve`: open, and with token auth (the client logs in as the suite's client
does: on a 401 it fetches a token for the challenge's scope with its username and password).

Each test is one of the suite's contexts; each assertion message names the suite's spec. Its documents
are built as the suite builds them: a config with a random author, descriptors carrying `data` and an
unknown `newUnspecifiedField`, artifacts whose `subject` is not pushed. docs/compatibility.md maps the
suite's specs and options to these tests.
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import secrets
import tarfile
import uuid
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.support.ociclient import digest_of, error_codes
from tests.support.server import RunningServer, start_server
from tests.support.timeouts import HTTP_TIMEOUT

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
EMPTY = b"{}"
EMPTY_DESCRIPTOR = {"mediaType": "application/vnd.oci.empty.v1+json", "digest": digest_of(EMPTY), "size": 2}
ANNOTATION = "org.opencontainers.conformance.test"
TYPE_A = "application/vnd.nhl.peanut.butter.bagel"
TYPE_B = "application/vnd.nba.strawberry.jam.croissant"
ADMIN = ("admin", "conformance-Adm1n-passphrase")
NONEXISTENT_MANIFEST = ".INVALID_MANIFEST_NAME"
DUMMY_DIGEST = digest_of(b"hello world")
OK = range(200, 300)


class ChallengeAuth(httpx.Auth):
    """The suite's client (reggie) with OCI_USERNAME/OCI_PASSWORD: answer a Bearer challenge by asking
    its realm for a token with the challenge's service and scopes, then send the request again."""

    def __init__(self, username: str, password: str) -> None:
        self.credentials = (username, password)

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        response = yield request
        challenge = response.headers.get("www-authenticate", "")
        if response.status_code != 401 or not challenge.startswith("Bearer "):
            return
        params = dict(part.split("=", 1) for part in challenge[len("Bearer ") :].split('",'))
        params = {key.strip(): value.strip('"') for key, value in params.items()}
        query = [("service", params["service"])] + [("scope", s) for s in params.get("scope", "").split()]
        token = httpx.get(params["realm"], params=query, auth=self.credentials, timeout=HTTP_TIMEOUT)
        assert token.status_code == 200, token.text
        request.headers["Authorization"] = f"Bearer {token.json()['token']}"
        yield request


@dataclass
class Registry:
    http: httpx.Client
    name: str  # OCI_NAMESPACE
    crossmount: str  # OCI_CROSSMOUNT_NAMESPACE: by default conformance-<uuid>, another project

    def blob_upload(self, data: bytes, name: str | None = None) -> httpx.Response:
        started = self.http.post(f"/v2/{name or self.name}/blobs/uploads/")
        assert started.status_code == 202, started.text
        return self.http.put(
            started.headers["Location"],
            params={"digest": digest_of(data)},
            content=data,
            headers={"Content-Type": "application/octet-stream"},
        )

    def put_manifest(self, reference: str, body: bytes, media_type: str = OCI_MANIFEST) -> httpx.Response:
        headers = {"Content-Type": media_type}
        return self.http.put(f"/v2/{self.name}/manifests/{reference}", content=body, headers=headers)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.get(f"/v2/{self.name}/{path}", **kwargs)


@pytest.fixture(scope="module", params=["open", "token-auth"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    workdir = tmp_path_factory.mktemp(f"conformance-{request.param}")
    if request.param == "open":
        running = start_server(workdir)
    else:
        running = start_server(
            workdir, {"auth": {"enabled": True}}, env={"DOCKYARD_ADMIN_PASSWORD": ADMIN[1]}
        )
    yield running
    running.stop()


@pytest.fixture
def registry(server: RunningServer, request: pytest.FixtureRequest) -> Iterator[Registry]:
    auth = ChallengeAuth(*ADMIN) if "token-auth" in request.node.callspec.id else None
    namespace = f"conformance/{request.node.originalname.removeprefix('test_').replace('_', '-')}"
    with httpx.Client(base_url=server.url, auth=auth, timeout=HTTP_TIMEOUT) as http:
        yield Registry(http, namespace, f"conformance-{uuid.uuid4()}")


# --- the suite's documents ---------------------------------------------------------------------
def config_blob() -> bytes:
    """The suite's config: unique through a random author."""
    config = {
        "author": secrets.token_hex(8),
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": []},
    }
    return json.dumps(config, indent="\t").encode()


def layer_blob() -> bytes:
    """A small gzipped tarball with one text file, like the suite's."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        content = b"you bothered to find out what was in here. Congratulations!\n"
        info = tarfile.TarInfo("test.txt")
        info.size = len(content)
        tar.addfile(info, io.BytesIO(content))
    return gzip.compress(raw.getvalue(), mtime=0)


def descriptor(media_type: str, content: bytes, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": digest_of(content), "size": len(content), **extra}


def manifest(config: bytes, layers: list[bytes], **fields: Any) -> bytes:
    """The suite's image manifest: the config descriptor embeds the config (`data`) and an unknown field;
    layer descriptors carry `"newUnspecifiedField": null` (Go's nil []byte)."""
    document = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(
            OCI_CONFIG,
            config,
            data=base64.b64encode(config).decode(),
            newUnspecifiedField=base64.b64encode(b"hello world").decode(),
        ),
        "layers": [descriptor(OCI_LAYER, layer, newUnspecifiedField=None) for layer in layers],
        **fields,
    }
    return json.dumps(document, indent="\t").encode()


def artifact(subject: bytes, *, config: dict[str, Any], layers: list[dict[str, Any]], **fields: Any) -> bytes:
    document = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config,
        "layers": layers,
        "subject": descriptor(OCI_MANIFEST, subject),
        **fields,
    }
    return json.dumps(document, indent="\t").encode()


def ok(response: httpx.Response, spec: str) -> httpx.Response:
    assert response.status_code in OK, f"{spec}: {response.status_code} {response.text[:300]}"
    return response


def status(response: httpx.Response, spec: str, *expected: int) -> httpx.Response:
    assert response.status_code in expected, f"{spec}: {response.status_code} {response.text[:300]}"
    return response


# --- 01 pull -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "delete_manifest_before_blobs", [True, False], ids=["manifests-first", "blobs-first"]
)
def test_pull(registry: Registry, delete_manifest_before_blobs: bool) -> None:
    configs, layer = [config_blob(), config_blob()], layer_blob()
    manifests = [manifest(config, [layer]) for config in configs]
    for blob in (*configs, layer):
        ok(registry.blob_upload(blob), "Setup: Populate registry with test blob/layer")
    ok(registry.put_manifest("tagtest0", manifests[0]), "Setup: Populate registry with test manifest")
    ok(
        registry.put_manifest(digest_of(manifests[1]), manifests[1]),
        "Setup: Populate registry with test manifest",
    )

    http, name = registry.http, registry.name
    status(
        http.head(f"/v2/{name}/blobs/{DUMMY_DIGEST}"),
        "HEAD request to nonexistent blob should result in 404 response",
        404,
    )
    head = status(
        http.head(f"/v2/{name}/blobs/{digest_of(configs[0])}"),
        "HEAD request to existing blob should yield 200",
        200,
    )
    assert head.headers["Docker-Content-Digest"] == digest_of(configs[0])
    status(
        http.get(f"/v2/{name}/blobs/{DUMMY_DIGEST}"),
        "GET nonexistent blob should result in 404 response",
        404,
    )
    got = status(
        http.get(f"/v2/{name}/blobs/{digest_of(configs[0])}"),
        "GET request to existing blob URL should yield 200",
        200,
    )
    assert got.content == configs[0]

    accept = {"Accept": OCI_MANIFEST}
    for method in ("HEAD", "GET"):
        spec = f"{method} request to nonexistent manifest should return 404"
        status(http.request(method, f"/v2/{name}/manifests/{NONEXISTENT_MANIFEST}"), spec, 404)
        for index, body in enumerate(manifests):
            spec = f"{method} request to manifest[{index}] path (digest) should yield 200 response"
            found = status(
                http.request(method, f"/v2/{name}/manifests/{digest_of(body)}", headers=accept), spec, 200
            )
            assert found.headers["Docker-Content-Digest"] == digest_of(body), spec
        spec = f"{method} request to manifest path (tag) should yield 200 response"
        found = status(http.request(method, f"/v2/{name}/manifests/tagtest0", headers=accept), spec, 200)
        assert found.headers["Docker-Content-Digest"] == digest_of(manifests[0]), spec
    assert (
        http.get(f"/v2/{name}/manifests/{NONEXISTENT_MANIFEST}").json()["errors"][0]["code"]
        == "MANIFEST_UNKNOWN"
    )

    bad = http.request(
        "GET",
        f"/v2/{name}/manifests/sha256:totallywrong",
        content=b"blablabla",
        headers={"Content-Type": OCI_MANIFEST},
    )
    status(bad, "400 response body should contain OCI-conforming JSON message", 400, 404)
    if bad.status_code == 400:
        assert error_codes(bad), "400 response body should contain OCI-conforming JSON message"

    # Teardown, in the order OCI_DELETE_MANIFEST_BEFORE_BLOBS says: a blob still used answers 405.
    blob_answers = (202, 404) if delete_manifest_before_blobs else (405,)
    if delete_manifest_before_blobs:
        for body in manifests:
            status(
                http.delete(f"/v2/{name}/manifests/{digest_of(body)}"),
                "Delete manifest created in setup",
                202,
            )
    for blob in (*configs, layer):
        status(
            http.delete(f"/v2/{name}/blobs/{digest_of(blob)}"), "Delete blob created in setup", *blob_answers
        )
    if not delete_manifest_before_blobs:
        # The refused deletes left the images whole.
        assert http.get(f"/v2/{name}/manifests/tagtest0", headers=accept).content == manifests[0]
        assert http.get(f"/v2/{name}/blobs/{digest_of(layer)}").content == layer
        for body in manifests:
            status(
                http.delete(f"/v2/{name}/manifests/{digest_of(body)}"),
                "Delete manifest created in setup",
                202,
            )


# --- 02 push -------------------------------------------------------------------------------------
def test_push_blob_upload_streamed(registry: Registry) -> None:
    blob = secrets.token_bytes(42)
    started = registry.http.post(f"/v2/{registry.name}/blobs/uploads/")
    assert started.headers.get("Location"), "POST should yield a Location"
    patched = registry.http.patch(
        started.headers["Location"], content=blob, headers={"Content-Type": "application/octet-stream"}
    )
    status(patched, "PATCH request with blob in body should yield 202 response", 202)
    done = registry.http.put(
        patched.headers["Location"],
        params={"digest": digest_of(blob)},
        # The suite sets Content-Length to the blob's length and sends no body; Go sends 0 for it.
        headers={"Content-Type": "application/octet-stream"},
    )
    status(done, "PUT request to session URL with digest should yield 201 response", 201)
    assert done.headers.get("Location")


def test_push_blob_upload_monolithic(registry: Registry) -> None:
    http, name, config, layer = registry.http, registry.name, config_blob(), layer_blob()
    status(
        http.get(f"/v2/{name}/blobs/{DUMMY_DIGEST}"),
        "GET nonexistent blob should result in 404 response",
        404,
    )
    posted = http.post(
        f"/v2/{name}/blobs/uploads/",
        params={"digest": digest_of(config)},
        content=config,
        headers={"Content-Type": "application/octet-stream"},
    )
    status(posted, "POST request with digest and blob should yield a 201 or 202", 201, 202)
    assert posted.headers.get("Location")
    expected = 200 if posted.status_code == 201 else 404
    status(
        http.get(f"/v2/{name}/blobs/{digest_of(config)}"),
        "GET request to blob URL from prior request",
        expected,
    )
    session = status(http.post(f"/v2/{name}/blobs/uploads/"), "POST request should yield a session ID", 202)
    put = http.put(
        session.headers["Location"],
        params={"digest": digest_of(config)},
        content=config,
        headers={"Content-Type": "application/octet-stream"},
    )
    status(put, "PUT upload of a blob should yield a 201 Response", 201)
    status(
        http.get(f"/v2/{name}/blobs/{digest_of(config)}"),
        "GET request to existing blob should yield 200 response",
        200,
    )
    status(registry.blob_upload(layer), "PUT upload of a layer blob should yield a 201 Response", 201)
    status(
        http.get(f"/v2/{name}/blobs/{digest_of(layer)}"),
        "GET request to existing layer should yield 200 response",
        200,
    )


def test_push_blob_upload_chunked(registry: Registry) -> None:
    http, name = registry.http, registry.name
    blob = secrets.token_bytes(42)
    first, second = blob[:22], blob[22:]
    octets = {"Content-Type": "application/octet-stream"}

    def patch(location: str, chunk: bytes, start: int) -> httpx.Response:
        headers = {**octets, "Content-Range": f"{start}-{start + len(chunk) - 1}"}
        return http.patch(location, content=chunk, headers=headers)

    stray = http.post(f"/v2/{name}/blobs/uploads/", headers={"Content-Length": "0"})
    status(
        patch(stray.headers["Location"], second, len(first)),
        "Out-of-order blob upload should return 416",
        416,
    )
    started = http.post(f"/v2/{name}/blobs/uploads/", headers={"Content-Length": "0"})
    chunk = status(
        patch(started.headers["Location"], first, 0), "PATCH request with first chunk should return 202", 202
    )
    assert chunk.headers["Range"] == f"0-{len(first) - 1}", "PATCH request with first chunk should return 202"
    status(patch(started.headers["Location"], first, 0), "Retry previous blob chunk should return 416", 416)
    stale = status(
        http.get(started.headers["Location"]),
        "Get on stale blob upload should return 204 with a range and location",
        204,
    )
    assert stale.headers["Location"] and stale.headers["Range"] == f"0-{len(first) - 1}"
    rest = status(
        patch(stale.headers["Location"], second, len(first)),
        "PATCH request with second chunk should return 202",
        202,
    )
    done = http.put(
        rest.headers["Location"],
        params={"digest": digest_of(blob)},
        headers={**octets, "Content-Length": "0"},
    )
    status(done, "PUT request with digest should return 201", 201)
    assert done.headers.get("Location")


@pytest.mark.parametrize("automatic_crossmount", [True, False], ids=["automatic-enabled", "automatic-unset"])
def test_push_cross_repository_blob_mount(registry: Registry, automatic_crossmount: bool) -> None:
    http, name, cross = registry.http, registry.name, registry.crossmount
    blob = secrets.token_bytes(42)
    ok(registry.blob_upload(blob), "Blob Upload Streamed")
    started = http.post(f"/v2/{cross}/blobs/uploads/", params={"mount": DUMMY_DIGEST})
    status(started, "Cross-mounting of a blob without the from argument should yield session id", 202)
    assert started.headers.get("Location")
    mounted = http.post(f"/v2/{cross}/blobs/uploads/", params={"mount": digest_of(blob), "from": name})
    status(mounted, "POST request to mount another repository's blob should return 201 or 202", 201)
    assert mounted.headers["Location"] == f"/v2/{cross}/blobs/{digest_of(blob)}"
    status(
        http.get(mounted.headers["Location"]),
        "GET request to test digest within cross-mount namespace should return 200",
        200,
    )
    if automatic_crossmount:  # OCI_AUTOMATIC_CROSSMOUNT=true
        again = http.post(f"/v2/{cross}/blobs/uploads/", params={"mount": digest_of(blob)})
        status(
            again,
            "Cross-mounting without from, and automatic content discovery enabled should return a 201",
            201,
        )
        # And from a repository other than the target: the blob is found where the caller may read it.
        elsewhere = http.post(f"/v2/{cross}/other/blobs/uploads/", params={"mount": digest_of(blob)})
        status(elsewhere, "Cross-mounting without from, from another repository", 201)


def test_push_manifest_upload(registry: Registry) -> None:
    http, name = registry.http, registry.name
    config, empty_config, layer = config_blob(), config_blob(), layer_blob()
    for blob in (config, empty_config, layer):
        ok(registry.blob_upload(blob), "Blob Upload Monolithic")
    body = manifest(config, [layer])
    status(
        http.get(f"/v2/{name}/manifests/{NONEXISTENT_MANIFEST}"),
        "GET nonexistent manifest should return 404",
        404,
    )
    for tag in ("test0", "test1", "test2", "test3"):
        put = status(registry.put_manifest(tag, body), "PUT should accept a manifest upload", 201)
        assert put.headers.get("Location"), "PUT should accept a manifest upload"
    no_layers = json.dumps(
        {"schemaVersion": 2, "config": descriptor(OCI_CONFIG, empty_config), "layers": []}, indent="\t"
    ).encode()
    put = status(
        registry.put_manifest("emptylayer", no_layers),
        "Registry should accept a manifest upload with no layers",
        201,
    )
    assert put.headers.get("Location")
    got = http.get(f"/v2/{name}/manifests/{digest_of(body)}", headers={"Accept": OCI_MANIFEST})
    status(got, "GET request to manifest URL (digest) should yield 200 response", 200)
    assert got.content == body
    # Teardown (manifests first), and an invalid tag to push to stays a client error.
    assert registry.put_manifest(NONEXISTENT_MANIFEST, body).status_code == 400
    for target in (digest_of(body), digest_of(no_layers)):
        status(http.delete(f"/v2/{name}/manifests/{target}"), "Delete manifest created in tests", 202)
    for blob in (config, layer):
        status(http.delete(f"/v2/{name}/blobs/{digest_of(blob)}"), "Delete blob created in tests", 202)


# --- 03 content discovery ------------------------------------------------------------------------
def test_content_discovery_listing_tags(registry: Registry) -> None:
    config, layer = config_blob(), layer_blob()
    for blob in (config, layer):
        ok(registry.blob_upload(blob), "Setup: Populate registry with test blob")
    body = manifest(config, [layer])
    for i in range(4):
        ok(registry.put_manifest(f"test{i}", body), "Setup: Populate registry with test tags")
    listed = status(registry.get("tags/list"), "GET request to list tags should yield 200 response", 200)
    tags = listed.json()["tags"]
    half = len(tags) // 2
    limited = status(
        registry.get("tags/list", params={"n": half}),
        "GET number of tags should be limitable by `n` query parameter",
        200,
    )
    assert len(limited.json()["tags"]) == half
    after = registry.get("tags/list", params={"n": half, "last": limited.json()["tags"][-1]})
    status(after, "GET start of tag is set by `last` query parameter", 200)
    assert len(after.json()["tags"]) <= half and limited.json()["tags"][-1] not in after.json()["tags"]
    assert after.json()["tags"] == tags[half : 2 * half]


def test_content_discovery_listing_references(registry: Registry) -> None:
    configs, layer = [config_blob(), config_blob()], layer_blob()
    subject, unpushed = manifest(configs[0], [layer]), manifest(configs[1], [layer])
    blob_a, blob_b = b"NHL Peanut Butter on my NHL bagel", b"NBA Strawberry Jam on my NBA croissant"
    for blob in (EMPTY, blob_a, blob_b, configs[0], layer):
        ok(registry.blob_upload(blob), "References setup: blobs")
    config_a = artifact(
        subject,
        config=descriptor(TYPE_A, blob_a),
        layers=[EMPTY_DESCRIPTOR],
        annotations={ANNOTATION: "test config a"},
    )
    config_b = artifact(
        subject,
        config=descriptor(TYPE_B, blob_b),
        layers=[EMPTY_DESCRIPTOR],
        annotations={ANNOTATION: "test config b"},
    )
    layer_a = artifact(
        subject,
        config=EMPTY_DESCRIPTOR,
        layers=[descriptor(TYPE_A, blob_a)],
        artifactType=TYPE_A,
        annotations={ANNOTATION: "test layer a"},
    )
    layer_b = artifact(
        subject,
        config=EMPTY_DESCRIPTOR,
        layers=[descriptor(TYPE_B, blob_b)],
        artifactType=TYPE_B,
        annotations={ANNOTATION: "test layer b"},
    )
    layer_c = artifact(
        unpushed, config=EMPTY_DESCRIPTOR, layers=[descriptor(TYPE_B, blob_b)], artifactType=TYPE_B
    )
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "artifactType": "application/vnd.food.stand",
            "manifests": [descriptor(OCI_MANIFEST, config_a), descriptor(OCI_MANIFEST, layer_a)],
            "subject": descriptor(OCI_MANIFEST, subject),
            "annotations": {ANNOTATION: "test index"},
        },
        indent="\t",
    ).encode()
    for body, media_type in (
        (config_a, OCI_MANIFEST),
        (config_b, OCI_MANIFEST),
        (layer_a, OCI_MANIFEST),
        (layer_b, OCI_MANIFEST),
        (index, OCI_INDEX),
        (subject, OCI_MANIFEST),
        (layer_c, OCI_MANIFEST),
    ):
        put = ok(registry.put_manifest(digest_of(body), body, media_type), "References setup")
        if body is not subject:
            expected = digest_of(unpushed if body is layer_c else subject)
            assert put.headers["OCI-Subject"] == expected, "References setup: OCI-Subject"
    annotations = {
        digest_of(b): a
        for b, a in (
            (config_a, "test config a"),
            (config_b, "test config b"),
            (layer_a, "test layer a"),
            (layer_b, "test layer b"),
            (index, "test index"),
        )
    }

    def referrers(digest: str, spec: str, **params: str) -> httpx.Response:
        response = status(registry.get(f"referrers/{digest}", params=params), spec, 200)
        assert response.headers["Content-Type"] == OCI_INDEX, spec
        return response

    assert (
        referrers(DUMMY_DIGEST, "GET request to nonexistent blob should result in empty 200 response").json()[
            "manifests"
        ]
        == []
    )
    listed = referrers(digest_of(subject), "GET request to existing blob should yield 200").json()[
        "manifests"
    ]
    assert {entry["digest"]: entry["annotations"][ANNOTATION] for entry in listed} == annotations
    filtered = referrers(
        digest_of(subject), "GET request to existing blob with filter should yield 200", artifactType=TYPE_A
    )
    assert filtered.headers["OCI-Filters-Applied"] == "artifactType"
    assert {entry["digest"] for entry in filtered.json()["manifests"]} == {
        digest_of(config_a),
        digest_of(layer_a),
    }
    missing = referrers(digest_of(unpushed), "GET request to missing manifest should yield 200").json()[
        "manifests"
    ]
    assert [entry["digest"] for entry in missing] == [digest_of(layer_c)]


# --- 04 content management -----------------------------------------------------------------------
def test_content_management(registry: Registry) -> None:
    http, name, config, layer = registry.http, registry.name, config_blob(), layer_blob()
    for blob in (config, layer):
        ok(registry.blob_upload(blob), "Setup: Populate registry with test config blob/layer")
    body = manifest(config, [layer])
    ok(registry.put_manifest("tagtest0", body), "Setup: Populate registry with test tag")
    ok(registry.put_manifest("tagtest1", body), "Setup: Populate registry with test tag")
    before = status(
        registry.get("tags/list"), "Check how many tags there are before anything gets deleted", 200
    )
    count = len(before.json()["tags"])
    status(
        http.delete(f"/v2/{name}/manifests/tagtest0"), "DELETE request to manifest tag should return 202", 202
    )
    status(
        http.delete(f"/v2/{name}/manifests/{digest_of(body)}"),
        "DELETE request to manifest (digest) should yield 202 response",
        202,
    )
    status(
        http.get(f"/v2/{name}/manifests/{digest_of(body)}"),
        "GET request to deleted manifest URL should yield 404 response",
        404,
    )
    after = status(
        registry.get("tags/list"), "GET request to tags list should reflect manifest deletion", 200, 404
    )
    if after.status_code == 200:
        assert len(after.json()["tags"] or []) == count - 2
    for blob in (config, layer):
        status(
            http.delete(f"/v2/{name}/blobs/{digest_of(blob)}"),
            "DELETE request to blob URL should yield 202 response",
            202,
        )
        status(
            http.get(f"/v2/{name}/blobs/{digest_of(blob)}"),
            "GET request to deleted blob URL should yield 404 response",
            404,
        )


# --- data variants of the suite's main branch (oci-conformance.yaml `data:` and `apis:`) ----------
def test_main_branch_data_variants(registry: Registry) -> None:
    http, name = registry.http, registry.name
    # emptyBlob: a zero-byte blob.
    status(registry.blob_upload(b""), "emptyBlob: push", 201)
    assert status(http.get(f"/v2/{name}/blobs/{digest_of(b'')}"), "emptyBlob: pull", 200).content == b""
    # sha512: content pushed with the sha512 algorithm.
    blob = secrets.token_bytes(64)
    started = http.post(f"/v2/{name}/blobs/uploads/")
    sha512 = digest_of(blob, "sha512")
    status(
        http.put(started.headers["Location"], params={"digest": sha512}, content=blob), "sha512: push", 201
    )
    assert status(http.get(f"/v2/{name}/blobs/{sha512}"), "sha512: pull", 200).content == blob
    # image, index, indexList (an index of an index), nondistributable (layers with urls, never pushed).
    config, layer = config_blob(), layer_blob()
    for each in (config, layer):
        ok(registry.blob_upload(each), "image: blobs")
    foreign = descriptor(
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        b"never pushed",
        urls=["https://example.com/layer.tar.gz"],
    )
    image = json.loads(manifest(config, [layer]))
    image["layers"].append(foreign)
    image_body = json.dumps(image).encode()
    ok(registry.put_manifest(digest_of(image_body), image_body), "nondistributable: push")
    platform = {"architecture": "amd64", "os": "linux"}
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [descriptor(OCI_MANIFEST, image_body, platform=platform)],
        }
    ).encode()
    ok(registry.put_manifest(digest_of(index), index, OCI_INDEX), "index: push")
    nested = json.dumps(
        {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [descriptor(OCI_INDEX, index)]}
    ).encode()
    ok(registry.put_manifest("nested", nested, OCI_INDEX), "indexList: push")
    assert status(http.get(f"/v2/{name}/manifests/nested"), "indexList: pull", 200).content == nested
    # uploadCancel: a cancelled upload is gone.
    session = http.post(f"/v2/{name}/blobs/uploads/")
    status(http.delete(session.headers["Location"]), "uploadCancel: DELETE", 204)
    status(http.get(session.headers["Location"]), "uploadCancel: GET after", 404)
