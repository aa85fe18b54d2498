"""Go build info, read from an executable as it streams past: Go 1.18+ writes a `.go.buildinfo`
blob that starts with a magic string, then the Go version and the module info inline (older
toolchains wrote pointers, which need the ELF's address map: reported as unreadable)."""

from __future__ import annotations

from dockyard.scanning.interfaces import Detected, Finding

MAGIC = b"\xff Go buildinf:"
ELF_MAGIC = b"\x7fELF"
_HEADER = 32
_MAX_BLOB = 4 * 1024 * 1024  # version + module info: tens of KiB in practice
_SENTINEL = 16  # the module info is framed by 16 random-looking bytes on each side


class GoBuildInfoScanner:
    """Feed an executable's bytes in order; `result()` then says what its build info names."""

    def __init__(self) -> None:
        self._tail = b""
        self._blob: bytearray | None = None
        self._result: Detected | None = None

    @property
    def done(self) -> bool:
        return self._result is not None

    def feed(self, chunk: bytes) -> None:
        if self._result is not None:
            return
        if self._blob is not None:
            self._blob += chunk
            self._try_parse()
            return
        data = self._tail + chunk
        start = data.find(MAGIC)
        while start >= 0:
            candidate = data[start:]
            if len(candidate) < 16 or (candidate[14] in (4, 8) and candidate[15] & 0xFD in (0, 1)):
                self._blob = bytearray(candidate)
                self._try_parse()
                return
            start = data.find(MAGIC, start + 1)  # the string itself, in a binary that reads build info
        self._tail = data[-(len(MAGIC) - 1) :]

    def finish(self) -> Detected | None:
        """At the end of the file: the findings, or None when it holds no Go build info."""
        if self._result is None and self._blob is not None:
            self._try_parse(final=True)
        return self._result

    def _try_parse(self, final: bool = False) -> None:
        assert self._blob is not None
        blob = bytes(self._blob)
        if len(blob) < _HEADER:
            if final:
                self._result = _unreadable("truncated build info")
            return
        flags = blob[15]
        if not flags & 0x2:
            self._result = _unreadable("built before Go 1.18 (pointer-format build info)")
            return
        parsed = _inline_strings(blob, _HEADER, 2)
        if parsed is None:
            if final or len(blob) > _MAX_BLOB:
                self._result = _unreadable("truncated build info")
            return
        version, modinfo = parsed
        self._result = parse_modinfo(version.decode("utf-8", "replace"), modinfo)


def _unreadable(reason: str) -> Detected:
    found = Detected()
    found.unreadable.append(("go-buildinfo", reason))
    return found


def _inline_strings(blob: bytes, pos: int, count: int) -> list[bytes] | None:
    out = []
    for _ in range(count):
        length, shift = 0, 0
        while True:
            if pos >= len(blob) or shift > 63:
                return None
            byte = blob[pos]
            pos += 1
            length |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                break
        if length > _MAX_BLOB or pos + length > len(blob):
            return None
        out.append(blob[pos : pos + length])
        pos += length
    return out


def parse_modinfo(go_version: str, modinfo: bytes) -> Detected:
    """`path`, `mod` (the main module), `dep` and `=>` (a replacement of the dep before it) lines."""
    found = Detected()
    if len(modinfo) >= 2 * _SENTINEL + 1 and modinfo[-_SENTINEL - 1 : -_SENTINEL] == b"\n":
        modinfo = modinfo[_SENTINEL:-_SENTINEL]
    found.facts["go_version"] = go_version
    for line in modinfo.decode("utf-8", "replace").splitlines():
        fields = line.split("\t")
        if fields[0] == "path" and len(fields) >= 2:
            found.facts["go_path"] = fields[1]
        elif fields[0] in ("mod", "dep") and len(fields) >= 3:
            found.findings.append(_module(fields[1], fields[2]))
        elif fields[0] == "=>" and len(fields) >= 3 and found.findings:
            found.findings[-1] = _module(fields[1], fields[2])  # what was built is the replacement
    if go_version.startswith("go"):
        version = go_version[2:].split(" ", 1)[0]
        found.findings.append(Finding("stdlib", version, "golang"))
    return found


def _module(path: str, version: str) -> Finding:
    namespace, _, _ = path.rpartition("/")
    return Finding(path, version, "golang", namespace=namespace or None)
