"""Domain errors, each described once: what kind of failure it is (`Category`) and, where the OCI
distribution spec has a code for it, which (`OCICode`), as distribution's error descriptors do.

They carry no HTTP status: each API maps categories to statuses in one place (`dockyard.api.oci.errors`
renders the OCI `{"errors": [...]}` body, `dockyard.api.management.errors` the management API's).
"""

from __future__ import annotations

import math
from enum import Enum, StrEnum
from typing import Any, ClassVar


class Category(Enum):
    """What kind of failure an error is; each API answers a category with one status."""

    INVALID = "invalid"  # the request is malformed, or asks for something impossible
    NOT_FOUND = "not found"  # what it names does not exist (or is hidden from the caller)
    CONFLICT = "conflict"  # it exists already, or its state does not allow the change
    UNAUTHENTICATED = "unauthenticated"  # no credentials, or wrong or expired ones
    DENIED = "denied"  # the caller may not do this: a permission, a policy such as a full quota
    PROTECTED = "protected"  # a rule keeps the object as it is (an immutable tag)
    NOT_ALLOWED = "not allowed"  # the registry does not do this here or now (deletes off, read-only)
    OUT_OF_RANGE = "out of range"  # a byte range or offset outside the object
    TOO_LARGE = "too large"  # over a size limit
    UNAVAILABLE = "unavailable"  # a dependency is down or busy: the same request may work shortly
    STORAGE_FULL = "storage full"  # no room to write; reads go on
    RATE_LIMITED = "rate limited"  # over a request or upload limit: the same request works after a wait
    INTERNAL = "internal"  # the server failed (a storage backend's error), not the client


class OCICode(StrEnum):
    """The error codes of the OCI distribution spec, and the three distribution adds."""

    BLOB_UNKNOWN = "BLOB_UNKNOWN"
    BLOB_UPLOAD_INVALID = "BLOB_UPLOAD_INVALID"
    BLOB_UPLOAD_UNKNOWN = "BLOB_UPLOAD_UNKNOWN"
    DIGEST_INVALID = "DIGEST_INVALID"
    MANIFEST_BLOB_UNKNOWN = "MANIFEST_BLOB_UNKNOWN"
    MANIFEST_INVALID = "MANIFEST_INVALID"
    MANIFEST_UNKNOWN = "MANIFEST_UNKNOWN"
    NAME_INVALID = "NAME_INVALID"
    NAME_UNKNOWN = "NAME_UNKNOWN"
    SIZE_INVALID = "SIZE_INVALID"
    UNAUTHORIZED = "UNAUTHORIZED"
    DENIED = "DENIED"
    UNSUPPORTED = "UNSUPPORTED"
    TOOMANYREQUESTS = "TOOMANYREQUESTS"
    # distribution's
    UNKNOWN = "UNKNOWN"
    UNAVAILABLE = "UNAVAILABLE"
    RANGE_INVALID = "RANGE_INVALID"


class DockyardError(Exception):
    """Base of every error the domain raises on purpose.

    A subclass names its `category` (or inherits one from a parent other than this base: the base's
    INTERNAL is for failures of the server, and tests/unit/api/test_error_mapping.py checks every class
    names one), and its `oci_code` where /v2 should answer with a more specific code than its category's.
    """

    message = "error"
    category: ClassVar[Category] = Category.INTERNAL
    oci_code: ClassVar[OCICode | None] = None  # None: the code /v2 gives the category
    # Shown to clients instead of the instance's message and detail, where those name storage paths,
    # hosts or backend errors (they go to the log).
    public_message: ClassVar[str | None] = None

    def __init__(self, message: str | None = None, detail: Any = None) -> None:
        super().__init__(message or self.message)
        self.message = message or self.message
        self.detail = detail


# --- names, references, digests -------------------------------------------------------------
class NameInvalid(DockyardError):
    category = Category.INVALID
    oci_code = OCICode.NAME_INVALID
    message = "invalid repository name"


class NameUnknown(DockyardError):
    category = Category.NOT_FOUND
    oci_code = OCICode.NAME_UNKNOWN
    message = "repository name not known to registry"


class TagInvalid(DockyardError):
    category = Category.INVALID
    oci_code = OCICode.MANIFEST_INVALID
    message = "manifest tag did not match URI"


class DigestInvalid(DockyardError):
    category = Category.INVALID
    oci_code = OCICode.DIGEST_INVALID
    message = "provided digest did not match uploaded content"


class UnsupportedDigest(DigestInvalid):
    message = "unsupported digest algorithm"


# --- blobs and uploads ----------------------------------------------------------------------
class BlobUnknown(DockyardError):
    category = Category.NOT_FOUND
    oci_code = OCICode.BLOB_UNKNOWN
    message = "blob unknown to registry"


class BlobBeingDeleted(DockyardError):
    """Garbage collection is deleting the blob an upload commits: the client may retry shortly."""

    category = Category.UNAVAILABLE
    message = "the blob is being garbage-collected; try again shortly"


class BlobReferenced(DockyardError):
    """A blob DELETE of a blob that a manifest of the repository still uses: unlinking it would break
    that image (its pulls would fail on the missing blob)."""

    # 405 on /v2: one of the answers the spec allows a blob DELETE (end-10) and the one the conformance
    # suite accepts when it deletes blobs before their manifests; DENIED as zot answers it.
    category = Category.NOT_ALLOWED
    oci_code = OCICode.DENIED
    message = "the blob is used by a manifest in this repository; delete the manifest first"


class BlobUploadUnknown(DockyardError):
    category = Category.NOT_FOUND
    oci_code = OCICode.BLOB_UPLOAD_UNKNOWN
    message = "blob upload unknown to registry"


class BlobUploadInvalid(DockyardError):
    category = Category.INVALID
    oci_code = OCICode.BLOB_UPLOAD_INVALID
    message = "blob upload invalid"


class RangeInvalid(DockyardError):
    """A read range outside the blob."""

    category = Category.OUT_OF_RANGE
    oci_code = OCICode.RANGE_INVALID
    message = "requested range not satisfiable"


class ChunkOutOfOrder(BlobUploadInvalid):
    """A chunk that does not start where the upload ends."""

    category = Category.OUT_OF_RANGE
    message = "chunk does not start where the upload ends"


class UploadTooLarge(BlobUploadInvalid):
    """An upload would hold more than one upload may (storage.uploads.max_size)."""

    category = Category.TOO_LARGE
    message = "the upload is larger than this registry accepts"


class UploadBusy(ChunkOutOfOrder):
    """Another request is writing to (or committing) the same upload right now."""

    message = "another request is writing to this upload; send the chunk again once it is done"


class SizeInvalid(DockyardError):
    category = Category.INVALID
    oci_code = OCICode.SIZE_INVALID
    message = "provided length did not match content length"


# --- manifests ------------------------------------------------------------------------------
class ManifestInvalid(DockyardError):
    category = Category.INVALID
    oci_code = OCICode.MANIFEST_INVALID
    message = "manifest invalid"


class ManifestUnknown(DockyardError):
    category = Category.NOT_FOUND
    oci_code = OCICode.MANIFEST_UNKNOWN
    message = "manifest unknown"


class ManifestBlobUnknown(DockyardError):
    category = Category.INVALID
    oci_code = OCICode.MANIFEST_BLOB_UNKNOWN
    message = "manifest references a manifest or blob unknown to registry"


class ManifestTooLarge(DockyardError):
    category = Category.TOO_LARGE
    oci_code = OCICode.MANIFEST_INVALID
    message = "manifest exceeds the size limit"


class Unsupported(DockyardError):
    category = Category.NOT_ALLOWED
    oci_code = OCICode.UNSUPPORTED
    message = "the operation is unsupported"


class DeleteDisabled(Unsupported):
    message = "deletes are disabled on this registry (storage.delete.enabled is false)"


class ReadOnly(Unsupported):
    message = "the registry is in read-only maintenance mode"


class TooManyRequests(DockyardError):
    """Over a request-rate or concurrent-upload limit (`limits:`): the client may try again after
    `retry_after` seconds (whole seconds, at least 1: what `Retry-After` carries)."""

    category = Category.RATE_LIMITED
    oci_code = OCICode.TOOMANYREQUESTS
    message = "too many requests; try again later"

    def __init__(self, message: str | None = None, detail: Any = None, *, retry_after: float = 1.0) -> None:
        super().__init__(message, detail)
        self.retry_after = max(1, math.ceil(retry_after))


class PaginationInvalid(DockyardError):
    # The spec's UNSUPPORTED covers "an invalid set of parameters".
    category = Category.INVALID
    oci_code = OCICode.UNSUPPORTED
    message = "invalid number of results requested"


# --- storage --------------------------------------------------------------------------------
# Their messages name storage paths and backend details (`path not found: uploads/<id>/data`): they go to
# the log, and clients see the class's public message.
class StorageError(DockyardError):
    category = Category.INTERNAL
    message = "storage backend error"
    public_message: ClassVar[str | None] = message


class PathNotFound(StorageError):
    category = Category.NOT_FOUND
    oci_code = OCICode.BLOB_UNKNOWN
    message = "path not found"
    public_message = BlobUnknown.message


class InvalidPath(StorageError):
    category = Category.INVALID
    oci_code = OCICode.NAME_INVALID
    message = "invalid storage path"
    public_message = NameInvalid.message


class StorageFull(StorageError):
    """No room for a write: the disk or object store holding blobs, or the metadata database, is full
    (or over a quota of its own). Reads still work; writes work again once space is freed."""

    category = Category.STORAGE_FULL
    oci_code = OCICode.DENIED  # the write is refused, as for a full quota
    message = "storage is full: the registry cannot store more data until space is freed"
    public_message = None  # its messages say why and name no path


# --- configuration --------------------------------------------------------------------------
class ConfigError(DockyardError):
    category = Category.INVALID
    message = "invalid configuration"
