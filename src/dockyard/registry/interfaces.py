"""Values the registry service hands to the edge."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class ManifestRecord:
    digest: str
    media_type: str
    content: bytes

    @property
    def size(self) -> int:
        return len(self.content)


@dataclass(frozen=True, slots=True)
class PutManifestResult:
    digest: str
    subject: str | None
    media_type: str = ""  # the manifest's, as parsed


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a lexically ordered listing; `more` says whether a next page exists."""

    items: tuple[str, ...]
    more: bool


@dataclass(frozen=True, slots=True)
class ReferrerList:
    descriptors: tuple[dict[str, Any], ...]
    filtered_by_artifact_type: bool
