"""`dockyard vulndb`: import OSV advisories offline, show the database's version, match, allowlist.

Runs on the metadata database of the config `serve` reads (like `db upgrade`), so it works on an
air-gapped node: copy the osv.dev exports over, then `dockyard vulndb import all.zip ...`.
Only typer loads at import time: the server-side modules load inside the commands.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

if TYPE_CHECKING:
    from dockyard.vulndb.services import VulnDB

vulndb_app = typer.Typer(help="The offline vulnerability database (OSV advisories).", no_args_is_help=True)

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="YAML config file (dockyard's or a registry:2 config.yml)."),
]
ProjectOption = Annotated[
    str | None, typer.Option("--project", "-p", help="A project's allowlist (default: system-wide).")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _vulndb(config: Path | None) -> VulnDB:
    from dockyard.audit.services import AuditLog
    from dockyard.cli.main import _settings
    from dockyard.db.engine import build_engine
    from dockyard.db.migrate import upgrade
    from dockyard.db.session import Database
    from dockyard.vulndb.services import VulnDB

    engine = build_engine(_settings(config).database_url)
    upgrade(engine)  # idempotent; the tables exist before the first import even on a fresh database
    db = Database(engine)
    return VulnDB(db, audit=AuditLog(db))  # changes are recorded in their own transactions


def _recount(vulndb: VulnDB, project: str | None, config: Path | None) -> None:
    """Stored scans count allowlisted findings apart: a job applies the changed allowlist to them."""
    _queue_scan(vulndb, {"recount": project or "*"}, config)


def _queue_scan(vulndb: VulnDB, params: dict[str, str], config: Path | None) -> int:
    """Queue a `scan` job on the servers' feed: their job workers start it at once."""
    from dockyard.cli.main import _settings
    from dockyard.cli.trust import servers_feed
    from dockyard.jobs.queue import JobQueue

    with servers_feed(_settings(config)) as feed:
        return JobQueue(vulndb.db, feed=feed).enqueue("scan", params)


def _actor() -> str:
    """This machine's user: a local command has no dockyard account, and the log must say who."""
    import getpass
    import os

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no passwd entry for this uid (containers)
        return f"cli:{os.getuid()}"


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"dockyard: {message}", err=True)
    raise typer.Exit(code)


def _dump(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=lambda v: v.isoformat())


@vulndb_app.command("import")
def import_(
    paths: Annotated[
        list[Path], typer.Argument(help="OSV JSON/YAML files, directories of them, zip exports.")
    ],
    source: Annotated[
        str | None, typer.Option(help="What to record as the source (default: the paths).")
    ] = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
    rescan_stale: Annotated[
        bool,
        typer.Option(
            "--rescan/--no-rescan",
            help="When the database changed, queue a job that rescans the artifacts scanned before.",
        ),
    ] = True,
) -> None:
    """Import OSV advisories (one transaction: on an error nothing is imported)."""
    from dockyard.errors import DockyardError

    vulndb = _vulndb(config)
    rescan: int | None = None
    try:
        report = vulndb.import_paths(paths, source=source, actor=_actor())
        if report.changed and rescan_stale:
            # Stored scans made with the older database are scanned again, on a job worker (scans.tasks).
            rescan = _queue_scan(vulndb, {"rescan": "stale"}, config)
    except DockyardError as exc:
        _fail(f"import refused, nothing imported: {exc.message}")
    finally:
        vulndb.db.dispose()
    if as_json:
        typer.echo(_dump({**report.as_dict(), "rescan_job": rescan}))
        return
    rate = report.documents / report.seconds if report.seconds else 0.0
    typer.echo(
        f"read {report.documents} advisories in {report.seconds:.1f} s ({rate:.0f}/s): "
        f"{report.added} added, {report.updated} updated, {report.unchanged} unchanged; "
        f"{report.affected} affected-package rows written"
        + (f"; {report.ignored} other files ignored" if report.ignored else "")
    )
    state = "now at" if report.changed else "unchanged at"
    typer.echo(f"database {state} version {report.version}: {report.advisories_total} advisories")
    if rescan is not None:
        typer.echo(f"queued job {rescan}: rescan the artifacts scanned with an older version")


@vulndb_app.command("status")
def status(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """The database's version, its size per ecosystem, and the last import."""
    vulndb = _vulndb(config)
    try:
        state = vulndb.status()
    finally:
        vulndb.db.dispose()
    if as_json:
        typer.echo(_dump(state.as_dict()))
        return
    if not state.version:
        typer.echo("no advisories imported yet: dockyard vulndb import PATH...")
        return
    change = state.last_change or {}
    typer.echo(f"version {state.version} (imported {change.get('finished_at')} from {change.get('source')})")
    typer.echo(
        f"{state.advisories} advisories ({state.withdrawn} withdrawn), {state.affected} affected packages"
    )
    for eco, count in state.by_ecosystem.items():
        typer.echo(f"  {eco}: {count}")


@vulndb_app.command("match")
def match(
    ecosystem: Annotated[
        str, typer.Argument(help='OSV ecosystem, e.g. "PyPI", "Debian:12", "Alpine:v3.20".')
    ],
    name: Annotated[str, typer.Argument(help="Package name (for distributions: the source package).")],
    version: Annotated[str, typer.Argument(help="Installed version.")],
    project: ProjectOption = None,
    show_allowlisted: Annotated[bool, typer.Option(help="Also list allowlisted findings.")] = False,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """The advisories that affect one package version."""
    from dockyard.errors import DockyardError
    from dockyard.vulndb.interfaces import Package

    vulndb = _vulndb(config)
    try:
        findings = vulndb.match([Package(ecosystem, name, version)], project, show_allowlisted)
    except DockyardError as exc:
        _fail(exc.message)
    finally:
        vulndb.db.dispose()
    if as_json:
        typer.echo(_dump([f.as_dict() for f in findings]))
        return
    for f in findings:
        fixed = ", ".join(f.fixed_versions) or "no fix"
        aliases = f" ({', '.join(f.aliases)})" if f.aliases else ""
        mark = " [allowlisted]" if f.allowlisted else ""
        typer.echo(f"{f.severity:8} {f.advisory_id}{aliases}: fixed in {fixed}{mark}  {f.summary}")
    typer.echo(f"{len(findings)} advisories affect {name} {version}")


@vulndb_app.command("allow")
def allow(
    vuln_id: Annotated[str, typer.Argument(help="A CVE or advisory id (matched against ids and aliases).")],
    project: ProjectOption = None,
    expires: Annotated[
        str | None, typer.Option(help="Until when (ISO 8601 date or time, UTC unless given).")
    ] = None,
    reason: Annotated[str, typer.Option(help="Why it is accepted.")] = "",
    config: ConfigOption = None,
) -> None:
    """Accept a vulnerability system-wide or in one project, optionally until a date."""
    from dockyard.errors import DockyardError

    expires_at = None
    if expires is not None:
        try:
            expires_at = datetime.fromisoformat(expires)
        except ValueError:
            _fail(f"--expires: not an ISO 8601 date or time: {expires!r}", 2)
        if expires_at.tzinfo is None:
            expires_at = expires_at.replace(tzinfo=UTC)
    vulndb = _vulndb(config)
    try:
        entry = vulndb.allow(vuln_id, project, expires_at, reason, _actor())
        _recount(vulndb, project, config)
    except DockyardError as exc:
        _fail(exc.message)
    finally:
        vulndb.db.dispose()
    scope = f"in project {project}" if project else "system-wide"
    until = f" until {entry.expires_at.isoformat()}" if entry.expires_at else ""
    typer.echo(f"{entry.vuln_id} allowlisted {scope}{until}")


@vulndb_app.command("disallow")
def disallow(
    vuln_id: Annotated[str, typer.Argument(help="The id as allowlisted.")],
    project: ProjectOption = None,
    config: ConfigOption = None,
) -> None:
    """Remove an allowlist entry."""
    from dockyard.errors import DockyardError

    vulndb = _vulndb(config)
    try:
        removed = vulndb.disallow(vuln_id, project, _actor())
        if removed:
            _recount(vulndb, project, config)
    except DockyardError as exc:
        _fail(exc.message)
    finally:
        vulndb.db.dispose()
    if not removed:
        _fail(f"{vuln_id} is not allowlisted {'in project ' + project if project else 'system-wide'}")
    typer.echo(f"{vuln_id.upper()} removed from the allowlist")


@vulndb_app.command("allowlist")
def allowlist(
    project: ProjectOption = None, config: ConfigOption = None, as_json: JsonOption = False
) -> None:
    """List the allowlist (system-wide, or one project's)."""
    from dockyard.errors import DockyardError

    vulndb = _vulndb(config)
    try:
        entries = vulndb.allowlist(project)
    except DockyardError as exc:
        _fail(exc.message)
    finally:
        vulndb.db.dispose()
    if as_json:
        typer.echo(_dump([e.as_dict() for e in entries]))
        return
    now = datetime.now(UTC)
    for e in entries:
        until = "no expiry" if e.expires_at is None else f"until {e.expires_at.isoformat()}"
        if e.expires_at is not None and e.expires_at <= now:
            until = f"EXPIRED {e.expires_at.isoformat()}"
        typer.echo(f"{e.vuln_id}  {until}  {e.reason}")
