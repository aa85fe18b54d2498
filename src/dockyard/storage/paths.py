"""Where content lives inside a storage driver.

Every storage path the registry uses is built here, from validated values only, so nothing a
client sends can name a path outside `blobs/` and `uploads/`.
"""

from __future__ import annotations

import re
import uuid

from dockyard.content.digest import parse_digest
from dockyard.errors import BlobUploadUnknown, DigestInvalid, InvalidPath
from dockyard.storage.driver.base import check_path

BLOBS_ROOT = "blobs"
UPLOADS_ROOT = "uploads"

# uuid.uuid4().hex: 32 lowercase hex digits with the version (4) and variant (8-b) nibbles.
_UPLOAD_ID = re.compile(r"[0-9a-f]{12}4[0-9a-f]{3}[89ab][0-9a-f]{15}")


def blob_data_path(digest: str) -> str:
    """`blobs/<alg>/<first two hex>/<hex>/data`; raises DigestInvalid/UnsupportedDigest for a bad digest."""
    parsed = parse_digest(digest)
    path = f"{BLOBS_ROOT}/{parsed.algorithm}/{parsed.encoded[:2]}/{parsed.encoded}/data"
    try:  # defence in depth: a digest the parser let through must still make a plain path
        return check_path(path)
    except InvalidPath as exc:
        raise DigestInvalid(f"invalid digest {digest!r}") from exc


def new_upload_id() -> str:
    """A fresh upload id, in the one shape `check_upload_id` accepts."""
    return uuid.uuid4().hex


def check_upload_id(upload_id: str) -> str:
    """Return upload_id if it is a valid id; raise BlobUploadUnknown (no such upload) if not."""
    if not isinstance(upload_id, str) or not _UPLOAD_ID.fullmatch(upload_id):
        raise BlobUploadUnknown(f"malformed upload id {upload_id!r}")
    return upload_id


def upload_path(upload_id: str) -> str:
    """The directory holding everything of one upload (delete it to drop the upload)."""
    return f"{UPLOADS_ROOT}/{check_upload_id(upload_id)}"


def upload_data_path(upload_id: str) -> str:
    """`uploads/<id>/data`: the bytes received so far."""
    return f"{upload_path(upload_id)}/data"


def uploads_root() -> str:
    return UPLOADS_ROOT
