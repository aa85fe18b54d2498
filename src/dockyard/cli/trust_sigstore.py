"""`dockyard trust sigstore`: the Sigstore trusted roots (per project or system-wide) and a project's
identity policies that keyless (cosign `--new-bundle-format`) signatures verify against
(docs/security.md, "Sigstore keyless signatures"). Same database as `dockyard trust key`; the API has
them under /api/v1/projects/{project}/sigstore/... and /api/v1/sigstore/trust-roots."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from dockyard.cli.trust import ConfigOption, JsonOption, _dump, _fail, _reverify, _tell_servers, servers_feed

sigstore_app = typer.Typer(
    help="Keyless signatures: Sigstore trusted roots and who may sign (SAN + OIDC issuer).",
    no_args_is_help=True,
)
root_app = typer.Typer(help="Sigstore trusted roots (trusted_root.json).", no_args_is_help=True)
identity_app = typer.Typer(help="Who may sign a project's artifacts keyless.", no_args_is_help=True)
sigstore_app.add_typer(root_app, name="root")
sigstore_app.add_typer(identity_app, name="identity")

ProjectOption = Annotated[str | None, typer.Option("--project", "-p", help="The project.")]
SystemOption = Annotated[bool, typer.Option("--system", help="The system-wide trusted roots.")]


def _trust(config: Path | None) -> Any:
    from dockyard.cli.main import _settings
    from dockyard.db.engine import build_engine
    from dockyard.db.session import Database
    from dockyard.signatures.sigstore_trust import SigstoreTrust

    settings = _settings(config)
    return SigstoreTrust(Database(build_engine(settings.database_url)), lambda: _tell_servers(settings))


def _scope(project: str | None, system: bool) -> str | None:
    if system == (project is not None):
        _fail("name a project, or give --system (not both)", 2)
    return project


def _change(config: Path | None, project: str | None, change: Callable[[Any], Any]) -> Any:
    """Run `change` on the trust store, then verify the scope's artifacts again (everywhere for the
    system-wide roots); a refused change exits with its message."""
    from dockyard.errors import DockyardError

    try:
        result = change(_trust(config))
    except DockyardError as exc:
        _fail(exc.message)
    _reverify_scope(config, project)
    return result


def _reverify_scope(config: Path | None, project: str | None) -> None:
    if project is not None:
        _reverify(config, project)
        return
    from dockyard.cli.main import _settings
    from dockyard.db.engine import build_engine
    from dockyard.db.session import Database
    from dockyard.jobs.queue import JobQueue
    from dockyard.signatures.tasks import queue_reverification_everywhere

    settings = _settings(config)
    db = Database(build_engine(settings.database_url))
    with servers_feed(settings) as feed:  # the servers' job workers start them now, not at their next poll
        if queued := queue_reverification_everywhere(db, JobQueue(db, feed=feed).enqueue):
            typer.echo(f"{queued} projects require signatures: their artifacts are verified again (jobs)")


@root_app.command("list")
def list_roots(
    project: ProjectOption = None,
    system: SystemOption = False,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """The trusted roots of a project (or the system-wide ones): their CAs and logs."""
    from dockyard.errors import DockyardError

    scope = _scope(project, system)
    try:
        roots = [root.as_dict() for root in _trust(config).roots(scope)]
    except DockyardError as exc:
        _fail(exc.message)
    if as_json:
        typer.echo(_dump(roots))
        return
    typer.echo(f"{scope or 'system-wide'}: {len(roots)} Sigstore trust roots")
    for root in roots:
        cas = ", ".join(ca["uri"] or ca["subject"] for ca in root["certificate_authorities"])
        logs = ", ".join(log["url"] for log in root["tlogs"])
        typer.echo(f"  {root['name']}  CAs: {cas}  logs: {logs}  added by {root['created_by']}")


@root_app.command("add")
def add_root(
    name: Annotated[str, typer.Argument(help="A name for the trust root (letters, digits, . _ - @).")],
    path: Annotated[Path, typer.Argument(help="The trusted_root.json file; - for stdin.")],
    project: ProjectOption = None,
    system: SystemOption = False,
    config: ConfigOption = None,
) -> None:
    """Import a trusted_root.json (replacing the one of that name) for a project or system-wide."""
    scope = _scope(project, system)
    try:
        document = sys.stdin.read() if str(path) == "-" else path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        _fail(f"{path}: {exc}")
    root = _change(config, scope, lambda trust: trust.put_root(scope, name, document, "cli"))
    summary = root.as_dict()
    cas, tlogs, ctlogs = (len(summary[k]) for k in ("certificate_authorities", "tlogs", "ctlogs"))
    typer.echo(
        f"{scope or 'system-wide'}: trusts Sigstore root {name} "
        f"({cas} CAs, {tlogs} transparency logs, {ctlogs} CT logs)"
    )


@root_app.command("delete")
def delete_root(
    name: Annotated[str, typer.Argument(help="The trust root's name.")],
    project: ProjectOption = None,
    system: SystemOption = False,
    config: ConfigOption = None,
) -> None:
    """Stop trusting a Sigstore trust root."""
    scope = _scope(project, system)
    _change(config, scope, lambda trust: trust.delete_root(scope, name))
    typer.echo(f"{scope or 'system-wide'}: no longer trusts Sigstore root {name}")


@identity_app.command("list")
def list_identities(
    project: Annotated[str, typer.Argument(help="The project.")],
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Who may sign the project's artifacts keyless."""
    from dockyard.errors import DockyardError

    try:
        found = [identity.as_dict() for identity in _trust(config).identities(project)]
    except DockyardError as exc:
        _fail(exc.message)
    if as_json:
        typer.echo(_dump(found))
        return
    typer.echo(f"{project}: {len(found)} identities")
    for identity in found:
        san = identity["san"] if identity["san"] is not None else f"~ {identity['san_regex']}"
        typer.echo(f"  {identity['name']}  SAN {san}  issuer {identity['issuer']}")


@identity_app.command("add")
def add_identity(
    project: Annotated[str, typer.Argument(help="The project.")],
    name: Annotated[str, typer.Argument(help="A name for the identity (letters, digits, . _ - @).")],
    issuer: Annotated[str, typer.Option("--issuer", help="The OIDC issuer, exactly.")],
    san: Annotated[str | None, typer.Option("--san", help="The certificate's SAN, exactly.")] = None,
    san_regex: Annotated[
        str | None, typer.Option("--san-regex", help="A regular expression the SAN matches as a whole.")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Trust keyless signatures by this identity (cosign's --certificate-identity[-regexp] and
    --certificate-oidc-issuer)."""
    _change(config, project, lambda trust: trust.add_identity(project, name, issuer, san, san_regex, "cli"))
    typer.echo(f"{project}: trusts keyless signatures of {name}")


@identity_app.command("delete")
def delete_identity(
    project: Annotated[str, typer.Argument(help="The project.")],
    name: Annotated[str, typer.Argument(help="The identity's name.")],
    config: ConfigOption = None,
) -> None:
    """Stop trusting an identity."""
    _change(config, project, lambda trust: trust.delete_identity(project, name))
    typer.echo(f"{project}: no longer trusts keyless signatures of {name}")
