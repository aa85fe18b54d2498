"""Manifest parsing and validation: OCI image manifest and index, Docker schema 2 and manifest list.

Returns what the registry must index (referenced blobs, child manifests, subject,
artifact type); raises ManifestInvalid with a reason a user can act on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from dockyard.content import mediatypes as mt
from dockyard.content.descriptor import (
    MAX_DESCRIPTOR_SIZE,
    Descriptor,
    check_field_names,
    check_media_type,
    parse_descriptor,
    string_map,
)
from dockyard.errors import ManifestInvalid, ManifestTooLarge

__all__ = ["MAX_DESCRIPTOR_SIZE", "MAX_MANIFEST_SIZE", "Descriptor", "ParsedManifest", "parse_manifest"]

MAX_MANIFEST_SIZE = 4 * 1024 * 1024
# The fields of an image manifest and an index (and Docker's), whose spelling check_field_names enforces.
MANIFEST_FIELDS = frozenset(
    {"schemaVersion", "mediaType", "artifactType", "config", "layers", "manifests", "subject", "annotations"}
)


@dataclass(frozen=True, slots=True)
class ParsedManifest:
    media_type: str
    artifact_type: str | None
    config: Descriptor | None
    blobs: tuple[Descriptor, ...]
    """Blobs that must exist in the repository: the config and the distributable layers."""
    manifests: tuple[Descriptor, ...]
    """Child manifests of an index, which must exist in the repository."""
    subject: Descriptor | None
    annotations: dict[str, str] = field(default_factory=dict)

    @property
    def is_index(self) -> bool:
        return self.media_type in mt.INDEXES


def parse_manifest(body: bytes, content_type: str | None = None) -> ParsedManifest:
    if len(body) > MAX_MANIFEST_SIZE:
        raise ManifestTooLarge(f"manifest is {len(body)} bytes; the limit is {MAX_MANIFEST_SIZE}")
    document = _load_json(body)
    check_field_names(document, MANIFEST_FIELDS, "")
    media_type = _media_type(document, _clean_content_type(content_type))
    # type() rather than ==: JSON true and 2.0 compare equal to 1 and 2 in Python.
    schema_version = document.get("schemaVersion")
    if media_type in mt.SCHEMA1_TYPES or (type(schema_version) is int and schema_version == 1):
        raise ManifestInvalid(
            "Docker schema 1 manifests are not supported; push as Docker schema 2 or OCI "
            "(for example: skopeo copy --format v2s2)"
        )
    if type(schema_version) is not int or schema_version != 2:
        raise ManifestInvalid("schemaVersion must be 2")
    subject = parse_descriptor(document["subject"], "subject") if "subject" in document else None
    annotations = string_map(document.get("annotations"), "annotations") or {}
    artifact_type = _optional_str(document, "artifactType")
    if artifact_type:
        check_media_type(artifact_type, "artifactType")
    if media_type in mt.INDEXES:
        children = tuple(
            parse_descriptor(d, f"manifests[{i}]") for i, d in enumerate(_list(document, "manifests"))
        )
        return ParsedManifest(media_type, artifact_type, None, (), children, subject, annotations)
    if "config" not in document:
        raise ManifestInvalid("an image manifest needs a config descriptor")
    config = parse_descriptor(document["config"], "config")
    layers = tuple(parse_descriptor(d, f"layers[{i}]") for i, d in enumerate(_list(document, "layers", True)))
    # Foreign (non-distributable) layers live at their URLs, not in the registry.
    stored_layers = tuple(layer for layer in layers if not layer.urls)
    return ParsedManifest(
        media_type,
        artifact_type or (config.media_type if media_type == mt.OCI_MANIFEST else None),
        config,
        (config, *stored_layers),
        (),
        subject,
        annotations,
    )


def _load_json(body: bytes) -> dict[str, Any]:
    """The manifest as Go clients read it, or ManifestInvalid: a document two parsers could read
    differently is refused: a duplicate key (Go's decoder takes the last, others the first), a
    byte-order mark or UTF-16 (Python's json reads them, Go's does not), NaN and Infinity."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ManifestInvalid(f"manifest is not valid JSON: it is not UTF-8 ({exc.reason})") from None
    if text.startswith("\ufeff"):
        raise ManifestInvalid("manifest is not valid JSON: it starts with a byte-order mark")
    try:
        document = json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_no_constant)
    except ValueError as exc:
        raise ManifestInvalid(f"manifest is not valid JSON: {exc}") from None
    except RecursionError:
        raise ManifestInvalid("manifest JSON is nested too deeply") from None
    if not isinstance(document, dict):
        raise ManifestInvalid("manifest must be a JSON object")
    # JSON may escape an unpaired UTF-16 surrogate ("\ud800"); Python keeps it, but it is not
    # Unicode, and storing it (annotations, artifactType) would fail later. Only \u escapes make one.
    if "\\u" in text and not _is_unicode(document):
        raise ManifestInvalid("manifest JSON has an unpaired UTF-16 surrogate escape")
    return document


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ManifestInvalid(
                    f"manifest JSON has the key {key!r} twice in one object; parsers disagree on which "
                    "one counts",
                    detail={"key": key},
                )
            seen.add(key)
    return document


def _no_constant(name: str) -> Any:
    raise ManifestInvalid(f"manifest is not valid JSON: {name} is not a JSON number")


def _is_unicode(document: dict[str, Any]) -> bool:
    try:
        json.dumps(document, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    except RecursionError:  # loads went just deep enough; dumps runs one frame deeper
        raise ManifestInvalid("manifest JSON is nested too deeply") from None
    return True


def _clean_content_type(content_type: str | None) -> str | None:
    if not content_type:
        return None
    return content_type.split(";", 1)[0].strip().lower() or None


def _media_type(document: dict[str, Any], content_type: str | None) -> str:
    declared = document.get("mediaType")
    if declared is not None and not isinstance(declared, str):
        raise ManifestInvalid("mediaType must be a string")
    if declared in mt.SCHEMA1_TYPES or content_type in mt.SCHEMA1_TYPES:
        return mt.DOCKER_SCHEMA1
    if declared and content_type in mt.MANIFEST_TYPES and declared != content_type:
        raise ManifestInvalid(f"mediaType {declared!r} does not match Content-Type {content_type!r}")
    media_type = declared or (content_type if content_type in mt.MANIFEST_TYPES else None)
    if media_type is None:
        # Neither says: infer from the shape, as OCI allows an absent mediaType.
        media_type = mt.OCI_INDEX if "manifests" in document else mt.OCI_MANIFEST
    if media_type not in mt.MANIFEST_TYPES:
        raise ManifestInvalid(f"unsupported manifest media type {media_type!r}")
    return media_type


def _list(document: dict[str, Any], key: str, optional: bool = False) -> list[Any]:
    value = document.get(key)
    if value is None:
        if optional:
            return []
        raise ManifestInvalid(f"{key} is required")
    if not isinstance(value, list):
        raise ManifestInvalid(f"{key} must be a list")
    return value


def _optional_str(document: dict[str, Any], key: str) -> str | None:
    value = document.get(key)
    if value is not None and not isinstance(value, str):
        raise ManifestInvalid(f"{key} must be a string")
    return value or None
