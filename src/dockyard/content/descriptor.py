"""Content descriptors and platforms, checked against the OCI image spec (descriptor.md, image-index.md,
annotations.md and the JSON schemas beside them).

Every check raises ManifestInvalid naming where in the manifest the bad value is (`layers[2].size`), so a
user can find it in a large document. Go clients decode JSON object keys case-insensitively, so a key
spelled like a field in another case (`Digest`, `OS`) would be that field to them and an unknown key to
us: it is refused where the spec's fields are (`check_field_names`).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from dockyard.content.digest import compute_digest, parse_digest
from dockyard.errors import DigestInvalid, ManifestInvalid

MAX_DESCRIPTOR_SIZE = 2**63 - 1  # sizes are int64 in the spec's Go types and in the DB
# RFC 6838 section 4.2 type/subtype names, as the image spec's schema (defs-descriptor.json) writes them.
_MEDIA_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}")
# RFC 3986: an absolute URI (a scheme, then only the characters a URI may hold; % only as an escape).
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:(?:[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=]|%[0-9A-Fa-f]{2})*")

DESCRIPTOR_FIELDS = frozenset(
    {"mediaType", "digest", "size", "urls", "annotations", "data", "platform", "artifactType"}
)
PLATFORM_FIELDS = frozenset({"architecture", "os", "os.version", "os.features", "variant", "features"})


@dataclass(frozen=True, slots=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    artifact_type: str | None = None
    annotations: dict[str, str] | None = None
    platform: dict[str, Any] | None = None
    urls: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        if self.annotations:
            out["annotations"] = self.annotations
        if self.platform:
            out["platform"] = self.platform
        return out


def parse_descriptor(value: Any, where: str) -> Descriptor:
    if not isinstance(value, dict):
        raise ManifestInvalid(f"{where} must be a descriptor object")
    check_field_names(value, DESCRIPTOR_FIELDS, where)
    media_type = value.get("mediaType")
    if not isinstance(media_type, str) or not media_type:
        raise ManifestInvalid(f"{where}.mediaType is required")
    check_media_type(media_type, f"{where}.mediaType")
    digest = value.get("digest")
    if not isinstance(digest, str):
        raise ManifestInvalid(f"{where}.digest is required")
    try:
        parsed_digest = parse_digest(digest)
    except DigestInvalid as exc:
        raise ManifestInvalid(f"{where}.digest: {exc.message}") from None
    size = value.get("size")
    if type(size) is not int or not 0 <= size <= MAX_DESCRIPTOR_SIZE:
        raise ManifestInvalid(f"{where}.size must be a non-negative 64-bit integer")
    urls = _urls(value.get("urls"), f"{where}.urls")
    if "data" in value:
        data = _base64(value["data"], f"{where}.data")
        if len(data) != size or str(compute_digest(data, parsed_digest.algorithm)) != digest:
            raise ManifestInvalid(f"{where}.data is not the content its digest and size describe")
    platform = value.get("platform")
    if platform is not None:
        check_platform(platform, f"{where}.platform")
    artifact_type = value.get("artifactType")
    if artifact_type is not None:
        if not isinstance(artifact_type, str):
            raise ManifestInvalid(f"{where}.artifactType must be a string")
        if artifact_type:
            check_media_type(artifact_type, f"{where}.artifactType")
    return Descriptor(
        media_type,
        digest,
        size,
        artifact_type or None,
        string_map(value.get("annotations"), f"{where}.annotations"),
        platform,
        tuple(urls),
    )


def check_platform(platform: Any, where: str) -> None:
    """image-index.md: architecture and os (required), os.version and variant are strings; os.features
    (and the reserved features) lists of strings."""
    if not isinstance(platform, dict):
        raise ManifestInvalid(f"{where} must be an object")
    check_field_names(platform, PLATFORM_FIELDS, where)
    for key in ("architecture", "os"):
        if not isinstance(platform.get(key), str):
            raise ManifestInvalid(f"{where}.{key} is required and must be a string")
    for key in ("os.version", "variant"):
        if key in platform and not isinstance(platform[key], str):
            raise ManifestInvalid(f"{where}.{key} must be a string")
    for key in ("os.features", "features"):
        if key in platform and not _strings(platform[key]):
            raise ManifestInvalid(f"{where}.{key} must be a list of strings")


def check_media_type(value: str, where: str) -> None:
    if not _MEDIA_TYPE.fullmatch(value):
        raise ManifestInvalid(f"{where} {value!r} is not a media type (type/subtype, RFC 6838)")


def check_field_names(value: dict[str, Any], fields: Collection[str], where: str) -> None:
    """Refuse a key that is one of `fields` in another case: Go's JSON decoder would read it as that
    field (its match ignores case), while we would ignore it."""
    folded = {name.casefold(): name for name in fields}
    for key in value:
        if key not in fields and (meant := folded.get(key.casefold())) is not None:
            where_key = f"{where}.{key}" if where else key
            raise ManifestInvalid(
                f"{where_key}: field names are case-sensitive; did you mean {meant!r}?",
                detail={"key": key, "field": meant},
            )


def string_map(value: Any, where: str) -> dict[str, str] | None:
    """annotations.md: a map of strings to strings (absent or empty when there are none)."""
    if value is None:
        return None
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ManifestInvalid(f"{where} must map strings to strings")
    return value


def _urls(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    if not _strings(value):
        raise ManifestInvalid(f"{where} must be a list of strings")
    for index, url in enumerate(value):
        if not _URI.fullmatch(url):
            raise ManifestInvalid(f"{where}[{index}] is not an absolute URI (RFC 3986)")
    return list(value)


def _base64(value: Any, where: str) -> bytes:
    """descriptor.md: `data` is base64 (RFC 4648, the standard alphabet with padding)."""
    if not isinstance(value, str):
        raise ManifestInvalid(f"{where} must be a base64 string")
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        raise ManifestInvalid(f"{where} is not valid base64") from None


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)
