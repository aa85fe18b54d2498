"""The copy engine between two in-memory sides: what is missing is copied, children before parents and
blobs before manifests, byte for byte; what is there is only asked about; a blob held elsewhere on the
destination is mounted; a cancel stops between blobs and mid-blob; a failing artifact does not stop the
others."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from dockyard.errors import BlobUnknown
from dockyard.jobs.interfaces import JobCancelled
from dockyard.replication import engine
from dockyard.replication.engine import CANCEL_EVERY, CONCURRENCY, MemoryPendingUploads, Replicator
from dockyard.replication.interfaces import (
    ArtifactResult,
    ArtifactStatus,
    BlobSource,
    Counters,
    Direction,
    ManifestData,
    OpenBlob,
    PendingUploads,
    Policy,
)
from dockyard.upstream.interfaces import UpstreamUnavailable

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class MemorySide:
    where = "memory"

    def __init__(self) -> None:
        self.manifests: dict[str, dict[str, ManifestData]] = {}  # repository -> reference -> manifest
        self.blobs: dict[str, bytes] = {}
        self.links: set[tuple[str, str]] = set()
        self.calls: list[tuple[str, str, str]] = []
        self.referrer_lists: dict[str, list[dict[str, Any]]] = {}
        self.uploads: dict[str, bytearray] = {}  # as a destination: uploads not finished
        self.served = 0  # as a source: blob bytes sent
        self.cut_after: int | None = None  # as a source: drop the connection once, past this many bytes
        self.ignores_ranges = False  # as a source: every blob from its first byte

    # seeding
    def image(
        self, repository: str, tag: str | None, seed: str, sizes: Iterable[int] = (100,)
    ) -> ManifestData:
        config = json.dumps({"seed": seed}).encode()
        layers = [
            hashlib.sha256(f"{seed}{n}".encode()).digest() * (size // 32 + 1) for n, size in enumerate(sizes)
        ]
        for blob in (config, *layers):
            self.blobs[digest(blob)] = blob
            self.links.add((repository, digest(blob)))
        document = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": digest(config),
                "size": len(config),
            },
            "layers": [
                {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest(b), "size": len(b)}
                for b in layers
            ],
        }
        return self.store(repository, tag, OCI_MANIFEST, json.dumps(document, indent=3).encode())

    def store(self, repository: str, tag: str | None, media_type: str, data: bytes) -> ManifestData:
        manifest = ManifestData(media_type, digest(data), data)
        references = self.manifests.setdefault(repository, {})
        references[manifest.digest] = manifest
        if tag:
            references[tag] = manifest
        return manifest

    # Side
    def repositories(self) -> list[str]:
        return sorted(self.manifests)

    def tags(self, repository: str) -> list[str]:
        self.calls.append(("GET tags", repository, ""))
        return sorted(ref for ref in self.manifests.get(repository, {}) if not ref.startswith("sha256:"))

    def manifest(self, repository: str, reference: str) -> ManifestData | None:
        self.calls.append(("GET manifest", repository, reference))
        return self.manifests.get(repository, {}).get(reference)

    def manifest_digest(self, repository: str, reference: str) -> str | None:
        self.calls.append(("HEAD manifest", repository, reference))
        found = self.manifests.get(repository, {}).get(reference)
        return None if found is None else found.digest

    def has_blob(self, repository: str, digest_: str) -> bool:
        self.calls.append(("HEAD blob", repository, digest_))
        return (repository, digest_) in self.links

    def mount_blob(self, repository: str, digest_: str, sources: Iterable[str]) -> bool:
        if digest_ in self.blobs:
            self.calls.append(("mount", repository, digest_))
            self.links.add((repository, digest_))
            return True
        return False

    def open_blob(self, repository: str, digest_: str, offset: int = 0) -> BlobSource:
        if (repository, digest_) not in self.links:
            raise BlobUnknown()
        self.calls.append(("GET blob", repository, digest_))
        start = 0 if self.ignores_ranges else offset
        data = self.blobs[digest_]

        def chunks() -> Iterator[bytes]:
            for i in range(start, len(data), 1000):
                if self.cut_after is not None and self.served >= self.cut_after:
                    self.cut_after = None  # once
                    raise UpstreamUnavailable("the source dropped the connection")
                self.served += len(data[i : i + 1000])
                yield data[i : i + 1000]

        return BlobSource(start, len(data), chunks(), lambda: None)

    def push_blob(
        self, repository: str, digest_: str, size: int, open_source: OpenBlob, pending: PendingUploads
    ) -> None:
        upload = pending.get(repository, digest_)
        if upload is None or upload not in self.uploads:
            upload = f"upload-{len(self.uploads)}"
            self.uploads[upload] = bytearray()
        written = self.uploads[upload]
        source = open_source(len(written))
        skip = len(written) - source.start
        try:
            for chunk in source.chunks:
                cut = min(skip, len(chunk))
                skip -= cut
                written += chunk[cut:]
        except UpstreamUnavailable:
            pending.put(repository, digest_, upload)
            raise
        del self.uploads[upload]
        pending.drop(repository, digest_)
        data = bytes(written)
        assert digest(data) == digest_ and len(data) == size
        self.calls.append(("PUT blob", repository, digest_))
        self.blobs[digest_] = data
        self.links.add((repository, digest_))

    def put_manifest(self, repository: str, reference: str, manifest: ManifestData) -> None:
        from dockyard.content.manifest import parse_manifest

        parsed = parse_manifest(manifest.data, manifest.media_type)
        for blob in ([parsed.config] if parsed.config else []) + list(parsed.blobs):
            assert (repository, blob.digest) in self.links, f"{blob.digest} before its manifest"
        for child in parsed.manifests:
            assert child.digest in self.manifests.get(repository, {}), "children before the index"
        self.calls.append(("PUT manifest", repository, reference))
        self.store(
            repository,
            None if reference.startswith("sha256:") else reference,
            manifest.media_type,
            manifest.data,
        )

    def referrers(self, repository: str, digest_: str) -> list[dict[str, Any]]:
        return self.referrer_lists.get(digest_, [])

    def delete_tag(self, repository: str, tag: str) -> None:
        del self.manifests[repository][tag]


class Watch:
    def __init__(self, cancel_after: int | None = None) -> None:
        self.looks = 0
        self.cancel_after = cancel_after
        self.lines: list[str] = []

    def log(self, line: str) -> None:
        self.lines.append(line)

    def progress(self, done: int, total: int | None = None) -> None:
        pass

    def check_cancelled(self) -> None:
        self.looks += 1
        if self.cancel_after is not None and self.looks > self.cancel_after:
            raise JobCancelled("cancelled")


def replicate(
    source: MemorySide,
    destination: MemorySide,
    watch: Watch | None = None,
    concurrency: int = CONCURRENCY,
    pending: MemoryPendingUploads | None = None,
    **fields: Any,
) -> tuple[Counters, list[ArtifactResult]]:
    results: list[ArtifactResult] = []
    policy = Policy(**{"name": "p", "direction": Direction.PUSH, "endpoint": "e", **fields})
    replicator = Replicator(
        policy,
        source,
        destination,
        watch or Watch(),
        lambda result, _: results.append(result),
        concurrency=concurrency,
        pending=pending,
    )
    return replicator.run(), results


def test_copies_images_byte_for_byte_and_a_second_run_copies_nothing() -> None:
    source, destination = MemorySide(), MemorySide()
    one = source.image("team/app", "1", "one", sizes=(5000, 7000))
    source.image("team/app", "2", "two")
    counters, results = replicate(source, destination, dest_namespace="mirror")
    assert sorted(r.destination for r in results) == ["mirror/app:1", "mirror/app:2"]
    assert all(r.status is ArtifactStatus.COPIED for r in results)
    assert destination.manifests["mirror/app"]["1"].data == one.data
    assert counters.blobs_copied == 5 and counters.manifests_copied == 2
    destination.calls.clear()
    again, results = replicate(source, destination, dest_namespace="mirror")
    assert all(r.status is ArtifactStatus.SKIPPED for r in results)
    assert again.blobs_copied == again.bytes_copied == again.manifests_copied == 0
    assert {call[0] for call in destination.calls} == {"GET tags", "HEAD manifest"}  # asked, never sent


def test_a_tag_missing_from_the_destinations_list_costs_no_head() -> None:
    """A repository several tags go to is listed once: a tag it lacks is copied without a HEAD of
    its own; one it has is asked (the same digest is skipped). With override off, each is asked."""
    source, destination = MemorySide(), MemorySide()
    for n in range(3):
        source.image("app", f"v{n}", f"image-{n}")
    destination.store("app", "v0", OCI_MANIFEST, source.manifests["app"]["v0"].data)
    _, results = replicate(source, destination, concurrency=2)
    assert sorted((r.source, r.status.value) for r in results) == [
        ("app:v0", "skipped"), ("app:v1", "copied"), ("app:v2", "copied")
    ]
    asked = [call[:2] for call in destination.calls if call[0] in ("GET tags", "HEAD manifest")]
    assert sorted(asked) == [("GET tags", "app"), ("HEAD manifest", "app")]
    for kept_tags, many in ((False, 0), (True, 3)):
        destination = MemorySide()
        replicate(source, destination, override=not kept_tags)
        heads = [call for call in destination.calls if call[0] == "HEAD manifest"]
        assert len(heads) == many


def test_an_index_goes_with_its_children_and_a_signature_with_its_subject() -> None:
    source, destination = MemorySide(), MemorySide()
    arm, amd = source.image("app", None, "arm"), source.image("app", None, "amd")
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {"mediaType": OCI_MANIFEST, "digest": m.digest, "size": len(m.data)} for m in (arm, amd)
            ],
        }
    ).encode()
    top = source.store("app", "multi", OCI_INDEX, index)
    signature = source.image("app", None, "sig")
    source.referrer_lists[top.digest] = [{"mediaType": OCI_MANIFEST, "digest": signature.digest, "size": 1}]
    counters, results = replicate(source, destination)
    assert [r.status for r in results] == [ArtifactStatus.COPIED]
    for manifest in (arm, amd, top, signature):
        assert destination.manifests["app"][manifest.digest].data == manifest.data
    assert counters.manifests_copied == 4


def test_blobs_already_on_the_destination_are_mounted_or_skipped_not_sent() -> None:
    source, destination = MemorySide(), MemorySide()
    image = source.image("a/one", "1", "shared", sizes=(3000,))
    source.store("a/two", "1", image.media_type, image.data)
    source.links |= {("a/two", d) for (_, d) in list(source.links)}
    # One at a time (artifacts copied at once may each send a blob they share).
    counters, _ = replicate(source, destination, concurrency=1)
    assert counters.blobs_copied == 2 and counters.blobs_mounted == 2  # a/two mounts what a/one brought
    assert [c for c in destination.calls if c[0] == "PUT blob" and c[1] == "a/two"] == []


def test_override_off_keeps_the_destination_tag() -> None:
    source, destination = MemorySide(), MemorySide()
    source.image("app", "latest", "new")
    theirs = destination.image("app", "latest", "old")
    _, results = replicate(source, destination, override=False)
    assert results[0].status is ArtifactStatus.SKIPPED and results[0].error == f"kept {theirs.digest}"
    assert destination.manifests["app"]["latest"] == theirs


def test_a_failing_artifact_is_recorded_and_the_others_go_on() -> None:
    source, destination = MemorySide(), MemorySide()
    broken = source.image("app", "1", "broken")
    source.links.discard(("app", json.loads(broken.data)["layers"][0]["digest"]))  # a layer it cannot give
    good = source.image("app", "2", "good")
    counters, results = replicate(source, destination)
    assert {r.source: r.status for r in results} == {
        "app:1": ArtifactStatus.FAILED,
        "app:2": ArtifactStatus.COPIED,
    }
    assert counters.artifacts_failed == 1 and destination.manifests["app"]["2"] == good
    assert "1" not in destination.manifests["app"]  # nothing half: no manifest without its blobs


def test_a_cancel_stops_the_run_and_the_next_copies_only_the_rest() -> None:
    source, destination = MemorySide(), MemorySide()
    for n in range(6):
        source.image("app", f"v{n}", f"image-{n}")
    with pytest.raises(JobCancelled):
        replicate(source, destination, Watch(cancel_after=10))
    arrived = set(destination.tags("app"))
    assert 0 < len(arrived) < 6
    counters, results = replicate(source, destination)
    assert {r.destination.split(":")[1] for r in results if r.status is ArtifactStatus.COPIED} == {
        f"v{n}" for n in range(6)
    } - arrived
    assert counters.artifacts_skipped == len(arrived)


def test_a_cancel_is_noticed_inside_a_large_blob() -> None:
    source, destination = MemorySide(), MemorySide()
    source.image("app", "big", "big", sizes=(3 * CANCEL_EVERY,))
    watch = Watch(cancel_after=4)  # the looks before the blob, then within it
    with pytest.raises(JobCancelled):
        replicate(source, destination, watch)
    assert not [c for c in destination.calls if c[0] == "PUT manifest"]


def test_propagate_deletes_removes_selected_tags_gone_from_the_source() -> None:
    source, destination = MemorySide(), MemorySide()
    source.image("app", "2", "two")
    destination.image("app", "1", "one")
    destination.image("app", "keep-me", "other")
    _, results = replicate(source, destination, tags="{1,2}", propagate_deletes=True)
    assert {r.destination: r.status for r in results} == {
        "app:2": ArtifactStatus.COPIED,
        "app:1": ArtifactStatus.DELETED,
    }
    assert destination.tags("app") == ["2", "keep-me"]


def test_a_bandwidth_limit_holds_the_copies_back_to_its_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    """200 kB at 64 KiB/s with one second of burst: the copies sleep ~2 s in all (in slices that look
    at the cancel flag), whatever the concurrency; without a limit they never sleep."""
    import dockyard.replication.engine as engine
    import dockyard.replication.throttle as throttle

    slept: list[float] = []
    now = [1000.0]

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    # The engine's own `time` only: patching the time module would also catch the sleeps of threads
    # other tests of this worker left running (CI once summed 14,323 s of their 1 s naps here).
    clock = SimpleNamespace(sleep=sleep, monotonic=lambda: now[0])
    monkeypatch.setattr(engine, "time", clock)
    monkeypatch.setattr(throttle, "time", clock)  # the run's Throttle, made after this
    source, destination = MemorySide(), MemorySide()
    source.image("app", "1", "one", sizes=(100_000,))
    source.image("app", "2", "two", sizes=(100_000,))
    total = sum(len(blob) for blob in source.blobs.values())
    watch = Watch()
    replicate(source, destination, watch, concurrency=2, bandwidth=65536)
    expected = (total - 65536) / 65536
    assert abs(sum(slept) - expected) < 0.6, (sum(slept), expected)
    assert max(slept) <= engine.THROTTLE_SLICE and watch.looks > len(slept)
    slept.clear()
    replicate(source, MemorySide())
    assert slept == []


def test_the_throttle_gives_a_burst_then_paces() -> None:
    from dockyard.replication.throttle import Throttle

    now = [100.0]
    throttle = Throttle(1000, burst=1.0, clock=lambda: now[0])
    assert throttle.take(1000) == 0  # the burst
    assert throttle.take(500) == pytest.approx(0.5)
    now[0] += 10  # a pause: credit for one burst, not ten
    assert throttle.take(1000) == 0
    assert throttle.take(1000) == pytest.approx(1.0)


def test_named_repositories_are_asked_for_without_the_catalog() -> None:
    """Docker Hub has no /v2/_catalog: a pull policy naming its repositories (no wildcard) still runs."""

    class NoCatalog(MemorySide):
        def repositories(self) -> list[str]:
            raise AssertionError("the catalog was listed")

    source, destination = NoCatalog(), MemorySide()
    source.image("library/alpine", "3.20", "alpine")
    source.image("library/busybox", "1.36", "busybox")
    source.image("library/nginx", "1.27", "nginx")  # not named
    counters, results = replicate(source, destination, repositories="library/{alpine,busybox,missing}")
    assert sorted(r.source for r in results) == ["library/alpine:3.20", "library/busybox:1.36"]
    assert counters.artifacts_copied == 2


@pytest.mark.parametrize("ignores_ranges", [False, True])
def test_a_blob_cut_off_midway_continues_where_it_stopped(
    ignores_ranges: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The source drops the connection after 30000 bytes of a 100000-byte layer: the copy goes on from
    byte 30000 (a ranged read), so the source sends the blob once in all; a source that ignores ranges
    sends it again from its start, and the bytes written already are skipped. Byte for byte either way."""
    monkeypatch.setattr(engine, "RETRY_PAUSE", 0.01)
    source, destination = MemorySide(), MemorySide()
    image = source.image("app", "1", "big", sizes=(100_000,))
    source.ignores_ranges = ignores_ranges
    source.cut_after = 30_000
    watch = Watch()
    counters, results = replicate(source, destination, watch)
    assert counters.blobs_copied == 2
    assert [r.status for r in results] == [ArtifactStatus.COPIED]
    layer = json.loads(image.data)["layers"][0]
    assert destination.blobs[layer["digest"]] == source.blobs[layer["digest"]]
    config_size = json.loads(image.data)["config"]["size"]
    resent = 30_000 if ignores_ranges else 0
    assert source.served == config_size + layer["size"] + resent
    assert any("cut off" in line for line in watch.lines)
    assert not destination.uploads


def test_a_blob_a_run_left_unfinished_is_continued_by_the_next_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """A source that keeps failing: the run gives the blob up after BLOB_ATTEMPTS tries, with its
    upload kept as pending; the next run continues it from there instead of from its first byte."""
    monkeypatch.setattr(engine, "RETRY_PAUSE", 0.0)
    monkeypatch.setattr(engine, "BLOB_ATTEMPTS", 1)
    source, destination = MemorySide(), MemorySide()
    image = source.image("app", "1", "big", sizes=(100_000,))
    layer = json.loads(image.data)["layers"][0]
    config_size = json.loads(image.data)["config"]["size"]
    source.cut_after = config_size + 40_000
    pending = MemoryPendingUploads()
    _, results = replicate(source, destination, pending=pending, concurrency=1)
    assert [r.status for r in results] == [ArtifactStatus.FAILED]
    assert list(pending.entries) == [("app", layer["digest"])]
    _, results = replicate(source, destination, pending=pending, concurrency=1)
    assert [r.status for r in results] == [ArtifactStatus.COPIED]
    assert destination.blobs[layer["digest"]] == source.blobs[layer["digest"]]
    assert source.served == config_size + layer["size"]  # no byte of it sent twice
    assert not pending.entries and not destination.uploads


def _labelled(side: MemorySide, repository: str, tag: str | None, labels: dict[str, str]) -> ManifestData:
    config = json.dumps({"architecture": "amd64", "config": {"Labels": labels}}).encode()
    layer = f"layer {tag} {labels}".encode()
    for blob in (config, layer):
        side.blobs[digest(blob)] = blob
        side.links.add((repository, digest(blob)))
    document = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest(config),
                   "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest(layer),
                    "size": len(layer)}],
    }  # fmt: skip
    return side.store(repository, tag, OCI_MANIFEST, json.dumps(document).encode())


def test_artifact_filters_select_by_type_and_by_labels_an_index_by_its_first_image() -> None:
    source = MemorySide()
    prod = _labelled(source, "app", "prod", {"tier": "prod"})
    dev = _labelled(source, "app", "dev", {"tier": "dev"})
    index = json.dumps(
        {"schemaVersion": 2, "mediaType": OCI_INDEX,
         "manifests": [{"mediaType": OCI_MANIFEST, "digest": m.digest, "size": len(m.data)}
                       for m in (prod, dev)]}
    ).encode()  # fmt: skip
    source.store("app", "multi", OCI_INDEX, index)
    signature = json.dumps(
        {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
         "artifactType": "application/vnd.dev.cosign.artifact.sig.v1+json",
         "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": digest(b"{}"), "size": 2},
         "layers": [], "subject": {"mediaType": OCI_MANIFEST, "digest": prod.digest, "size": len(prod.data)}}
    ).encode()  # fmt: skip
    source.blobs[digest(b"{}")] = b"{}"
    source.links.add(("app", digest(b"{}")))
    stored = source.store("app", "prod-sig", OCI_MANIFEST, signature)
    source.referrer_lists[prod.digest] = [{"digest": stored.digest, "mediaType": OCI_MANIFEST}]

    destination = MemorySide()
    watch = Watch()
    _, results = replicate(source, destination, watch, labels=("tier=prod",))
    assert sorted(r.source for r in results) == ["app:multi", "app:prod"]  # the index: its first image's
    assert stored.digest in destination.manifests["app"]  # the signature goes with its subject
    assert "prod-sig" not in destination.manifests["app"]  # its tag has no labels: not selected
    assert any("app:dev: not selected (labels)" in line for line in watch.lines)

    destination = MemorySide()
    _, results = replicate(source, destination, artifact_types=("signature",))
    assert [r.source for r in results] == ["app:prod-sig"]
    _, results = replicate(source, MemorySide(), artifact_types=("image",))
    assert sorted(r.source for r in results) == ["app:dev", "app:multi", "app:prod"]
