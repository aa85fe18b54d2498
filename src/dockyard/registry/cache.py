"""Moved to `dockyard.coordination` (interfaces, feeds, caches). These names stay importable from
here only until the upload-path refactor (registry/blob_uploads.py) and `serve` import them from
there; new code imports `dockyard.coordination`."""

from dockyard.coordination.caches import ENTRY_OVERHEAD, MIB, GenerationCache
from dockyard.coordination.feeds import InProcessChangeFeed, LocalChangeFeed
from dockyard.coordination.interfaces import ChangeFeed, Topic

__all__ = [
    "ENTRY_OVERHEAD",
    "MIB",
    "ChangeFeed",
    "GenerationCache",
    "InProcessChangeFeed",
    "LocalChangeFeed",
    "Topic",
]
