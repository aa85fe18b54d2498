"""Language package metadata: Python distributions, npm packages, Java archives."""

from __future__ import annotations

import io
import json
import re
import zipfile
from email.parser import HeaderParser

from dockyard.scanning.interfaces import Detected, Finding, Limits

_NODE_PACKAGE = re.compile(r"(?:^|.*/)node_modules/(?:@[^/]+/)?[^/@][^/]*/package\.json")
JAR_SUFFIXES = (".jar", ".war", ".ear", ".jpi", ".hpi")


class Python:
    """`*.dist-info/METADATA` (wheels, pip) and `*.egg-info/PKG-INFO` or a bare `*.egg-info` file
    (setuptools, distutils): the headers before the first blank line name the distribution."""

    name = "python"
    head_only = True

    def wants(self, path: str) -> bool:
        return (
            path.endswith(".dist-info/METADATA")
            or path.endswith(".egg-info/PKG-INFO")
            or path.endswith(".egg-info")
        )

    def max_bytes(self, limits: Limits) -> int:
        return min(limits.max_metadata_bytes, 256 * 1024)

    def detect(self, path: str, data: bytes, limits: Limits) -> Detected:
        found = Detected()
        head = data.split(b"\n\n", 1)[0].decode("utf-8", "replace")
        headers = HeaderParser().parsestr(head, headersonly=True)
        name, version = headers.get("Name"), headers.get("Version")
        if name and version:
            found.findings.append(Finding(str(name).strip(), str(version).strip(), "pypi"))
        else:
            found.unreadable.append(("python-metadata", "no Name or Version header"))
        return found


class Npm:
    """`node_modules/<name>/package.json` and `node_modules/@scope/<name>/package.json`, at any depth
    of node_modules; package.json files elsewhere inside a package (fixtures, sub-folders) are not
    packages."""

    name = "npm"
    head_only = False

    def wants(self, path: str) -> bool:
        return (
            path.endswith("/package.json") and "node_modules/" in path and bool(_NODE_PACKAGE.fullmatch(path))
        )

    def max_bytes(self, limits: Limits) -> int:
        return limits.max_metadata_bytes

    def detect(self, path: str, data: bytes, limits: Limits) -> Detected:
        found = Detected()
        try:
            document = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            found.unreadable.append(("npm-package-json", "not valid JSON"))
            return found
        if not isinstance(document, dict):
            found.unreadable.append(("npm-package-json", "not a JSON object"))
            return found
        name, version = document.get("name"), document.get("version")
        if isinstance(name, str) and isinstance(version, str) and name and version:
            scope, _, _bare = name.rpartition("/")
            found.findings.append(Finding(name, version, "npm", namespace=scope or None))
        return found


class Java:
    """Jars (and wars, ears): every `META-INF/maven/**/pom.properties` is a package; without one,
    `META-INF/MANIFEST.MF`'s name and version. Jars inside jars (Spring Boot's BOOT-INF/lib, a war's
    WEB-INF/lib) are read down to `Limits.max_archive_depth`, each at most max_nested_archive_bytes."""

    name = "java"
    head_only = False

    def wants(self, path: str) -> bool:
        return path.lower().endswith(JAR_SUFFIXES)

    def max_bytes(self, limits: Limits) -> int:
        return limits.max_archive_bytes

    def detect(self, path: str, data: bytes, limits: Limits) -> Detected:
        found = Detected()
        self._archive(data, None, 1, limits, found)
        return found

    def _archive(self, data: bytes, subpath: str | None, depth: int, limits: Limits, found: Detected) -> None:
        try:
            archive = zipfile.ZipFile(io.BytesIO(data))
            infos = archive.infolist()
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
            found.unreadable.append(("java-archive", f"{subpath or 'archive'}: not a readable zip: {exc}"))
            return
        before = len(found.findings)
        manifest: dict[str, str] = {}
        read = 0
        for info in infos:
            name = info.filename
            is_pom = name.startswith("META-INF/maven/") and name.endswith("/pom.properties")
            is_manifest = name == "META-INF/MANIFEST.MF"
            is_nested = name.lower().endswith(JAR_SUFFIXES) and not info.is_dir()
            if not (is_pom or is_manifest or is_nested):
                continue
            read += 1
            if read > limits.max_archive_entries:
                found.skipped.append(
                    (_join(subpath, name), f"more than {limits.max_archive_entries} entries")
                )
                break
            if is_nested:
                self._nested(archive, info, subpath, depth, limits, found)
                continue
            content = _member(archive, info, 256 * 1024)
            if content is None:
                found.skipped.append((_join(subpath, name), "larger than 256 KiB"))
                continue
            if is_manifest:
                manifest = _manifest(content)
                continue
            props = _properties(content)
            group, artifact, version = props.get("groupId"), props.get("artifactId"), props.get("version")
            if group and artifact and version:
                found.findings.append(
                    Finding(f"{group}:{artifact}", version, "maven", namespace=group, subpath=subpath)
                )
        if len(found.findings) > before:
            return
        version = manifest.get("Implementation-Version") or manifest.get("Bundle-Version")
        title = manifest.get("Bundle-SymbolicName", "").split(";", 1)[0] or manifest.get(
            "Implementation-Title"
        )
        group = manifest.get("Implementation-Vendor-Id")
        if version and title:
            found.findings.append(
                Finding(
                    f"{group}:{title}" if group else title, version, "maven", namespace=group, subpath=subpath
                )
            )
        elif not any(info.filename.lower().endswith(JAR_SUFFIXES) for info in infos):
            found.unreadable.append(
                ("java-archive", f"{subpath or 'archive'}: no pom.properties, no version in MANIFEST.MF")
            )

    def _nested(
        self,
        archive: zipfile.ZipFile,
        info: zipfile.ZipInfo,
        subpath: str | None,
        depth: int,
        limits: Limits,
        found: Detected,
    ) -> None:
        where = _join(subpath, info.filename)
        if depth >= limits.max_archive_depth:
            found.skipped.append((where, f"nested deeper than {limits.max_archive_depth} archives"))
            return
        content = _member(archive, info, limits.max_nested_archive_bytes)
        if content is None:
            found.skipped.append(
                (where, f"nested archive larger than {limits.max_nested_archive_bytes} bytes")
            )
            return
        self._archive(content, where, depth + 1, limits, found)


def _join(subpath: str | None, name: str) -> str:
    return f"{subpath}!/{name}" if subpath else name


def _member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, cap: int) -> bytes | None:
    """An entry's bytes if it inflates to at most `cap` (read with a bound: the sizes a zip declares
    can lie, and a deflate bomb stops at cap + 1 bytes)."""
    if info.file_size > cap:
        return None
    try:
        with archive.open(info) as member:
            data = member.read(cap + 1)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError, RuntimeError):
        return b""
    return None if len(data) > cap else data


def _manifest(data: bytes) -> dict[str, str]:
    fields: dict[str, str] = {}
    last = ""
    for line in data.decode("utf-8", "replace").splitlines():
        if line.startswith(" ") and last:
            fields[last] += line[1:]
        elif not line.strip():
            break  # the main section ends at the first blank line
        else:
            key, sep, value = line.partition(":")
            if sep:
                last = key.strip()
                fields[last] = value.strip()
    return fields


def _properties(data: bytes) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in data.decode("latin-1").splitlines():
        line = line.strip()
        if not line or line[0] in "#!":
            continue
        parts = re.split(r"\s*[=:]\s*", line, maxsplit=1)
        if len(parts) == 2:
            fields[parts[0]] = parts[1]
    return fields
