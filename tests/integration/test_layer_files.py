"""The layer browser over HTTP on a real `dockyard serve` (auth on): a layer's files streamed as NDJSON,
one file downloaded safely, the merged tree, a diff of two tags and across repositories, and what an
attacker tries: a private project, hostile names and links, a gzip bomb, a blob that is not a tar, an
index and a non-image artifact. The CLI's `artifact files|cat|diff` read the same routes."""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.test_inventory import push
from tests.support.cli import run_dockyard
from tests.support.layers import Member, file, layer, opaque, whiteout
from tests.support.ociclient import (
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    OCIClient,
    descriptor,
    digest_of,
    empty_descriptor,
    image_manifest,
    index_manifest,
)
from tests.support.server import RunningServer, start_server
from tests.support.timeouts import HTTP_TIMEOUT

ADMIN = ("admin", "layer-files-Passw0rd-1")
OUTSIDER = ("outsider", "layer-files-Passw0rd-2")
MIB = 1024 * 1024
CAP = 32 * MIB  # layer_files.max_layer_bytes for this server: a bomb stops here
OS_RELEASE = b'ID=debian\nVERSION_ID="12"\n'
STATUS = "Package: sed\nStatus: install ok installed\nArchitecture: amd64\nVersion: {}\n"
HTML = b"<html><script>alert(document.cookie)</script></html>"
OCI_TAR = "application/vnd.oci.image.layer.v1.tar"


def bomb(size: int) -> bytes:
    """A gzip layer of one entry of `size` zero bytes: about 1000 times smaller than it inflates."""
    header = tarfile.TarInfo("zeros")
    header.size = size
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    parts = [compressor.compress(header.tobuf(format=tarfile.PAX_FORMAT))]
    parts += [compressor.compress(bytes(MIB)) for _ in range(size // MIB)]
    return b"".join(parts) + compressor.compress(bytes(1024)) + compressor.flush()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(
        tmp_path_factory.mktemp("layer-files"),
        {"auth": {"enabled": True}, "layer_files": {"max_layer_bytes": CAP, "max_image_bytes": 4 * CAP}},
        env={"DOCKYARD_ADMIN_PASSWORD": ADMIN[1]},
    )
    yield running
    running.stop()


@pytest.fixture(scope="module")
def admin(server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{server.url}/api/v1", auth=ADMIN, timeout=HTTP_TIMEOUT) as client:
        for name, public in (("files", False), ("other", False)):
            assert client.post("/projects", json={"name": name, "public": public}).status_code == 201
        made = client.post("/users", json={"username": OUTSIDER[0], "password": OUTSIDER[1]})
        assert made.status_code == 201, made.text
        yield client


@pytest.fixture(scope="module")
def images(server: RunningServer, admin: httpx.Client) -> dict[str, Any]:
    base = layer(
        [
            Member("dir", "etc"),
            file("etc/os-release", OS_RELEASE),
            file("var/lib/dpkg/status", STATUS.format("4.8-1").encode()),
            file("etc/motd", b"hello\n"),
            file("etc/gone", b"bye\n"),
            file("var/cache/old", b"cached"),
            file("www/index.html", HTML),
        ]
    )
    upper = layer(
        [
            whiteout("etc/gone"),
            opaque("var/cache"),
            file("var/cache/new", b"fresh"),
            Member("symlink", "etc/escape", target="../../../../etc/shadow"),
            Member("symlink", "etc/loop", target="loop"),
            Member("hardlink", "etc/motd-link", target="etc/motd"),
            Member("hardlink", "etc/out", target="../outside"),
            file("../../climb", b"x"),
            file("/abs/path", b"absolute"),
        ],
        compress=False,  # an uncompressed tar layer
    )
    newer = layer([file("var/lib/dpkg/status", STATUS.format("4.9-1").encode()), file("etc/motd", b"hi!\n")])
    with httpx.Client(base_url=server.url, auth=ADMIN, timeout=HTTP_TIMEOUT) as http:
        oci = OCIClient(http)
        v1 = push(oci, "files/app", "v1", [(OCI_LAYER, base), (OCI_TAR, upper)])
        v2 = push(oci, "files/app", "v2", [(OCI_LAYER, base), (OCI_LAYER, newer)])
        push(oci, "other/app", "v1", [(OCI_LAYER, base)])
        push(oci, "files/bomb", "v1", [(OCI_LAYER, bomb(256 * MIB))])
        push(oci, "files/garbage", "v1", [(OCI_LAYER, b"not a tar, not gzip" * 100)])
        index = index_manifest(
            [
                {**descriptor(OCI_MANIFEST, _manifest(oci, "files/app", v1)), "platform": _platform("amd64")},
                {**descriptor(OCI_MANIFEST, _manifest(oci, "files/app", v2)), "platform": _platform("arm64")},
            ]
        )
        oci.push_manifest("files/app", "multi", index, OCI_INDEX)
        oci.push_blob("files/app", b"{}")
        artifact = image_manifest(
            empty_descriptor(), [descriptor("text/plain", b"hello")], artifact_type="application/vnd.example"
        )
        oci.push_blob("files/app", b"hello")
        oci.push_manifest("files/app", "note", artifact, OCI_MANIFEST)
    return {
        "v1": v1,
        "v2": v2,
        "base": digest_of(base),
        "upper": digest_of(upper),
        "newer": digest_of(newer),
        "index": digest_of(index),
    }


def _platform(arch: str) -> dict[str, str]:
    return {"os": "linux", "architecture": arch}


def _manifest(oci: OCIClient, repo: str, digest: str) -> bytes:
    answer = oci.http.get(f"/v2/{repo}/manifests/{digest}", headers={"Accept": OCI_MANIFEST})
    assert answer.status_code == 200
    return answer.content


def ndjson(answer: httpx.Response) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in answer.text.splitlines() if line]
    return lines[:-1], lines[-1]


def layer_path(images: dict[str, Any], key: str, repo: str = "files/app", ref: str = "v1") -> str:
    return f"/repositories/{repo}/artifacts/{ref}/layers/{images[key]}"


def test_a_layer_lists_its_entries_with_their_metadata(admin: httpx.Client, images: dict[str, Any]) -> None:
    entries, end = ndjson(admin.get(layer_path(images, "base") + "/files", params={"path": "/etc"}))
    listed = {e["path"]: e for e in entries}
    assert sorted(listed) == ["/etc/gone", "/etc/motd", "/etc/os-release"]
    motd = listed["/etc/motd"]
    assert (motd["type"], motd["size"], motd["mode"], motd["mode_string"]) == (
        "file",
        6,
        "0644",
        "-rw-r--r--",
    )
    assert end["end"]["entries"] == 7 and end["end"]["compression"] == "gzip"
    top, _ = ndjson(admin.get(layer_path(images, "base") + "/files"))
    assert [(e["path"], e["type"]) for e in top] == [("/etc", "dir"), ("/var", "dir"), ("/www", "dir")]
    assert [e["implied"] for e in top] == [False, True, True]
    entries, end = ndjson(
        admin.get(layer_path(images, "upper") + "/files", params={"recursive": True, "digests": True})
    )
    listed = {e["path"]: e for e in entries}
    assert listed["/etc/.wh.gone"]["whiteout"] and listed["/var/cache/.wh..wh..opq"]["opaque"]
    assert (listed["/etc/escape"]["type"], listed["/etc/escape"]["link"]) == (
        "symlink",
        "../../../../etc/shadow",
    )
    assert listed["/etc/motd-link"]["type"] == "hardlink"
    assert listed["/abs/path"]["digest"].startswith("sha256:")
    assert "/climb" not in listed and "/../../climb" not in listed
    assert end["end"]["compression"] == "none"
    assert end["end"]["skipped"] == [{"name": "../../climb", "reason": end["end"]["skipped"][0]["reason"]}]


def test_a_download_is_an_attachment_that_never_renders(admin: httpx.Client, images: dict[str, Any]) -> None:
    answer = admin.get(layer_path(images, "base") + "/download", params={"path": "/www/index.html"})
    assert answer.status_code == 200, answer.text
    assert answer.content == HTML
    assert answer.headers["content-type"] == "application/octet-stream"
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["content-disposition"].startswith('attachment; filename="index.html"')
    assert "sandbox" in answer.headers["content-security-policy"]
    ranged = admin.get(
        layer_path(images, "base") + "/download",
        params={"path": "/www/index.html"},
        headers={"Range": "bytes=6-13"},
    )
    assert ranged.status_code == 206 and ranged.content == HTML[6:14]
    assert ranged.headers["content-range"] == f"bytes 6-13/{len(HTML)}"
    wrong = admin.get(
        layer_path(images, "base") + "/download",
        params={"path": "/etc/motd"},
        headers={"Range": "bytes=100-"},
    )
    assert wrong.status_code == 416 and wrong.json()["errors"][0]["code"] == "REQUESTED_RANGE_NOT_SATISFIABLE"
    # A hard link gives its target's bytes (read again from the start); links out or symlinks: refused.
    linked = admin.get(layer_path(images, "upper") + "/download", params={"path": "/etc/motd-link"})
    assert linked.status_code == 404, linked.text  # etc/motd is in the lower layer, not this one
    for path in ("/etc/escape", "/etc/loop", "/etc/out", "/../../etc/passwd", "/", "/nothing"):
        refused = admin.get(layer_path(images, "upper") + "/download", params={"path": path})
        assert refused.status_code == 404, (path, refused.text)
        assert refused.json()["errors"][0]["code"] == "NOT_FOUND"
    odd = admin.get(layer_path(images, "upper") + "/download", params={"path": "abs/path"})
    assert odd.status_code == 200 and odd.content == b"absolute"


def test_the_merged_tree_applies_the_layers(admin: httpx.Client, images: dict[str, Any]) -> None:
    entries, end = ndjson(admin.get("/repositories/files/app/artifacts/v1/files", params={"recursive": True}))
    listed = {e["path"]: e for e in entries}
    assert "/etc/gone" not in listed and "/var/cache/old" not in listed
    assert listed["/var/cache/new"]["layer"] == images["upper"]
    assert listed["/etc/motd"]["layer"] == images["base"]
    assert not any(e["whiteout"] or e["opaque"] for e in entries)
    assert end["end"] == {"image": images["v1"], "layers": 2, "entries": len(entries)}
    # An index needs a platform; with one, it is that image's tree.
    refused = admin.get(f"/repositories/files/app/artifacts/{images['index']}/files")
    assert refused.status_code == 400 and "linux/amd64, linux/arm64" in refused.json()["errors"][0]["message"]
    arm, _ = ndjson(
        admin.get("/repositories/files/app/artifacts/multi/files", params={"platform": "linux/arm64"})
    )
    assert {e["path"] for e in arm} == {"/etc", "/var", "/www"}


def test_a_diff_of_two_tags_and_across_repositories(admin: httpx.Client, images: dict[str, Any]) -> None:
    answer = admin.get("/repositories/files/app/artifacts/v1/diff", params={"to": "v2"})
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["layers"] == {
        "shared": [images["base"]],
        "added": [images["newer"]],
        "removed": [images["upper"]],
    }
    changed = {c["path"]: c["fields"] for c in result["files"]["changed"]}
    assert changed["/etc/motd"] == ["size", "digest"]
    assert {f["path"] for f in result["files"]["added"]} >= {"/etc/gone", "/var/cache/old"}
    assert "/var/cache/new" in {f["path"] for f in result["files"]["removed"]}
    assert result["packages"]["changed"] == [
        {"ecosystem": "Debian", "name": "sed", "from": ["4.8-1"], "to": ["4.9-1"]}
    ]
    across = admin.get(
        "/repositories/files/app/artifacts/v1/diff", params={"to": "other/app:v1", "packages": False}
    ).json()
    assert across["to"]["repository"] == "other/app" and across["packages"] is None
    assert across["layers"]["shared"] == [images["base"]]


def test_a_private_project_is_invisible_to_a_user_without_pull(
    server: RunningServer, admin: httpx.Client, images: dict[str, Any]
) -> None:
    with httpx.Client(base_url=f"{server.url}/api/v1", auth=OUTSIDER, timeout=HTTP_TIMEOUT) as outsider:
        for path in (
            layer_path(images, "base") + "/files",
            layer_path(images, "base") + "/download?path=/etc/motd",
            "/repositories/files/app/artifacts/v1/files",
            "/repositories/files/app/artifacts/v1/diff?to=v2",
        ):
            answer = outsider.get(path)
            assert answer.status_code == 404, (path, answer.text)
            assert answer.json()["errors"][0]["code"] == "NOT_FOUND"
    assert admin.post("/projects", json={"name": "open", "public": True}).status_code == 201
    with httpx.Client(base_url=server.url, auth=ADMIN, timeout=HTTP_TIMEOUT) as http:
        push(OCIClient(http), "open/app", "v1", [(OCI_LAYER, layer([file("a", b"1")]))])
    with httpx.Client(base_url=f"{server.url}/api/v1", auth=OUTSIDER, timeout=HTTP_TIMEOUT) as outsider:
        # A public project's image may be diffed against a private one only by who may pull both.
        answer = outsider.get("/repositories/open/app/artifacts/v1/diff", params={"to": "files/app:v1"})
        assert answer.status_code == 404 and "files/app" not in answer.text
        assert outsider.get("/repositories/open/app/artifacts/v1/files").status_code == 200


def test_bad_layers_and_artifacts_answer_in_the_api_format(
    admin: httpx.Client, images: dict[str, Any]
) -> None:
    bomb_layer = admin.get("/repositories/files/bomb/artifacts/v1").json()["manifest"]["layers"][0]["digest"]
    listing = admin.get(f"/repositories/files/bomb/artifacts/v1/layers/{bomb_layer}/files")
    entries, last = ndjson(listing)  # the first entry came; then the cap stopped the read
    assert [e["path"] for e in entries] == ["/zeros"]
    assert last["errors"][0]["code"] == "REQUEST_ENTITY_TOO_LARGE"
    assert f"larger than {CAP} bytes" in last["errors"][0]["message"]
    nested = admin.get(
        f"/repositories/files/bomb/artifacts/v1/layers/{bomb_layer}/download", params={"path": "x"}
    )
    assert nested.status_code == 413, nested.text
    garbage_layer = admin.get("/repositories/files/garbage/artifacts/v1").json()["manifest"]["layers"][0][
        "digest"
    ]
    garbage = admin.get(f"/repositories/files/garbage/artifacts/v1/layers/{garbage_layer}/files")
    assert garbage.status_code == 400 and "not a readable tar" in garbage.json()["errors"][0]["message"]
    note = admin.get("/repositories/files/app/artifacts/note/files")
    assert note.status_code == 400 and "not a container image" in note.json()["errors"][0]["message"]
    unknown = admin.get(f"/repositories/files/app/artifacts/v1/layers/{images['newer']}/files")
    assert unknown.status_code == 404 and "has no layer" in unknown.json()["errors"][0]["message"]
    missing = admin.get("/repositories/files/app/artifacts/v9/files")
    assert missing.status_code == 404


def run_cli(server: RunningServer, home: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKYARD_")}
    env.update(
        XDG_CONFIG_HOME=str(home),
        DOCKYARD_SERVER=server.url,
        DOCKYARD_USERNAME=ADMIN[0],
        DOCKYARD_PASSWORD=ADMIN[1],
        COLUMNS="200",
    )
    return run_dockyard(*args, env=env, text=False)


# The CLI over HTTP only: its routes' database work runs on PostgreSQL in this module's API tests; the
# SQLite pass alone runs it (tests/conftest.py).
@pytest.mark.db_independent
def test_the_cli_lists_prints_and_diffs(
    server: RunningServer, images: dict[str, Any], tmp_path: Path
) -> None:
    listed = run_cli(server, tmp_path, "artifact", "files", "files/app:v1", "/etc")
    assert listed.returncode == 0, listed.stderr
    out = listed.stdout.decode()
    assert "-rw-r--r--" in out and "/etc/motd" in out and images["base"][7:19] in out
    assert "/etc/escape -> ../../../../etc/shadow" in out and "/etc/gone" not in out
    one = run_cli(server, tmp_path, "artifact", "files", "files/app:v1", "/etc", "--layer", images["upper"])
    assert one.returncode == 0 and "whiteout" in one.stdout.decode()
    cat = run_cli(server, tmp_path, "artifact", "cat", "files/app:v1", "/etc/os-release")
    assert cat.returncode == 0 and cat.stdout == OS_RELEASE, cat.stderr
    link = run_cli(server, tmp_path, "artifact", "cat", "files/app:v1", "/etc/escape")
    assert link.returncode == 1 and b"symbolic link" in link.stderr
    saved = tmp_path / "motd"
    run_cli(server, tmp_path, "artifact", "cat", "files/app:v2", "/etc/motd", "-o", str(saved))
    assert saved.read_bytes() == b"hi!\n"
    diffed = run_cli(server, tmp_path, "artifact", "diff", "files/app:v1", "files/app:v2")
    assert diffed.returncode == 0, diffed.stderr
    text = diffed.stdout.decode()
    assert "/etc/motd" in text and "size, digest" in text and "4.8-1" in text and "4.9-1" in text
    bomb_layer = run_cli(server, tmp_path, "artifact", "files", "files/bomb:v1", "--json")
    assert bomb_layer.returncode == 1 and b"larger than" in bomb_layer.stderr


def test_a_layer_read_to_its_end_is_indexed_and_read_back(
    admin: httpx.Client, images: dict[str, Any]
) -> None:
    path = "/repositories/other/app/artifacts/v1/layers/" + images["base"] + "/files"
    first, _ = ndjson(admin.get(path, params={"path": "/etc", "digests": True}))
    second, again = ndjson(admin.get(path, params={"path": "/etc", "digests": True}))
    assert again["end"]["cached"] is True and again["end"]["entries"] == 7
    assert second == first  # the same entries, digests and all
    whole, end = ndjson(admin.get(path, params={"recursive": True}))  # kept with digests: serves without
    assert end["end"]["cached"] is True and len(whole) == 7
    # A listing stopped by a bound is never kept: the bomb is read (and refused) every time.
    bomb_layer = admin.get("/repositories/files/bomb/artifacts/v1").json()["manifest"]["layers"][0]["digest"]
    for _ in range(2):
        _, last = ndjson(admin.get(f"/repositories/files/bomb/artifacts/v1/layers/{bomb_layer}/files"))
        assert last["errors"][0]["code"] == "REQUEST_ENTITY_TOO_LARGE"
