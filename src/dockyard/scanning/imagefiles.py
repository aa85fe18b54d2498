"""The files of an image for the layer browser: one layer's (`layer`), the merged tree of all its layers
as a container sees it (`merged`), and the difference between two images (`diff`: layers, files and the
inventory's packages).

Layers are read by `layerfiles.LayerReader` (the scanner's TarStream); packages come from the scanner's
`Inventory`, so there is one tar walker and one package reader. The merge applies whiteouts as the
scanner's `Walk` does: `.wh.NAME` deletes NAME of lower layers, `.wh..wh..opq` empties the directory of
what lower layers put there, a later entry replaces an earlier one (a file over a directory deletes
the directory's contents).
"""

from __future__ import annotations

import dataclasses
import json
import posixpath
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from dockyard.content.manifest import parse_manifest
from dockyard.errors import BlobUnknown, PathNotFound
from dockyard.registry.interfaces import ManifestRecord
from dockyard.scanning.interfaces import LayerNotInImage, Limits, NotAnImage
from dockyard.scanning.layerfiles import FileEntry, LayerReader
from dockyard.scanning.sboms import image_of
from dockyard.scanning.services import IMAGE_CONFIGS, Blobs, Inventory, Manifests
from dockyard.scanning.tarstream import DIR, Budget

MAX_DIFF_ITEMS = 10_000  # per list of a diff: two unrelated images would list every file twice


@dataclass(frozen=True, slots=True)
class Image:
    repository: str
    digest: str  # the image manifest (an index's platform image)
    layers: list[dict[str, Any]]  # the manifest's layer descriptors, bottom first


class EntryIndex(Protocol):
    """Where a layer's entries are kept after one complete listing (scans.layer_index)."""

    max_entries: int

    def get(self, digest: str, with_digests: bool = False) -> list[FileEntry] | None: ...

    def put(self, digest: str, entries: list[FileEntry], with_digests: bool) -> None: ...


class LayerEntries:
    """One layer's entries: from the index when it keeps them, else read from the blob (and kept in the
    index once read to the end). Iterate once; `summary()` for the listing's last line; `close()`."""

    def __init__(
        self, files: ImageFiles, image: Image, layer: str, digests: bool, budget: Budget | None
    ) -> None:
        self._index = files.index
        self._layer = layer
        self._digests = digests
        self._cached = self._index.get(layer, digests) if self._index is not None else None
        self.reader = None if self._cached is not None else files.reader(image, layer, budget)

    def __iter__(self) -> Iterator[FileEntry]:
        if self._cached is not None:
            yield from self._cached
            return
        assert self.reader is not None
        kept: list[FileEntry] | None = [] if self._index is not None else None
        for entry in self.reader.entries(digests=self._digests):
            if kept is not None:
                kept.append(entry)
                if self._index is not None and len(kept) > self._index.max_entries:
                    kept = None
            yield entry
        if kept is not None and self._index is not None:
            # Copies: the caller may change what it was given (the merged tree names each one's layer).
            self._index.put(self._layer, [dataclasses.replace(e) for e in kept], self._digests)

    def summary(self) -> dict[str, Any]:
        if self._cached is not None:
            return {"entries": len(self._cached), "cached": True}
        assert self.reader is not None
        return {**self.reader.listing.as_json(), "cached": False}

    def close(self) -> None:
        if self.reader is not None:
            self.reader.blob.close()


class MergedTree:
    """Paths -> entries, with each directory's children, so a whiteout deletes a subtree at once."""

    def __init__(self) -> None:
        self.entries: dict[str, FileEntry] = {}
        self.kids: dict[str, set[str]] = {"": set()}

    def delete(self, path: str) -> None:
        if self.entries.pop(path, None) is None:
            return
        self.kids.get(posixpath.dirname(path), set()).discard(path)
        for child in self.kids.pop(path, set()):
            self._drop(child)

    def _drop(self, path: str) -> None:
        self.entries.pop(path, None)
        for child in self.kids.pop(path, set()):
            self._drop(child)

    def empty(self, directory: str) -> None:
        for child in list(self.kids.get(directory, ())):
            self.delete(child)

    def put(self, entry: FileEntry) -> None:
        old = self.entries.get(entry.path)
        if old is not None and not (old.type == DIR and entry.type == DIR):
            self.delete(entry.path)  # a file over a directory hides what the directory held
        parent = posixpath.dirname(entry.path)
        if parent and parent not in self.entries:
            self.put(FileEntry(parent, DIR, 0, 0o755, 0, 0, 0, "", layer=entry.layer, implied=True))
        self.entries[entry.path] = entry
        self.kids.setdefault(parent, set()).add(entry.path)
        if entry.type == DIR:
            self.kids.setdefault(entry.path, set())

    def below(self, directory: str, recursive: bool) -> Iterator[FileEntry]:
        for path in sorted(self.kids.get(directory, ())):
            yield self.entries[path]
            if recursive and path in self.kids:
                yield from self.below(path, True)


class ImageFiles:
    """Reads manifests from the registry and layers from the blob store; holds no state between calls."""

    def __init__(
        self, manifests: Manifests, blobs: Blobs, limits: Limits, index: EntryIndex | None = None
    ) -> None:
        self._manifests = manifests
        self._blobs = blobs
        self.limits = limits
        self.index = index

    def entries(
        self, image: Image, layer: str, digests: bool = False, budget: Budget | None = None
    ) -> LayerEntries:
        """A layer's entries, from the index when it has them (raises LayerNotInImage, BlobUnknown)."""
        if not any(d.get("digest") == layer for d in image.layers):
            raise LayerNotInImage(f"{image.repository}@{image.digest} has no layer {layer}")
        return LayerEntries(self, image, layer, digests, budget)

    def image(self, repository: str, reference: str, platform: str | None = None) -> Image:
        """The image a reference names (an index: its `platform`'s). Raises ManifestUnknown,
        PlatformUnknown, NotAnImage (a Helm chart, a signature, an SBOM...)."""
        record: ManifestRecord = image_of(self._manifests, repository, reference, platform)
        parsed = parse_manifest(record.content, record.media_type)
        if parsed.is_index or parsed.config is None:
            raise NotAnImage(f"{record.digest} is not an image manifest")
        if parsed.config.media_type not in IMAGE_CONFIGS:
            raise NotAnImage(
                f"an artifact, not a container image (config {parsed.config.media_type}): it has no files"
            )
        layers = json.loads(record.content).get("layers") or []
        return Image(repository, record.digest, [dict(layer) for layer in layers])

    def reader(self, image: Image, layer: str, budget: Budget | None = None) -> LayerReader:
        """A reader of one of the image's layers (the caller closes `reader.blob`)."""
        descriptor = next((d for d in image.layers if d.get("digest") == layer), None)
        if descriptor is None:
            raise LayerNotInImage(f"{image.repository}@{image.digest} has no layer {layer}")
        try:
            blob = self._blobs.open(layer)
        except PathNotFound:
            why = "a foreign layer, not stored in this registry" if descriptor.get("urls") else "missing"
            raise BlobUnknown(f"the layer blob {layer} is {why}") from None
        return LayerReader(blob, self.limits, budget)

    def merged(self, image: Image, digests: bool = False) -> MergedTree:
        """The image's file tree as a container sees it; every entry names its layer. One budget for
        all the layers: the request's cap on decompressed bytes is the image's."""
        tree = MergedTree()
        budget = Budget(self.limits)
        for descriptor in image.layers:
            budget.start_layer()
            layer = self.entries(image, descriptor["digest"], digests, budget)
            try:
                pending: list[FileEntry] = []
                for entry in layer:
                    entry.layer = descriptor["digest"]
                    if entry.opaque:
                        tree.empty(entry.parent)
                    elif entry.whiteout:
                        tree.delete(posixpath.join(entry.parent, entry.name[len(".wh.") :]))
                    else:
                        pending.append(entry)
                # This layer's own entries land after its whiteouts: a whiteout hides lower layers only.
                for entry in pending:
                    tree.put(entry)
            finally:
                layer.close()
        return tree

    def diff(self, old: Image, new: Image, packages: bool = True) -> dict[str, Any]:
        """What changed from `old` to `new`: layers by digest, files by type, size, mode, owner, link
        target and content digest, and packages by the inventory's (ecosystem, name) -> versions."""
        old_layers = [d["digest"] for d in old.layers]
        new_layers = [d["digest"] for d in new.layers]
        result: dict[str, Any] = {
            "from": {"repository": old.repository, "digest": old.digest},
            "to": {"repository": new.repository, "digest": new.digest},
            "layers": {
                "shared": [d for d in new_layers if d in old_layers],
                "added": [d for d in new_layers if d not in old_layers],
                "removed": [d for d in old_layers if d not in new_layers],
            },
            "files": _file_changes(self.merged(old, digests=True), self.merged(new, digests=True)),
            "packages": None,
        }
        if packages:
            result["packages"] = self._package_changes(old, new)
        return result

    def _package_changes(self, old: Image, new: Image) -> dict[str, Any]:
        inventory = Inventory(self._manifests, self._blobs, self.limits)
        before = _versions(inventory.inventory(old.repository, old.digest).images)
        after = _versions(inventory.inventory(new.repository, new.digest).images)
        added, removed, changed = [], [], []
        for key in sorted(set(before) | set(after)):
            ecosystem, name = key
            was, now = before.get(key, set()), after.get(key, set())
            row: dict[str, Any] = {"ecosystem": ecosystem, "name": name}
            if not was:
                added.append({**row, "versions": sorted(now)})
            elif not now:
                removed.append({**row, "versions": sorted(was)})
            elif was != now:
                changed.append({**row, "from": sorted(was), "to": sorted(now)})
        return {"added": added, "removed": removed, "changed": changed}


def _versions(images: list[Any]) -> dict[tuple[str, str], set[str]]:
    out: dict[tuple[str, str], set[str]] = {}
    for image in images:
        for package in image.packages:
            out.setdefault((package.ecosystem, package.name), set()).add(package.version)
    return out


COMPARED = ("type", "size", "mode", "uid", "gid", "link", "digest")


def _file_changes(old: MergedTree, new: MergedTree) -> dict[str, Any]:
    added: list[dict[str, Any]] = []
    removed: list[dict[str, Any]] = []
    changed: list[dict[str, Any]] = []
    counts = {"added": 0, "removed": 0, "changed": 0}
    for path in sorted(set(old.entries) | set(new.entries)):
        was, now = old.entries.get(path), new.entries.get(path)
        if was is None and now is not None:
            counts["added"] += 1
            if len(added) < MAX_DIFF_ITEMS:
                added.append(_brief(now))
        elif now is None and was is not None:
            counts["removed"] += 1
            if len(removed) < MAX_DIFF_ITEMS:
                removed.append(_brief(was))
        elif was is not None and now is not None:
            fields = [f for f in COMPARED if getattr(was, f) != getattr(now, f)]
            if was.type == DIR == now.type:
                fields = [f for f in fields if f not in ("size", "digest")]
            if fields:
                counts["changed"] += 1
                if len(changed) < MAX_DIFF_ITEMS:
                    changed.append(
                        {
                            "path": "/" + path,
                            "fields": fields,
                            "from": _brief(was),
                            "to": _brief(now),
                        }
                    )
    truncated = any(counts[k] > MAX_DIFF_ITEMS for k in counts)
    return {"added": added, "removed": removed, "changed": changed, "counts": counts, "truncated": truncated}


def _brief(entry: FileEntry) -> dict[str, Any]:
    full = entry.as_json()
    return {k: full[k] for k in ("path", "type", "size", "mode", "uid", "gid", "link", "digest", "layer")}
