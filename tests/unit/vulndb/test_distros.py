"""From an inventory's package record to what OSV calls it: release-qualified ecosystems, source names."""

from __future__ import annotations

import pytest

from dockyard.scanning.models import Package as InventoryPackage
from dockyard.vulndb.distros import osv_query, release_ecosystem
from dockyard.vulndb.interfaces import Package


@pytest.mark.parametrize(
    ("ecosystem", "distro", "expected"),
    [
        ("Debian", "debian-12", "Debian:12"),
        ("Debian", "debian-sid", "Debian:sid"),
        ("Alpine", "alpine-3.19.1", "Alpine:v3.19"),
        ("Ubuntu", "ubuntu-22.04", "Ubuntu:22.04:LTS"),
        ("Ubuntu", "ubuntu-23.10", "Ubuntu:23.10"),
        ("Rocky Linux", "rocky-9.3", "Rocky Linux:9"),
        ("Debian:11", "debian-12", "Debian:11"),  # a release already named wins
        ("Debian", None, "Debian"),
        ("Red Hat", "rhel-9.3", "Red Hat"),  # OSV's Red Hat ecosystems name products: left as they are
    ],
)
def test_release_ecosystems(ecosystem: str, distro: str | None, expected: str) -> None:
    assert release_ecosystem(ecosystem, distro) == expected


def test_an_inventory_record_is_looked_up_by_its_source_package() -> None:
    libssl = InventoryPackage(
        "libssl3",
        "3.0.11-1~deb12u1",
        "Debian",
        "pkg:deb/debian/libssl3@3.0.11-1~deb12u1",
        "sha256:aa",
        "var/lib/dpkg/status",
        source_name="openssl",
        arch="amd64",
        distro="debian-12",
    )
    assert osv_query(libssl) == Package("Debian:12", "openssl", "3.0.11-1~deb12u1")
    wheel = InventoryPackage("Jinja2", "2.11.2", "PyPI", "pkg:pypi/jinja2@2.11.2", "sha256:bb", "x")
    assert osv_query(wheel) == Package("PyPI", "Jinja2", "2.11.2")
