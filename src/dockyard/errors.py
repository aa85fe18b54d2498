"""Domain errors.

They carry no HTTP status: each API maps them to its own format in one place
(`dockyard.api.oci.errors` renders the OCI `{"errors": [...]}` body).
"""

from __future__ import annotations

from typing import Any


class DockyardError(Exception):
    """Base of every error the domain raises on purpose."""

    message = "error"

    def __init__(self, message: str | None = None, detail: Any = None) -> None:
        super().__init__(message or self.message)
        self.message = message or self.message
        self.detail = detail


# --- names, references, digests -------------------------------------------------------------
class NameInvalid(DockyardError):
    message = "invalid repository name"


class NameUnknown(DockyardError):
    message = "repository name not known to registry"


class TagInvalid(DockyardError):
    message = "manifest tag did not match URI"


class DigestInvalid(DockyardError):
    message = "provided digest did not match uploaded content"


class UnsupportedDigest(DigestInvalid):
    message = "unsupported digest algorithm"


# --- blobs and uploads ----------------------------------------------------------------------
class BlobUnknown(DockyardError):
    message = "blob unknown to registry"


class BlobBeingDeleted(DockyardError):
    """Garbage collection is deleting the blob an upload commits: the client may retry shortly."""

    message = "the blob is being garbage-collected; try again shortly"


class BlobReferenced(DockyardError):
    """A blob DELETE of a blob that a manifest of the repository still uses: unlinking it would break
    that image (its pulls would fail on the missing blob)."""

    message = "the blob is used by a manifest in this repository; delete the manifest first"


class BlobUploadUnknown(DockyardError):
    message = "blob upload unknown to registry"


class BlobUploadInvalid(DockyardError):
    message = "blob upload invalid"


class RangeInvalid(DockyardError):
    """A read range outside the blob."""

    message = "requested range not satisfiable"


class ChunkOutOfOrder(BlobUploadInvalid):
    """A chunk that does not start where the upload ends."""

    message = "chunk does not start where the upload ends"


class UploadTooLarge(BlobUploadInvalid):
    """An upload would hold more than one upload may (storage.uploads.max_size)."""

    message = "the upload is larger than this registry accepts"


class UploadBusy(ChunkOutOfOrder):
    """Another request is writing to (or committing) the same upload right now."""

    message = "another request is writing to this upload; send the chunk again once it is done"


class SizeInvalid(DockyardError):
    message = "provided length did not match content length"


# --- manifests ------------------------------------------------------------------------------
class ManifestInvalid(DockyardError):
    message = "manifest invalid"


class ManifestUnknown(DockyardError):
    message = "manifest unknown"


class ManifestBlobUnknown(DockyardError):
    message = "manifest references a manifest or blob unknown to registry"


class ManifestTooLarge(DockyardError):
    message = "manifest exceeds the size limit"


class Unsupported(DockyardError):
    message = "the operation is unsupported"


class DeleteDisabled(Unsupported):
    message = "deletes are disabled on this registry (storage.delete.enabled is false)"


class ReadOnly(Unsupported):
    message = "the registry is in read-only maintenance mode"


class PaginationInvalid(DockyardError):
    message = "invalid number of results requested"


# --- storage --------------------------------------------------------------------------------
class StorageError(DockyardError):
    message = "storage backend error"


class PathNotFound(StorageError):
    message = "path not found"


class InvalidPath(StorageError):
    message = "invalid storage path"


class StorageFull(StorageError):
    """No room for a write: the disk or object store holding blobs, or the metadata database, is full
    (or over a quota of its own). Reads still work; writes work again once space is freed."""

    message = "storage is full: the registry cannot store more data until space is freed"


# --- configuration --------------------------------------------------------------------------
class ConfigError(DockyardError):
    message = "invalid configuration"
