"""A streaming tar reader for image layers: one pass, nothing unpacked, every size bounded.

`tarfile` reads a pax header of any size into memory and follows GNU sparse maps; here headers are
capped (`Limits.max_header_bytes`), the decompressed stream is counted against the layer's and the
image's budgets and the deadline, and an entry's bytes are read only when the caller asks, up to a cap.
"""

from __future__ import annotations

import gzip
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from dockyard.scanning.interfaces import Limits, TarInvalid, WalkAborted

BLOCK = 512
CHUNK = 1024 * 1024
GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"

FILE, DIR, SYMLINK, HARDLINK, OTHER = "file", "dir", "symlink", "hardlink", "other"
_TYPES = {b"0": FILE, b"\0": FILE, b"7": FILE, b"1": HARDLINK, b"2": SYMLINK, b"5": DIR}


class Budget:
    """Uncompressed bytes and wall-clock time left for one image's walk."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.deadline = time.monotonic() + limits.max_seconds
        self.image_bytes = 0
        self.layer_bytes = 0

    def start_layer(self) -> None:
        self.layer_bytes = 0

    def spend(self, count: int) -> None:
        self.layer_bytes += count
        self.image_bytes += count
        if self.layer_bytes > self.limits.max_layer_bytes:
            raise WalkAborted(f"layer larger than {self.limits.max_layer_bytes} bytes uncompressed")
        if self.image_bytes > self.limits.max_image_bytes:
            raise WalkAborted(f"image larger than {self.limits.max_image_bytes} bytes uncompressed")
        if time.monotonic() > self.deadline:
            raise WalkAborted(f"time limit of {self.limits.max_seconds:g} s reached")


class Counted:
    """A read-only stream that charges what it returns to a Budget."""

    def __init__(self, raw: BinaryIO, budget: Budget) -> None:
        self._raw = raw
        self._budget = budget

    def read(self, size: int) -> bytes:
        data = self._raw.read(size)
        self._budget.spend(len(data))
        return data


def decompressed(raw: BinaryIO) -> tuple[BinaryIO, str]:
    """The tar stream inside a layer blob, told by its first bytes (media types lie: gzip is pushed as
    plain tar and the other way round), and its compression's name. zstd raises TarInvalid."""
    head = _Peek(raw)
    magic = head.peek(4)
    if magic.startswith(GZIP_MAGIC):
        return gzip.GzipFile(fileobj=head, mode="rb"), "gzip"  # type: ignore[call-overload]
    if magic == ZSTD_MAGIC:
        raise TarInvalid("zstd-compressed layer: this scanner reads gzip and uncompressed layers only")
    return head, "none"  # type: ignore[return-value]


class _Peek:
    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self._head = b""

    def peek(self, size: int) -> bytes:
        while len(self._head) < size:
            more = self._raw.read(size - len(self._head))
            if not more:
                break
            self._head += more
        return self._head[:size]

    def read(self, size: int = -1) -> bytes:
        if not self._head:
            return self._raw.read(size)
        if size < 0:
            data, self._head = self._head + self._raw.read(), b""
            return data
        data, self._head = self._head[:size], self._head[size:]
        return data  # a short read: callers of a stream read again


@dataclass(slots=True)
class Entry:
    name: str  # as in the archive (not normalised)
    kind: str  # FILE, DIR, SYMLINK, HARDLINK, OTHER
    size: int  # bytes of content that follow in the archive
    mode: int
    linkname: str
    sparse: bool = False
    uid: int = 0
    gid: int = 0
    mtime: int = 0  # seconds since the epoch (pax fractions dropped)


class TarStream:
    """Iterate a layer's entries; while an entry is current, `read(limit)` or `chunks()` give its bytes.
    Whatever the caller leaves unread is skipped (read and dropped: a stream cannot seek)."""

    def __init__(self, stream: BinaryIO, limits: Limits) -> None:
        self._stream = stream
        self._limits = limits
        self._left = 0  # content bytes of the current entry not read yet
        self._padding = 0

    def _read(self, size: int) -> bytes:
        parts = []
        while size > 0:
            try:
                data = self._stream.read(min(size, CHUNK))
            except (OSError, EOFError, zlib.error) as exc:
                raise TarInvalid(f"corrupt compressed stream: {exc}") from None
            if not data:
                break
            parts.append(data)
            size -= len(data)
        return b"".join(parts)

    def _skip(self, size: int) -> None:
        while size > 0:
            data = self._read(min(size, CHUNK))
            if not data:
                raise TarInvalid("archive ends inside an entry")
            size -= len(data)

    def read(self, limit: int) -> bytes | None:
        """The current entry's content if it has at most `limit` bytes, else None (nothing read)."""
        if self._left > limit:
            return None
        data = self._read(self._left)
        if len(data) != self._left:
            raise TarInvalid("archive ends inside an entry")
        self._left = 0
        return data

    def read_head(self, size: int) -> bytes:
        """Up to `size` bytes from the start of the current entry; the rest stays readable by chunks()."""
        data = self._read(min(size, self._left))
        self._left -= len(data)
        return data

    def chunks(self) -> Iterator[bytes]:
        while self._left > 0:
            data = self._read(min(self._left, CHUNK))
            if not data:
                raise TarInvalid("archive ends inside an entry")
            self._left -= len(data)
            yield data

    def entries(self) -> Iterator[Entry]:
        pax: dict[str, str] = {}
        long_name: str | None = None
        long_link: str | None = None
        count = 0
        while True:
            self._skip(self._left + self._padding)
            self._left = self._padding = 0
            header = self._read(BLOCK)
            if not header or header == bytes(BLOCK):
                return  # the end-of-archive blocks (or a stream that stops at an entry boundary)
            if len(header) < BLOCK:
                raise TarInvalid("archive ends inside a header")
            _check_sum(header)
            count += 1
            if count > self._limits.max_entries:
                raise WalkAborted(f"more than {self._limits.max_entries} entries in one layer")
            flag = header[156:157]
            size = _number(header[124:136])
            padding = -size % BLOCK
            if flag in (b"x", b"g", b"L", b"K"):
                if size > self._limits.max_header_bytes:
                    raise TarInvalid(
                        f"a {size}-byte extended header (the cap is {self._limits.max_header_bytes})"
                    )
                data = self._read(size + padding)[:size]
                if len(data) < size:
                    raise TarInvalid("archive ends inside an extended header")
                if flag == b"x":
                    pax.update(_pax_records(data))
                elif flag == b"L":
                    long_name = _text(data)
                elif flag == b"K":
                    long_link = _text(data)
                continue  # a global header ('g') changes nothing the walker uses
            name = long_name or pax.get("path") or _ustar_name(header)
            linkname = long_link or pax.get("linkpath") or _text(header[157:257])
            if "size" in pax:
                try:
                    size = int(pax["size"])
                except ValueError:
                    raise TarInvalid("pax size is not a number") from None
                padding = -size % BLOCK
            sparse = flag == b"S" or any(key.startswith("GNU.sparse.") for key in pax)
            kind = OTHER if sparse else _TYPES.get(flag, OTHER)
            uid = _pax_int(pax, "uid", header[108:116])
            gid = _pax_int(pax, "gid", header[116:124])
            mtime = _pax_int(pax, "mtime", header[136:148])
            pax, long_name, long_link = {}, None, None
            self._left, self._padding = size, padding
            yield Entry(name, kind, size, _number(header[100:108]), linkname, sparse, uid, gid, mtime)


def _check_sum(header: bytes) -> None:
    stored = header[148:156]
    try:
        expected = _number(stored)
    except TarInvalid:
        raise TarInvalid("not a tar archive (bad header)") from None
    actual = sum(header[:148]) + 8 * 32 + sum(header[156:])
    if expected != actual:
        raise TarInvalid("not a tar archive (header checksum mismatch)")


def _number(field: bytes) -> int:
    if field[:1] in (b"\x80", b"\xff"):  # GNU base-256
        value = int.from_bytes(field[1:], "big")
        return -value if field[:1] == b"\xff" else value
    text = field.split(b"\0", 1)[0].strip(b" \0")
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError:
        raise TarInvalid("not a tar archive (bad number in header)") from None


def _pax_int(pax: dict[str, str], key: str, field: bytes) -> int:
    """A pax record's number (mtime may have a fraction) over the header's; 0 when unreadable: these
    fields are shown, never acted on."""
    try:
        return int(float(pax[key])) if key in pax else _number(field)
    except (ValueError, OverflowError, TarInvalid):
        return 0


def _text(data: bytes) -> str:
    return data.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def _ustar_name(header: bytes) -> str:
    name = _text(header[0:100])
    if header[257:263] == b"ustar\x00":  # POSIX: a prefix; GNU ("ustar  \0") keeps other fields there
        prefix = _text(header[345:500])
        if prefix:
            return f"{prefix}/{name}"
    return name


def _pax_records(data: bytes) -> dict[str, str]:
    records: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        space = data.find(b" ", pos)
        if space < 0:
            break
        try:
            length = int(data[pos:space])
        except ValueError:
            raise TarInvalid("bad pax record") from None
        if length <= 0 or pos + length > len(data):
            raise TarInvalid("bad pax record")
        record = data[space + 1 : pos + length - 1]
        key, _, value = record.partition(b"=")
        records[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        pos += length
    return records
