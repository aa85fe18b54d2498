"""Importing OSV records: counts, idempotence, newer records replacing older, and refused imports that
leave the previous version intact (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from dockyard.db.session import Database
from dockyard.vulndb import services as vulndb_services
from dockyard.vulndb.interfaces import ArchiveUnsafe, ImportInvalid, NotOSV, Package
from dockyard.vulndb.models import AdvisoryRow, AffectedRow, VulnImportRow
from dockyard.vulndb.services import VulnDB
from dockyard.vulndb.sources import MAX_DOCUMENT
from tests.unit.vulndb.conftest import FIXTURES

RECORDS = 9


def export_zip(path: Path, extra: dict[str, bytes] | None = None) -> Path:
    """An osv.dev-style `all.zip`: one `<id>.json` per advisory at the top."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(FIXTURES.rglob("*.json")):
            archive.write(file, file.name)
        for name, data in (extra or {}).items():
            archive.writestr(name, data)
    return path


def counts(db: Database) -> tuple[int, int, int]:
    with db.read() as conn:
        return (
            conn.execute(select(func.count()).select_from(AdvisoryRow)).scalar_one(),
            conn.execute(select(func.count()).select_from(AffectedRow)).scalar_one(),
            conn.execute(select(func.count()).select_from(VulnImportRow)).scalar_one(),
        )


def test_import_a_directory(db: Database) -> None:
    vulndb = VulnDB(db)
    assert vulndb.status().version == 0
    report = vulndb.import_paths([FIXTURES])
    assert (report.documents, report.added, report.updated, report.unchanged) == (RECORDS, RECORDS, 0, 0)
    assert report.affected == 12  # log4j has three affected entries, GO-2022-0969 two
    assert report.ignored == 1  # README.md
    assert report.version == report.import_id > 0
    status = vulndb.status()
    assert status.version == report.version
    assert status.advisories == RECORDS
    assert status.by_ecosystem == {
        "alpine:v3.18": 1,
        "debian:12": 1,
        "go": 2,
        "maven": 3,
        "npm": 1,
        "pypi": 4,
    }
    assert status.last_change is not None and status.last_change["added"] == RECORDS


def test_reimporting_the_same_data_changes_nothing(db: Database, tmp_path: Path) -> None:
    vulndb = VulnDB(db)
    first = vulndb.import_paths([FIXTURES])
    before = counts(db)
    with db.read() as conn:
        rows = conn.execute(select(AdvisoryRow.id, AdvisoryRow.import_id)).all()
    again = vulndb.import_paths([export_zip(tmp_path / "all.zip")])  # the same records, as a zip
    assert (again.added, again.updated, again.unchanged) == (0, 0, RECORDS)
    assert not again.changed and again.version == first.version
    assert counts(db) == (before[0], before[1], before[2] + 1)  # only the import is logged
    with db.read() as conn:
        assert conn.execute(select(AdvisoryRow.id, AdvisoryRow.import_id)).all() == rows
    status = vulndb.status()
    assert status.version == first.version
    assert status.last_import is not None and status.last_import["id"] == again.import_id


def _record(name: str) -> dict[str, Any]:
    found = next(FIXTURES.rglob(name))
    return dict(json.loads(found.read_text()))


def test_a_newer_modified_replaces_and_an_older_one_does_not(db: Database, tmp_path: Path) -> None:
    vulndb = VulnDB(db)
    first = vulndb.import_paths([FIXTURES])
    lodash = Package("npm", "lodash", "4.17.21")
    assert vulndb.match([lodash]) == []
    newer = _record("GHSA-35jh-r3h4-6jhm.json")
    newer["modified"] = "2025-01-01T00:00:00Z"
    newer["affected"][0]["ranges"][0]["events"][1] = {"fixed": "4.17.22"}
    (tmp_path / "newer.json").write_text(json.dumps(newer))
    report = vulndb.import_paths([tmp_path / "newer.json"])
    assert (report.added, report.updated, report.unchanged) == (0, 1, 0)
    assert report.version == report.import_id > first.version
    assert [f.fixed_versions for f in vulndb.match([lodash])] == [["4.17.22"]]
    assert vulndb.changed_since(first.version) == ["GHSA-35jh-r3h4-6jhm"]
    older = _record("GHSA-35jh-r3h4-6jhm.json")  # the original again: older than what is stored
    (tmp_path / "older.json").write_text(json.dumps(older))
    stale = vulndb.import_paths([tmp_path / "older.json"])
    assert (stale.added, stale.updated, stale.unchanged) == (0, 0, 1)
    assert stale.version == report.version
    assert [f.fixed_versions for f in vulndb.match([lodash])] == [["4.17.22"]]
    assert counts(db)[1] == 12  # the replaced record's affected rows went with it


def test_the_same_id_twice_in_one_import_keeps_the_newer(db: Database, tmp_path: Path) -> None:
    record = _record("GHSA-35jh-r3h4-6jhm.json")
    newer = dict(record, modified="2030-01-01T00:00:00Z", summary="newer")
    (tmp_path / "a.json").write_text(json.dumps(newer))
    (tmp_path / "b.json").write_text(json.dumps(record))
    report = VulnDB(db).import_paths([tmp_path])
    assert (report.documents, report.added, report.unchanged) == (2, 1, 1)
    with db.read() as conn:
        assert conn.execute(select(AdvisoryRow.summary)).scalar_one() == "newer"


def test_yaml_records_as_the_pypa_database_keeps_them(db: Database, tmp_path: Path) -> None:
    import yaml

    record = _record("PYSEC-2021-142.json")
    # Unquoted timestamps: YAML loaders make datetimes of them.
    text = yaml.safe_dump(record).replace("'2021-08-27T03:22:18.913334Z'", "2021-08-27T03:22:18.913334Z")
    (tmp_path / "PYSEC-2021-142.yaml").write_text(text)
    vulndb = VulnDB(db)
    assert vulndb.import_paths([tmp_path]).added == 1
    assert [f.advisory_id for f in vulndb.match([Package("PyPI", "PyYAML", "5.3.1")])] == ["PYSEC-2021-142"]


def test_withdrawn_advisories_are_kept_but_never_matched(db: Database, tmp_path: Path) -> None:
    record = _record("GHSA-35jh-r3h4-6jhm.json")
    record["withdrawn"] = "2024-01-01T00:00:00Z"
    (tmp_path / "w.json").write_text(json.dumps(record))
    vulndb = VulnDB(db)
    vulndb.import_paths([tmp_path])
    assert vulndb.status().withdrawn == 1
    assert vulndb.match([Package("npm", "lodash", "4.17.20")]) == []


# --- refused imports: a clear error, and the database as it was ------------------------------------
def refused(db: Database, paths: list[Path], error: type[Exception], message: str) -> None:
    vulndb = VulnDB(db)
    vulndb.import_paths([FIXTURES])
    before, version = counts(db), vulndb.status().version
    with pytest.raises(error, match=message):
        vulndb.import_paths(paths)
    assert counts(db) == before
    assert vulndb.status().version == version


def test_a_zip_with_path_traversal_names_is_refused(db: Database, tmp_path: Path) -> None:
    archive = export_zip(tmp_path / "evil.zip", {"../../etc/evil.json": b"{}"})
    refused(db, [archive], ArchiveUnsafe, r"points outside the archive")
    absolute = export_zip(tmp_path / "abs.zip", {"/tmp/abs.json": b"{}"})
    refused(db, [absolute], ArchiveUnsafe, r"points outside the archive")


def test_a_zip_bomb_entry_is_refused_at_the_limit(db: Database, tmp_path: Path) -> None:
    path = tmp_path / "bomb.zip"
    with (
        zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive,
        archive.open("GHSA-bomb.json", "w", force_zip64=True) as entry,
    ):
        chunk = b" " * (1024 * 1024)
        for _ in range(MAX_DOCUMENT // len(chunk) + 2):
            entry.write(chunk)
    assert path.stat().st_size < 200_000  # small on disk, over the limit expanded
    refused(db, [path], ArchiveUnsafe, r"expands past 16 MiB")


def test_a_corrupt_zip_is_refused(db: Database, tmp_path: Path) -> None:
    data = export_zip(tmp_path / "ok.zip").read_bytes()
    (tmp_path / "cut.zip").write_bytes(data[: len(data) // 2])
    refused(db, [tmp_path / "cut.zip"], ImportInvalid, r"not a readable zip archive")


def test_malformed_json_late_in_an_import_rolls_back_the_batches_before_it(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(vulndb_services, "BATCH", 2)  # so several batches are written before the error
    source = tmp_path / "export"
    shutil.copytree(FIXTURES, source)
    for file in source.rglob("*.json"):  # new ids, so they would be added
        record = json.loads(file.read_text())
        record["id"] = "NEW-" + record["id"]
        file.write_text(json.dumps(record))
    (source / "zz-last.json").write_text('{"id": "BROKEN", "modified": ')
    refused(db, [source], NotOSV, r"zz-last.json: malformed JSON")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"[1, 2, 3]", r"not an OSV record \(a JSON object is expected\)"),
        (b'{"name": "left-pad", "version": "1.3.0"}', r"no valid `id`"),
        (b'{"id": "X-1"}', r"X-1 has no `modified`"),
        (b'{"id": "X-1", "modified": "yesterday"}', r"`modified` is not an RFC 3339 time"),
        (b'{"id": "X-1", "modified": "2024-01-01T00:00:00Z", "affected": [{"ranges": []}]}', r"no `package`"),
        (
            b'{"id": "X-1", "modified": "2024-01-01T00:00:00Z", "affected": '
            b'[{"package": {"ecosystem": "npm", "name": "x"}, "ranges": [{"type": "SEMVER"}]}]}',
            r"no `events` list",
        ),
        (b"\xff\xfe not json", r"malformed JSON"),
    ],
)
def test_a_file_that_is_not_osv_is_refused(
    db: Database, tmp_path: Path, content: bytes, message: str
) -> None:
    (tmp_path / "file.json").write_bytes(content)
    refused(db, [tmp_path / "file.json"], NotOSV, message)


def test_a_missing_path_is_refused(db: Database, tmp_path: Path) -> None:
    refused(db, [FIXTURES, tmp_path / "nowhere"], ImportInvalid, r"no such file or directory")


def test_an_oversized_plain_file_is_refused(db: Database, tmp_path: Path) -> None:
    with (tmp_path / "huge.json").open("wb") as handle:
        handle.truncate(MAX_DOCUMENT + 1)
    refused(db, [tmp_path / "huge.json"], ArchiveUnsafe, r"larger than 16 MiB")


def test_zip_entries_that_are_not_records_are_ignored(db: Database, tmp_path: Path) -> None:
    archive = export_zip(tmp_path / "all.zip", {"README.txt": b"hello", "sub/": b""})
    report = VulnDB(db).import_paths([archive])
    assert report.added == RECORDS and report.ignored >= 1


def test_two_imports_at_once_both_succeed(db: Database, tmp_path: Path) -> None:
    """On PostgreSQL the second waits for the first (an advisory lock), on SQLite for its write lock:
    never two transactions inserting the same new ids."""
    from concurrent.futures import ThreadPoolExecutor

    vulndb = VulnDB(db)
    zipped = export_zip(tmp_path / "all.zip")
    with ThreadPoolExecutor(2) as pool:
        reports = list(pool.map(vulndb.import_paths, [[FIXTURES], [zipped]]))
    assert sorted(r.added for r in reports) == [0, RECORDS]
    assert counts(db)[:2] == (RECORDS, 12)
