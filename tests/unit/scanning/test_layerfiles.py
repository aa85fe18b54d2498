"""The layer browser's readers: one layer's entries as stored, the merged tree, the diff of two images,
and hostile layers (names that climb out, NUL bytes, huge names, link loops, a gzip bomb, garbage)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
import zlib

import pytest

from dockyard.content import mediatypes as mt
from dockyard.errors import PathNotFound
from dockyard.registry.interfaces import ManifestRecord
from dockyard.scanning.imagefiles import ImageFiles
from dockyard.scanning.interfaces import (
    MIB,
    FileNotInLayer,
    LayerNotInImage,
    LayerReadLimit,
    LayerUnreadable,
    Limits,
    NotAnImage,
)
from dockyard.scanning.layerfiles import FileEntry, LayerReader, children, clean_path
from tests.support.layers import Member, file, layer, opaque, whiteout


def raw_tar(*infos: tuple[tarfile.TarInfo, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in infos:
            info.size = len(data) if info.type == tarfile.REGTYPE else 0
            tar.addfile(info, io.BytesIO(data) if data else None)
    return out.getvalue()


def info(name: str, kind: bytes = tarfile.REGTYPE, **fields: object) -> tarfile.TarInfo:
    item = tarfile.TarInfo(name)
    item.type = kind
    for key, value in fields.items():
        setattr(item, key, value)
    return item


def entries(blob: bytes, limits: Limits | None = None, digests: bool = False) -> list[FileEntry]:
    return list(LayerReader(io.BytesIO(blob), limits or Limits()).entries(digests=digests))


def test_an_entry_has_its_type_mode_owner_time_link_and_digest() -> None:
    blob = gzip.compress(
        raw_tar(
            (info("usr/", tarfile.DIRTYPE, mode=0o755), b""),
            (info("usr/bin/tool", mode=0o4755, uid=1000, gid=50, mtime=1700000000), b"#!/bin/sh\n"),
            (info("usr/bin/link", tarfile.SYMTYPE, linkname="tool", mode=0o777), b""),
            (info("usr/bin/same", tarfile.LNKTYPE, linkname="usr/bin/tool"), b""),
            (info("dev/null", tarfile.CHRTYPE, mode=0o666), b""),
        )
    )
    listed = {e.path: e.as_json() for e in entries(blob, digests=True)}
    tool = listed["usr/bin/tool"]
    assert (tool["type"], tool["size"], tool["mode"], tool["mode_string"]) == (
        "file",
        10,
        "4755",
        "-rwsr-xr-x",
    )
    assert (tool["uid"], tool["gid"], tool["mtime"]) == (1000, 50, 1700000000)
    assert tool["digest"] == "sha256:" + hashlib.sha256(b"#!/bin/sh\n").hexdigest()
    assert tool["path"] == "/usr/bin/tool" and tool["name"] == "tool"
    assert (listed["usr"]["type"], listed["usr"]["mode_string"]) == ("dir", "drwxr-xr-x")
    assert (listed["usr/bin/link"]["type"], listed["usr/bin/link"]["link"]) == ("symlink", "tool")
    assert listed["usr/bin/link"]["mode_string"] == "lrwxrwxrwx"
    assert (listed["usr/bin/same"]["type"], listed["usr/bin/same"]["link"]) == ("hardlink", "usr/bin/tool")
    assert listed["dev/null"]["type"] == "other"


def test_plain_tar_and_gzip_read_alike_and_zstd_or_garbage_is_a_clear_error() -> None:
    members = [file("a/b", b"x"), file("c", b"yy")]
    plain, zipped = layer(members, compress=False), layer(members)
    assert [e.path for e in entries(plain)] == [e.path for e in entries(zipped)] == ["a/b", "c"]
    with pytest.raises(LayerUnreadable, match="zstd"):
        entries(b"\x28\xb5\x2f\xfd" + bytes(600))
    with pytest.raises(LayerUnreadable, match="not a readable tar"):
        entries(b"this is not a tar archive, not gzip either" * 40)
    with pytest.raises(LayerUnreadable, match="corrupt compressed stream"):
        entries(zipped[: len(zipped) // 2])


def test_whiteouts_and_opaque_directories_are_marked() -> None:
    listed = {e.path: e for e in entries(layer([whiteout("etc/old"), opaque("var/cache")]))}
    assert listed["etc/.wh.old"].whiteout and not listed["etc/.wh.old"].opaque
    assert listed["var/cache/.wh..wh..opq"].opaque and not listed["var/cache/.wh..wh..opq"].whiteout


def test_hostile_names_are_normalised_escaped_or_skipped() -> None:
    long_name = "d/" + "n" * 5000
    blob = layer(
        [
            file("../../etc/passwd", b"root"),
            file("/abs/file", b"1"),
            file("./dot/../dot/x", b"2"),
            file("a/../../up", b"3"),
            file(long_name, b"4"),
        ],
        compress=False,
    )
    bad = raw_tar((info("nul\x00hidden"), b"5"))  # ustar names end at NUL
    nul_pax = info("p")
    nul_pax.pax_headers = {"path": "pax\x00name"}
    pax = raw_tar((nul_pax, b"6"))
    reader = LayerReader(io.BytesIO(blob), Limits())
    paths = [e.path for e in reader.entries()]
    assert paths == ["abs/file", "dot/x", long_name]
    assert [s["name"] for s in reader.listing.skipped] == ["../../etc/passwd", "a/../../up"]
    assert reader.listing.skipped_total == 2
    assert [e.path for e in entries(bad)] == ["nul"]
    assert [e.path for e in entries(pax)] == ["pax\\x00name"]  # a NUL in a pax path is shown escaped
    not_utf8 = info("x")
    not_utf8.pax_headers = {"path": "caf\udce9"}
    assert [e.path for e in entries(raw_tar((not_utf8, b"")))] in (["caf\\xe9"], ["café"])
    with pytest.raises(FileNotInLayer):
        clean_path("/../../etc")
    assert clean_path("/") == "" and clean_path("//a/./b/") == "a/b"


def test_huge_headers_many_entries_and_a_gzip_bomb_stop_at_their_bounds() -> None:
    huge = info("x")
    huge.pax_headers = {"comment": "y" * (2 * MIB)}
    with pytest.raises(LayerUnreadable, match="extended header"):
        entries(raw_tar((huge, b"")))
    with pytest.raises(LayerReadLimit, match="more than 10 entries"):
        entries(layer([file(f"f{i}", b"") for i in range(50)]), Limits(max_entries=10))
    # 256 MiB of zeros in a ~256 KiB gzip: stopped at 16 MiB of output, after the first entry.
    header = info("big")
    header.size = 256 * MIB
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    parts = [compressor.compress(header.tobuf(format=tarfile.PAX_FORMAT))]
    parts += [compressor.compress(bytes(MIB)) for _ in range(256)]
    bomb = b"".join(parts) + compressor.compress(bytes(1024)) + compressor.flush()
    assert len(bomb) < MIB
    reader = LayerReader(io.BytesIO(bomb), Limits(max_layer_bytes=16 * MIB, max_image_bytes=16 * MIB))
    seen = []
    with pytest.raises(LayerReadLimit, match="larger than 16777216 bytes"):
        for entry in reader.entries():
            seen.append(entry.path)
    assert seen == ["big"]
    assert reader.budget.layer_bytes <= 17 * MIB


def test_children_list_one_directory_with_implied_subdirectories() -> None:
    blob = layer([file("a/b/c", b"1"), file("a/b/d", b"2"), file("a/e", b"3"), file("f", b"4")])
    top = [(e.path, e.type, e.implied) for e in children(iter(entries(blob)), "", False)]
    assert top == [("a", "dir", True), ("f", "file", False)]
    assert [e.path for e in children(iter(entries(blob)), "a", False)] == ["a/b", "a/e"]
    assert [e.path for e in children(iter(entries(blob)), "a", True)] == ["a/b/c", "a/b/d", "a/e"]


def test_find_positions_on_a_file_and_links_are_reported_not_followed() -> None:
    blob = layer(
        [
            file("etc/data", b"content"),
            Member("symlink", "etc/loop", target="loop"),
            Member("hardlink", "etc/hard", target="etc/data"),
        ]
    )
    reader = LayerReader(io.BytesIO(blob), Limits())
    entry, tar = reader.find("etc/data")
    assert b"".join(reader.content(tar)) == b"content" and entry.size == 7
    entry, _ = LayerReader(io.BytesIO(blob), Limits()).find("etc/hard")
    assert (entry.type, entry.link) == ("hardlink", "etc/data")
    with pytest.raises(FileNotInLayer, match="no /nope"):
        LayerReader(io.BytesIO(blob), Limits()).find("nope")


# --- images: the merged tree and the diff ------------------------------------------------------------
class Store:
    """Manifests and blobs in memory, as the registry and the blob store answer them."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.manifests: dict[str, ManifestRecord] = {}

    def add_blob(self, data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        self.blobs[digest] = data
        return digest

    def image(self, tag: str, layers: list[bytes], config_type: str = mt.OCI_CONFIG) -> str:
        config = self.add_blob(json.dumps({"os": "linux", "architecture": "amd64"}).encode())
        descriptors = [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": self.add_blob(data),
                "size": len(data),
            }
            for data in layers
        ]
        body = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": mt.OCI_MANIFEST,
                "config": {"mediaType": config_type, "digest": config, "size": 2},
                "layers": descriptors,
            }
        ).encode()
        record = ManifestRecord("sha256:" + hashlib.sha256(body).hexdigest(), mt.OCI_MANIFEST, body)
        self.manifests[tag] = self.manifests[record.digest] = record
        return record.digest

    def get_manifest(self, name: str, reference: str) -> ManifestRecord:
        return self.manifests[reference]

    def open(self, digest: str, offset: int = 0) -> io.BytesIO:
        if digest not in self.blobs:
            raise PathNotFound()
        return io.BytesIO(self.blobs[digest])


def test_the_merged_tree_applies_whiteouts_opaque_directories_and_replacements() -> None:
    store = Store()
    base = layer(
        [file("etc/keep", b"1"), file("etc/gone", b"2"), file("var/cache/a", b"3"), file("opt/dir/x", b"4")]
    )
    upper = layer(
        [
            whiteout("etc/gone"),
            opaque("var/cache"),
            file("var/cache/b", b"5"),
            file("opt/dir", b"now a file"),
            whiteout("etc/new"),  # a whiteout hides lower layers only: etc/new of this layer stays
            file("etc/new", b"6"),
        ]
    )
    store.image("v1", [base, upper])
    files = ImageFiles(store, store, Limits())
    image = files.image("r", "v1")
    tree = files.merged(image)
    listed = {e.path: e for e in tree.below("", True)}
    assert sorted(listed) == [
        "etc",
        "etc/keep",
        "etc/new",
        "opt",
        "opt/dir",
        "var",
        "var/cache",
        "var/cache/b",
    ]
    assert listed["opt/dir"].type == "file" and listed["opt/dir"].layer == image.layers[1]["digest"]
    assert listed["etc/keep"].layer == image.layers[0]["digest"]
    assert [e.path for e in tree.below("etc", False)] == ["etc/keep", "etc/new"]


def test_a_diff_lists_layers_files_and_packages() -> None:
    store = Store()
    status = "Package: sed\nStatus: install ok installed\nVersion: {}\nArchitecture: amd64\n\n"
    shared = layer([file("etc/os-release", b"ID=debian\nVERSION_ID=12\n"), file("etc/motd", b"hi")])
    old = layer([file("var/lib/dpkg/status", status.format("4.8-1").encode()), file("bin/old", b"1")])
    new = layer([file("var/lib/dpkg/status", status.format("4.9-1").encode()), file("bin/new", b"2")])
    store.image("v1", [shared, old])
    store.image("v2", [shared, new, layer([file("etc/motd", b"hello")])])
    files = ImageFiles(store, store, Limits())
    result = files.diff(files.image("r", "v1"), files.image("r", "v2"))
    assert len(result["layers"]["shared"]) == 1 and len(result["layers"]["added"]) == 2
    assert len(result["layers"]["removed"]) == 1
    assert [f["path"] for f in result["files"]["added"]] == ["/bin/new"]
    assert [f["path"] for f in result["files"]["removed"]] == ["/bin/old"]
    changed = {f["path"]: f["fields"] for f in result["files"]["changed"]}
    assert changed["/etc/motd"] == ["size", "digest"]
    assert changed["/var/lib/dpkg/status"] == ["digest"]  # same size, other content
    assert result["packages"] == {
        "added": [],
        "removed": [],
        "changed": [{"ecosystem": "Debian", "name": "sed", "from": ["4.8-1"], "to": ["4.9-1"]}],
    }


def test_a_non_image_artifact_or_a_foreign_layer_is_refused_clearly() -> None:
    store = Store()
    store.image("chart", [b"not a layer"], config_type="application/vnd.cncf.helm.config.v1+json")
    files = ImageFiles(store, store, Limits())
    with pytest.raises(NotAnImage, match="not a container image"):
        files.image("r", "chart")
    store.image("v1", [layer([file("a", b"1")])])
    image = files.image("r", "v1")
    with pytest.raises(LayerNotInImage):
        files.reader(image, "sha256:" + "0" * 64)
    del store.blobs[image.layers[0]["digest"]]
    with pytest.raises(Exception, match="missing"):
        files.reader(image, image.layers[0]["digest"])
