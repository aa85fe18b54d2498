"""A step of deploy/Dockerfile's build: print the files the runtime tree takes from Debian's packages.

Those are the files of python3, dash (the entrypoint's shell), base-files and tzdata, and of
every package they need at run time: Depends and Pre-Depends are followed through dpkg's status file,
except into the tools only installing a package needs (dpkg, debconf, install-info...: the image is
never upgraded with apt, it is rebuilt). Left out too: documentation (but the copyright files) and
manuals, glibc's iconv modules (8 MB that Python, with codecs of its own, never loads), the leap-second
time zones (right/*, a copy of the others) and Berkeley DB (1.8 MB, for the dbm module alone).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOTS = ("python3", "dash", "base-files", "tzdata")
INSTALL_ONLY = frozenset({"dpkg", "debconf", "install-info", "debianutils", "perl-base"})
NOT_NEEDED = frozenset({"libdb5.3"})
LEFT_OUT = re.compile(r"^/usr/share/(doc|man|info|lintian)/|/gconv(/|$)|^/usr/share/zoneinfo/right(/|$)")
STATUS = Path("/var/lib/dpkg/status")
INFO = Path("/var/lib/dpkg/info")


def installed_packages() -> tuple[dict[str, list[list[str]]], dict[str, str]]:
    """(package -> its dependencies as lists of alternatives, virtual name -> a package providing it)."""
    depends: dict[str, list[list[str]]] = {}
    provided: dict[str, str] = {}
    for paragraph in STATUS.read_text().split("\n\n"):
        fields = dict(re.findall(r"^([\w-]+): ?(.*(?:\n .*)*)", paragraph, re.MULTILINE))
        if "install ok installed" not in fields.get("Status", ""):
            continue
        name = fields["Package"]
        relations = ", ".join(filter(None, (fields.get("Pre-Depends"), fields.get("Depends"))))
        depends[name] = [
            [re.split(r"[\s(:]", alternative.strip(), maxsplit=1)[0] for alternative in group.split("|")]
            for group in relations.split(",")
            if group.strip()
        ]
        for virtual in fields.get("Provides", "").split(","):
            if virtual.strip():
                provided.setdefault(re.split(r"[\s(]", virtual.strip(), maxsplit=1)[0], name)
    return depends, provided


def runtime_packages() -> set[str]:
    depends, provided = installed_packages()
    wanted: set[str] = set()
    todo = list(ROOTS)
    while todo:
        name = todo.pop()
        if name in wanted:
            continue
        if name not in depends:
            raise SystemExit(f"runtime_files: {name} is not installed")
        wanted.add(name)
        for alternatives in depends[name]:
            if any(choice in INSTALL_ONLY or choice in NOT_NEEDED for choice in alternatives):
                continue
            chosen = next(
                (
                    provided.get(choice, choice)
                    for choice in alternatives
                    if provided.get(choice, choice) in depends
                ),
                None,
            )
            if chosen is None:
                raise SystemExit(f"runtime_files: {name} needs one of {alternatives}: none is installed")
            todo.append(chosen)
    return wanted


def package_files(name: str) -> list[str]:
    for list_file in (INFO / f"{name}.list", *INFO.glob(f"{name}:*.list")):
        if list_file.is_file():
            return list_file.read_text().splitlines()
    raise SystemExit(f"runtime_files: no file list for {name}")


def main() -> int:
    files = {path for name in runtime_packages() for path in package_files(name)}
    for path in sorted(files):
        if path in ("", "/.") or (LEFT_OUT.search(path) and not path.endswith("/copyright")):
            continue
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
