"""PyUp's safety-db, a real published advisory set for Python packages (not OSV), as the PyPI package
`safety-db` installs it (a dev dependency; its data is CC BY-NC-SA 4.0, not shipped by dockyard)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from dockyard.db.session import Database
from dockyard.vulndb.interfaces import NotOSV, Package
from dockyard.vulndb.services import VulnDB
from tests.unit.vulndb.conftest import FIXTURES


def safety_db_dir() -> Path:
    spec = importlib.util.find_spec("safety_db")  # not imported: its __init__ opens a relative path
    assert spec is not None and spec.submodule_search_locations, "safety-db is a dev dependency"
    return Path(spec.submodule_search_locations[0])


@pytest.fixture
def vulndb(db: Database) -> VulnDB:
    return VulnDB(db)


def test_the_published_set_imports_and_matches(vulndb: VulnDB) -> None:
    full = safety_db_dir() / "insecure_full.json"
    entries = sum(len(v) for k, v in json.loads(full.read_text()).items() if k != "$meta")
    report = vulndb.import_paths([full])
    assert report.documents == entries > 2000
    assert report.added + report.unchanged == entries  # an id listed twice counts once
    assert vulndb.status().by_ecosystem["pypi"] == report.added

    found = vulndb.match([Package("PyPI", "Jinja2", "2.7.2")])
    by_id = {f.advisory_id: f for f in found}
    assert set(by_id) == {"pyup.io-25866", "pyup.io-39525"}  # <2.7.3 and >=0.0.0,<2.11.3
    assert by_id["pyup.io-25866"].aliases == ["CVE-2014-1402"]
    assert by_id["pyup.io-25866"].fixed_versions == ["2.7.3"]
    assert by_id["pyup.io-39525"].fixed_versions == ["2.11.3"]
    assert vulndb.match([Package("PyPI", "jinja2", "2.11.3")]) == []
    # django's entries are lists of ranges: ['<1.0.4', '>=1.1,<1.1.1'].
    assert "pyup.io-33067" in {f.advisory_id for f in vulndb.match([Package("PyPI", "Django", "1.1")])}

    again = vulndb.import_paths([full])  # the same file: nothing changes
    assert (again.added, again.updated, again.changed) == (0, 0, False)


def test_osv_and_safety_db_findings_of_one_cve_are_one(vulndb: VulnDB) -> None:
    vulndb.import_paths([FIXTURES, safety_db_dir() / "insecure_full.json"])
    cve = [f for f in vulndb.match([Package("PyPI", "jinja2", "2.11.2")]) if "CVE-2020-28493" in f.ids()]
    assert len(cve) == 1 and {"PYSEC-2021-66", "pyup.io-39525"} <= set(cve[0].aliases)


def test_the_short_form_is_refused_with_a_pointer(vulndb: VulnDB) -> None:
    with pytest.raises(NotOSV, match=r"import insecure_full\.json"):
        vulndb.import_paths([safety_db_dir() / "insecure.json"])
    assert vulndb.status().advisories == 0
