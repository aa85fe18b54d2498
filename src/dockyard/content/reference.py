"""Repository names, tags and references, with the OCI distribution spec's grammar."""

from __future__ import annotations

import re

from dockyard.content.digest import Digest, looks_like_digest, parse_digest
from dockyard.errors import NameInvalid, TagInvalid

# distribution-spec: <name> = [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*
_NAME_RE = re.compile(r"^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$")
_TAG_RE = re.compile(r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$")
MAX_NAME_LENGTH = 255


def validate_name(name: str) -> str:
    """Return name if it is a valid repository name, else raise NameInvalid."""
    if not name or len(name) > MAX_NAME_LENGTH or not _NAME_RE.fullmatch(name):
        raise NameInvalid(f"invalid repository name {name!r}")
    return name


def is_valid_tag(tag: str) -> bool:
    return _TAG_RE.fullmatch(tag) is not None


def validate_tag(tag: str) -> str:
    if not is_valid_tag(tag):
        raise TagInvalid(f"invalid tag {tag!r}")
    return tag


def parse_reference(reference: str) -> str | Digest:
    """A manifest reference is a tag or a digest; return the tag string or the parsed Digest."""
    if looks_like_digest(reference):
        return parse_digest(reference)
    if ":" in reference:
        # Digest-shaped but not well formed, e.g. "sha256:XYZ".
        return parse_digest(reference)
    return validate_tag(reference)
