"""A policy's artifact filters beyond repository and tag globs, as Harbor's replication has them: by
artifact type and by label. Pure rules (the engine reads the manifest and the config they look at).

- **Artifact type.** An artifact's type is its manifest's `artifactType`, else its config's
  `mediaType` (an index: its `artifactType`, else its own media type). A filter is a list of names or
  globs; the artifact is selected when one of them matches. Names: `image` (a container image or an
  index of them), `signature` (cosign, Notation), `sbom` (SPDX, CycloneDX, Syft), `attestation`
  (in-toto, cosign attestations), `chart` (Helm); anything with a `/` is a glob on the type itself
  (`application/vnd.cncf.helm.*`; `*` matches any characters, `/` included).
- **Labels.** The image config's labels (`config.Labels`: Dockerfile `LABEL`, `org.opencontainers...`
  annotations are not labels). A filter is a list of `key=value` globs, all of which must hold; `key`
  alone asks only that the label is there. An index is judged by its first image's labels; an artifact
  with no image config (a signature, an SBOM) has no labels.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from fnmatch import fnmatchcase

from dockyard.content import mediatypes as mt

MAX_FILTERS = 16  # patterns a filter holds
MAX_PATTERN = 255

# The names a type filter may use, each the types (globs) it stands for.
ARTIFACT_KINDS: Mapping[str, tuple[str, ...]] = {
    "image": (mt.OCI_CONFIG, mt.DOCKER_CONFIG, mt.OCI_INDEX, mt.DOCKER_MANIFEST_LIST),
    "signature": (
        "application/vnd.dev.cosign.artifact.sig.v1+json",
        "application/vnd.dev.cosign.simplesigning.v1+json",
        "application/vnd.cncf.notary.signature",
    ),
    "sbom": (
        "application/spdx+json",
        "text/spdx*",
        "application/vnd.cyclonedx*",
        "application/vnd.syft+json",
    ),
    "attestation": ("application/vnd.in-toto*", "application/vnd.dev.cosign.attestation.v1+json"),
    "chart": ("application/vnd.cncf.helm.config.v1+json",),
}


class FilterInvalid(ValueError):
    pass


def check_artifact_types(patterns: Sequence[str]) -> None:
    _check_list(patterns, "artifact_types")
    for pattern in patterns:
        if pattern not in ARTIFACT_KINDS and "/" not in pattern:
            names = ", ".join(ARTIFACT_KINDS)
            raise FilterInvalid(f"artifact type {pattern!r}: one of {names}, or a media type glob (with a /)")


def check_labels(patterns: Sequence[str]) -> None:
    _check_list(patterns, "labels")
    for pattern in patterns:
        if not pattern.partition("=")[0].strip():
            raise FilterInvalid(f"label filter {pattern!r}: key=value (a glob), or key")


def _check_list(patterns: Sequence[str], what: str) -> None:
    if len(patterns) > MAX_FILTERS:
        raise FilterInvalid(f"{what}: at most {MAX_FILTERS} patterns")
    for pattern in patterns:
        if not pattern or len(pattern) > MAX_PATTERN or any(ord(c) < 32 for c in pattern):
            raise FilterInvalid(f"{what}: {pattern!r} is empty, too long or holds control characters")


def artifact_type(media_type: str, artifact_type_field: str | None, config_media_type: str | None) -> str:
    """The type a filter looks at: `artifactType`, else the config's media type, else (an index) the
    manifest's own media type."""
    return artifact_type_field or config_media_type or media_type


def type_selected(patterns: Sequence[str], kind: str) -> bool:
    """Whether an artifact of type `kind` passes the filter (an empty one passes everything)."""
    if not patterns:
        return True
    for pattern in patterns:
        globs = ARTIFACT_KINDS.get(pattern, (pattern,))
        if any(fnmatchcase(kind, glob) for glob in globs):
            return True
    return False


def labels_selected(patterns: Sequence[str], labels: Mapping[str, str]) -> bool:
    """Whether the labels hold every `key=value` glob (`key`: there at all)."""
    for pattern in patterns:
        key, has_value, value = pattern.partition("=")
        key = key.strip()
        if key not in labels:
            return False
        if has_value and not fnmatchcase(labels[key], value):
            return False
    return True


def config_labels(config: bytes) -> dict[str, str]:
    """An image config's labels (`config.Labels`); none when it is not an image config."""
    try:
        document = json.loads(config)
    except ValueError:
        return {}
    inner = document.get("config") if isinstance(document, dict) else None
    labels = inner.get("Labels") if isinstance(inner, dict) else None
    if not isinstance(labels, dict):
        return {}
    return {str(k): str(v) for k, v in labels.items() if isinstance(v, str)}
