"""A Package as the vulnerability matcher asks for it: OSV's ecosystem (with the release) and the
source package of distribution packages; and distroless's status.d, read as dpkg's status."""

from __future__ import annotations

import io

from dockyard.scanning.models import OsvPackage, Package
from dockyard.scanning.walker import Walk
from tests.support.layers import dpkg_stanzas, dpkg_version, file, layer


def package(
    ecosystem: str, distro: str | None, name: str = "libssl3", source: str | None = "openssl"
) -> Package:
    return Package(name, "3.0.11-1~deb12u2", ecosystem, "pkg:x", "sha256:1", "p", source, "amd64", distro)


def test_osv_names() -> None:
    assert package("Debian", "debian-12").osv() == OsvPackage("Debian:12", "openssl", "3.0.11-1~deb12u2")
    assert package("Debian", "debian-12.4").osv().ecosystem == "Debian:12"
    assert package("Ubuntu", "ubuntu-22.04").osv().ecosystem == "Ubuntu:22.04"
    assert package("Alpine", "alpine-3.19.1").osv().ecosystem == "Alpine:v3.19"
    assert package("Debian", None).osv() == OsvPackage("Debian", "openssl", "3.0.11-1~deb12u2")
    assert package("Debian", "debian-12", source=None).osv().name == "libssl3"
    assert package("PyPI", None, "Django", None).osv() == OsvPackage("PyPI", "Django", "3.0.11-1~deb12u2")


def test_distroless_status_d_with_checksums_beside_it() -> None:
    stanzas = dpkg_stanzas(["base-files", "sed"])
    # distroless: one stanza per file, no Status field, md5sums beside them
    without_status = {
        name: "\n".join(line for line in text.splitlines() if not line.startswith("Status:")) + "\n"
        for name, text in stanzas.items()
    }
    members = [
        file("etc/os-release", b'ID=debian\nVERSION_ID="12"\n'),
        file("var/lib/dpkg/status.d/base", without_status["base-files"].encode()),
        file("var/lib/dpkg/status.d/sed", without_status["sed"].encode()),
        file("var/lib/dpkg/status.d/sed.md5sums", b"0123456789abcdef0123456789abcdef  bin/sed\n"),
    ]
    result = Walk()
    result.layer("sha256:" + "d" * 64, io.BytesIO(layer(members)))
    found = {p.name: p for p in result.packages()}
    assert {name: p.version for name, p in found.items()} == {
        name: dpkg_version(text) for name, text in stanzas.items()
    }
    assert found["sed"].path == "var/lib/dpkg/status.d/sed"
    assert found["sed"].osv().ecosystem == "Debian:12"
    assert result.unreadable_formats() == []
