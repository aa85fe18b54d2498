"""The layer browser's cache: a layer's entries, kept in the metadata DB after one complete listing, so
that navigating its directories, the merged tree and diffs do not read the whole blob again.

One row per layer blob (`layer_file_indexes`), its entries gzip-compressed (a 6,000-entry layer takes
about 100 KiB). Only a listing that read the layer to its end is kept, and only up to `MAX_ENTRIES`
entries and `MAX_BYTES` compressed: a larger layer is read again each time. A write that fails (a
read-only database, maintenance mode) is logged and the answer goes on without the cache.
"""

from __future__ import annotations

import gzip
import json
import logging

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from dockyard.db.dialect import upsert
from dockyard.db.session import Database
from dockyard.errors import DockyardError
from dockyard.scanning.layerfiles import FileEntry
from dockyard.scans.models import LayerFileIndex

log = logging.getLogger("dockyard.scans")
MAX_ENTRIES = 200_000
MAX_BYTES = 16 * 1024 * 1024
_FIELDS = ("path", "type", "size", "mode", "uid", "gid", "mtime", "link", "whiteout", "opaque", "digest")


class LayerIndexes:
    max_entries = MAX_ENTRIES

    def __init__(self, db: Database) -> None:
        self.db = db

    def get(self, digest: str, with_digests: bool = False) -> list[FileEntry] | None:
        """The layer's entries in archive order, or None (never listed whole, or kept without the
        files' digests when they are asked for)."""
        with self.db.read() as conn:
            row = conn.execute(
                select(LayerFileIndex.content, LayerFileIndex.with_digests).where(
                    LayerFileIndex.digest == digest
                )
            ).first()
        if row is None or (with_digests and not row.with_digests):
            return None
        try:
            lines = gzip.decompress(row.content).splitlines()
            return [FileEntry(*json.loads(line)) for line in lines]
        except (OSError, ValueError, TypeError) as exc:
            log.warning("layer index of %s unreadable, read the layer again: %s", digest, exc)
            return None

    def put(self, digest: str, entries: list[FileEntry], with_digests: bool) -> None:
        if len(entries) > self.max_entries:
            return
        lines = b"\n".join(
            json.dumps([getattr(e, f) for f in _FIELDS], separators=(",", ":")).encode() for e in entries
        )
        content = gzip.compress(lines, compresslevel=6)
        if len(content) > MAX_BYTES:
            return
        values = {"digest": digest, "entries": len(entries), "with_digests": with_digests, "content": content}
        try:
            with self.db.write() as conn:
                upsert(
                    conn,
                    LayerFileIndex,
                    values,
                    key=["digest"],
                    update=["entries", "with_digests", "content"],
                )
        except (SQLAlchemyError, DockyardError) as exc:  # a blob deleted meanwhile, a read-only database
            log.warning("layer index of %s not kept: %s", digest, type(exc).__name__)
