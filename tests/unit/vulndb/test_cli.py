"""`dockyard vulndb` as an administrator runs it, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import zipfile
from pathlib import Path

import pytest
import yaml

from tests.support.cli import run_dockyard
from tests.unit.vulndb.conftest import FIXTURES


@pytest.fixture
def config(tmp_path: Path, database_url: str) -> Path:
    path = tmp_path / "config.yml"
    datadir = tmp_path / "data"
    datadir.mkdir()
    path.write_text(yaml.safe_dump({"datadir": str(datadir), "database": {"url": database_url}}))
    return path


def vulndb(config: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return run_dockyard("vulndb", *args, "--config", config, env={**os.environ, "COLUMNS": "200"})


def test_import_status_match_and_allowlist(config: Path, tmp_path: Path) -> None:
    empty = vulndb(config, "status")
    assert empty.returncode == 0 and "no advisories imported yet" in empty.stdout
    archive = tmp_path / "all.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as out:
        for file in sorted(FIXTURES.rglob("*.json")):
            out.write(file, file.name)
    first = vulndb(config, "import", archive)
    assert first.returncode == 0, first.stderr
    assert "9 added, 0 updated, 0 unchanged" in first.stdout
    assert "database now at version 1: 9 advisories" in first.stdout
    again = vulndb(config, "import", FIXTURES, "--json")
    report = json.loads(again.stdout)
    assert (report["added"], report["unchanged"], report["version"], report["changed"]) == (0, 9, 1, False)
    status = vulndb(config, "status")
    assert "version 1 " in status.stdout and "pypi: 4" in status.stdout and "debian:12: 1" in status.stdout

    found = vulndb(config, "match", "PyPI", "Jinja2", "2.11.2")
    assert found.returncode == 0, found.stderr
    assert "medium   GHSA-g3rq-g295-4j3m" in found.stdout and "fixed in 2.11.3" in found.stdout
    allowed = vulndb(
        config, "allow", "CVE-2020-28493", "--expires", "2999-01-01", "--reason", "not reachable"
    )
    assert allowed.returncode == 0 and "allowlisted system-wide until 2999-01-01" in allowed.stdout
    assert "0 advisories affect" in vulndb(config, "match", "PyPI", "Jinja2", "2.11.2").stdout
    shown = json.loads(
        vulndb(config, "match", "PyPI", "Jinja2", "2.11.2", "--show-allowlisted", "--json").stdout
    )
    assert [(f["id"], f["allowlisted"]) for f in shown] == [("GHSA-g3rq-g295-4j3m", True)]
    assert "CVE-2020-28493  until 2999-01-01" in vulndb(config, "allowlist").stdout
    assert vulndb(config, "disallow", "CVE-2020-28493").returncode == 0
    gone = vulndb(config, "disallow", "CVE-2020-28493")
    assert gone.returncode == 1 and "is not allowlisted system-wide" in gone.stderr


def test_a_refused_import_says_why_and_imports_nothing(config: Path, tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text('{"id": "X-1"}')
    refused = vulndb(config, "import", FIXTURES, tmp_path / "bad.json")
    assert refused.returncode == 1
    assert "import refused, nothing imported" in refused.stderr and "X-1 has no `modified`" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert "no advisories imported yet" in vulndb(config, "status").stdout


def test_bad_options_are_refused(config: Path) -> None:
    bad = vulndb(config, "allow", "CVE-2020-28493", "--expires", "soon")
    assert bad.returncode == 2 and "not an ISO 8601 date" in bad.stderr
    past = vulndb(config, "allow", "CVE-2020-28493", "--expires", "2000-01-01")
    assert past.returncode == 1 and "in the past" in past.stderr
    nowhere = vulndb(config, "allow", "CVE-2020-28493", "--project", "nope")
    assert nowhere.returncode == 1 and "nope" in nowhere.stderr
