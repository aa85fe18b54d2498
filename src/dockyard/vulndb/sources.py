"""Reading OSV documents from files, directories and zip exports, one at a time.

osv.dev publishes one zip per ecosystem (`<ecosystem>/all.zip`, one `<id>.json` per advisory); the
advisory repositories keep one file per advisory, JSON or YAML (pypa/advisory-database). Nothing is
extracted: zip entries are read into memory one by one, each at most MAX_DOCUMENT bytes however large
its header claims it is (a zip bomb stops at the limit). An entry name that would leave the archive
(`../x.json`, `/etc/x.json`) makes the whole archive refused: it is not an osv.dev export.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from dockyard.vulndb.interfaces import ArchiveUnsafe, ImportInvalid, NotOSV

MAX_DOCUMENT = 16 * 1024 * 1024  # the largest osv.dev records (Linux kernel, Debian) are a few MiB
MAX_ENTRIES = 5_000_000
DOCUMENT_SUFFIXES = (".json", ".yaml", ".yml")


class Counter:
    def __init__(self) -> None:
        self.ignored = 0


def iter_documents(paths: Sequence[str | os.PathLike[str]], counter: Counter) -> Iterator[tuple[str, Any]]:
    """(where, parsed document) for every OSV document under `paths`, in a stable order."""
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for file in sorted(p for p in path.rglob("*") if p.is_file()):
                if file.suffix.lower() == ".zip":
                    yield from _zip(file, counter)
                elif file.suffix.lower() in DOCUMENT_SUFFIXES:
                    yield str(file), _parse(str(file), _read_file(file), file.suffix.lower())
                else:
                    counter.ignored += 1
        elif path.is_file():
            if path.suffix.lower() == ".zip":
                yield from _zip(path, counter)
            else:
                yield str(path), _parse(str(path), _read_file(path), path.suffix.lower())
        else:
            raise ImportInvalid(f"{path}: no such file or directory")


def _read_file(path: Path) -> bytes:
    with path.open("rb") as handle:
        data = handle.read(MAX_DOCUMENT + 1)
    if len(data) > MAX_DOCUMENT:
        raise ArchiveUnsafe(f"{path}: larger than {MAX_DOCUMENT // (1024 * 1024)} MiB: not an OSV record")
    return data


def _zip(path: Path, counter: Counter) -> Iterator[tuple[str, Any]]:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ImportInvalid(f"{path}: not a readable zip archive ({exc})") from None
    with archive:
        entries = archive.infolist()
        if len(entries) > MAX_ENTRIES:
            raise ArchiveUnsafe(f"{path}: more than {MAX_ENTRIES} entries")
        for info in entries:  # checked before anything is read, so a bad archive imports nothing
            _check_name(path, info.filename)
        for info in entries:
            if info.is_dir():
                continue
            suffix = PurePosixPath(info.filename).suffix.lower()
            if suffix not in DOCUMENT_SUFFIXES:
                counter.ignored += 1
                continue
            where = f"{path}:{info.filename}"
            try:
                with archive.open(info) as member:
                    data = member.read(MAX_DOCUMENT + 1)
            except (zipfile.BadZipFile, OSError, NotImplementedError, RuntimeError, EOFError) as exc:
                raise ImportInvalid(f"{where}: cannot be read from the archive ({exc})") from None
            if len(data) > MAX_DOCUMENT:
                raise ArchiveUnsafe(
                    f"{where}: expands past {MAX_DOCUMENT // (1024 * 1024)} MiB: refused (a zip bomb?)"
                )
            yield where, _parse(where, data, suffix)


def _check_name(path: Path, name: str) -> None:
    posix = PurePosixPath(name.replace("\\", "/"))
    if posix.is_absolute() or ".." in posix.parts or (posix.parts and ":" in posix.parts[0]):
        raise ArchiveUnsafe(f"{path}: entry {name!r} points outside the archive: refused")


def _parse(where: str, data: bytes, suffix: str) -> Any:
    if suffix in (".yaml", ".yml"):
        import yaml

        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        try:
            return yaml.load(data, Loader=loader)
        except yaml.YAMLError as exc:
            raise NotOSV(f"{where}: malformed YAML ({str(exc).splitlines()[0]})") from None
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise NotOSV(f"{where}: malformed JSON ({exc})") from None
