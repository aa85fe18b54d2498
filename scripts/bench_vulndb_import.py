"""Time `dockyard vulndb import` of an osv.dev-style export built from advisory files on this machine.

    .venv/bin/python scripts/bench_vulndb_import.py DIR... [--copies N] [--postgresql URL]

DIR: directories of OSV records (JSON or YAML), e.g. a checkout of an advisory database (the PyPA
advisory database's `vulns/`, the Go vulnerability database's `data/osv/`). They are written into one
`all.zip` as osv.dev publishes it (one `<id>.json` per advisory, YAML turned into JSON). `--copies N`
repeats every record N times under new ids (`<id>-copyK`), to measure an export of a full ecosystem's
size from a smaller set; the report says so. The import runs the real command on a fresh SQLite
database (and on PostgreSQL with `--postgresql`), twice: the first adds everything, the second is
the idempotent re-import (nothing changes). Prints seconds, advisories per second and the database size.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from datetime import datetime
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCKYARD = str(ROOT / ".venv" / "bin" / "dockyard")


def _iso(value: object) -> str:
    """YAML loaders give datetimes: written back as RFC 3339, as osv.dev writes them."""
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    return str(value)


def build_export(dirs: list[Path], copies: int, out: Path) -> int:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    written = 0
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for root in dirs:
            for path in sorted(root.rglob("*")):
                suffix = path.suffix.lower()
                if suffix == ".json":
                    record = json.loads(path.read_bytes())
                elif suffix in (".yaml", ".yml"):
                    record = yaml.load(path.read_bytes(), Loader=loader)
                else:
                    continue
                if not isinstance(record, dict) or "id" not in record:
                    continue
                for copy in range(copies):
                    doc = dict(record, id=record["id"] if copy == 0 else f"{record['id']}-copy{copy}")
                    archive.writestr(f"{doc['id']}.json", json.dumps(doc, default=_iso))
                    written += 1
    return written


def run_import(config: Path, export: Path) -> tuple[float, dict[str, object]]:
    began = time.monotonic()
    done = subprocess.run(
        [DOCKYARD, "vulndb", "import", str(export), "--json", "--config", str(config)],
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.monotonic() - began
    if done.returncode != 0:
        sys.exit(f"import failed: {done.stderr}")
    return elapsed, json.loads(done.stdout)


def bench(name: str, url: str, export: Path, count: int, workdir: Path) -> None:
    config = workdir / f"{name}.yml"
    datadir = workdir / f"{name}-data"
    datadir.mkdir()
    config.write_text(yaml.safe_dump({"datadir": str(datadir), "database": {"url": url}}))
    subprocess.run([DOCKYARD, "db", "upgrade", "--config", str(config)], check=True, capture_output=True)
    for label in ("first import", "re-import"):
        wall, report = run_import(config, export)
        seconds = float(report["seconds"])  # type: ignore[arg-type]
        print(
            f"{name} {label}: {count} advisories, import {seconds:.1f} s ({count / seconds:.0f}/s), "
            f"command {wall:.1f} s; added {report['added']}, unchanged {report['unchanged']}, "
            f"affected rows {report['affected']}"
        )
    db_file = datadir / "dockyard.db"
    if url.startswith("sqlite") and Path(url.removeprefix("sqlite:///")).exists():
        db_file = Path(url.removeprefix("sqlite:///"))
        print(f"{name} database file: {db_file.stat().st_size / 2**20:.1f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("dirs", nargs="+", type=Path)
    parser.add_argument("--copies", type=int, default=1)
    parser.add_argument("--postgresql", help="also on this (empty) database: postgresql://...")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        workdir = Path(scratch)
        export = workdir / "all.zip"
        count = build_export(args.dirs, args.copies, export)
        note = f" ({args.copies} copies of each record under new ids)" if args.copies > 1 else ""
        print(
            f"export: {count} advisories{note}, {export.stat().st_size / 2**20:.1f} MiB zipped, "
            f"{os.cpu_count()} CPUs"
        )
        bench("sqlite", f"sqlite:///{workdir / 'vulndb.db'}", export, count, workdir)
        if args.postgresql:
            bench("postgresql", args.postgresql, export, count, workdir)


if __name__ == "__main__":
    main()
