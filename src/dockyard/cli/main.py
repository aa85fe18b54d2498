"""The `dockyard` command."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from dockyard.cli import commands_files  # noqa: F401 (adds `artifact files`, `cat` and `diff`)
from dockyard.cli.commands_artifacts import artifact_app
from dockyard.cli.commands_audit import audit_app
from dockyard.cli.commands_cache import cache_app
from dockyard.cli.commands_endpoints import endpoint_app
from dockyard.cli.commands_jobs import job_app
from dockyard.cli.commands_keys import keys_app
from dockyard.cli.commands_members import member_app
from dockyard.cli.commands_notifications import notifications_app
from dockyard.cli.commands_policies import immutable_app  # also adds `project quota`
from dockyard.cli.commands_projects import project_app
from dockyard.cli.commands_replication import replication_app
from dockyard.cli.commands_repos import repo_app
from dockyard.cli.commands_retention import retention_app
from dockyard.cli.commands_robots import robot_app
from dockyard.cli.commands_scanners import scanner_app
from dockyard.cli.commands_session import session_app
from dockyard.cli.commands_tags import tag_app
from dockyard.cli.commands_tokens import token_app
from dockyard.cli.commands_users import user_app
from dockyard.cli.commands_webhooks import webhook_app
from dockyard.cli.doctor import doctor_app
from dockyard.cli.gc import gc_app
from dockyard.cli.inventory import inventory_app
from dockyard.cli.maintenance import maintenance_app
from dockyard.cli.move import move_app
from dockyard.cli.scan import scan_app
from dockyard.cli.trust import trust_app
from dockyard.cli.trust_sigstore import sigstore_app
from dockyard.cli.vulndb import vulndb_app

if (
    TYPE_CHECKING
):  # the server-side modules load only for the commands that need them: CLI start-up stays fast
    from dockyard.config.settings import Settings
    from dockyard.errors import ConfigError

app = typer.Typer(no_args_is_help=True, add_completion=False, help="dockyard: a self-hosted OCI registry.")
config_app = typer.Typer(no_args_is_help=True, help="Inspect configuration.")
db_app = typer.Typer(no_args_is_help=True, help="Manage the metadata database.")
app.add_typer(config_app, name="config")
app.add_typer(db_app, name="db")
app.add_typer(session_app)  # login, logout, whoami
app.add_typer(user_app, name="user")
app.add_typer(project_app, name="project")
app.add_typer(immutable_app, name="immutable")
app.add_typer(member_app, name="member")
app.add_typer(robot_app, name="robot")
app.add_typer(token_app, name="token")
app.add_typer(endpoint_app, name="endpoint")
app.add_typer(scanner_app, name="scanner")
app.add_typer(cache_app, name="cache")
app.add_typer(notifications_app, name="notifications")
app.add_typer(webhook_app, name="webhook")
app.add_typer(repo_app, name="repo")
app.add_typer(artifact_app, name="artifact")
app.add_typer(tag_app, name="tag")
app.add_typer(retention_app, name="retention")
app.add_typer(replication_app, name="replication")
app.add_typer(audit_app)  # audit
app.add_typer(job_app, name="job")
app.add_typer(keys_app, name="keys")
app.add_typer(maintenance_app)  # backup, restore, verify, import-registry2
app.add_typer(move_app)  # move, read-only
app.add_typer(gc_app)  # garbage-collect
app.add_typer(inventory_app)  # inventory
app.add_typer(scan_app)  # scan
app.add_typer(doctor_app, name="doctor")
app.add_typer(vulndb_app, name="vulndb")
app.add_typer(trust_app, name="trust")  # signing keys of projects, signature verdicts
trust_app.add_typer(sigstore_app, name="sigstore")  # Sigstore trust roots, identities (keyless)

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="YAML config file (dockyard's or a registry:2 config.yml)."),
]


def _settings(config: Path | None) -> Settings:
    from dockyard.config.loader import config_path_from_env, load_settings
    from dockyard.datadir import private_umask
    from dockyard.errors import ConfigError

    # Every command that reads the server's settings works on its data: what it creates is private.
    private_umask()
    try:
        return load_settings(config or config_path_from_env())
    except ConfigError as exc:
        typer.echo(f"dockyard: {_config_message(exc)}", err=True)
        raise typer.Exit(2) from None


@app.command()
def serve(
    config: ConfigOption = None,
    config_file: Annotated[
        Path | None, typer.Argument(help="Config file, as `registry serve` takes it.")
    ] = None,
) -> None:
    """Run the registry."""
    from dockyard.cli.server import exec_server
    from dockyard.config.loader import config_path_from_env

    path = config or config_file or config_path_from_env()
    settings = _settings(path)  # a bad config stops here, as for every command
    exec_server(settings, path)  # the server runs without the CLI's modules, on these settings


@app.command()
def worker(
    config: ConfigOption = None,
    node: Annotated[str | None, typer.Option(help="Name shown in job logs (default: the host name).")] = None,
    metrics_listen: Annotated[
        str | None,
        typer.Option(
            help="host:port to serve job metrics on (GET /metrics), e.g. 127.0.0.1:9102; "
            "default: jobs.metrics_listen, else none."
        ),
    ] = None,
) -> None:
    """Run background jobs (GC, retention, upload purging) without serving HTTP: for HA nodes."""
    from dockyard.cli.worker import run_worker
    from dockyard.config.loader import config_path_from_env
    from dockyard.config.settings import split_addr

    if metrics_listen is not None:
        try:
            split_addr(metrics_listen)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--metrics-listen") from None
    run_worker(_settings(config or config_path_from_env()), node, metrics_listen)


@config_app.command("check")
def config_check(config: ConfigOption = None) -> None:
    """Validate the configuration and print the settings in effect."""
    from dockyard.config.loader import config_path_from_env, load_config
    from dockyard.errors import ConfigError
    from dockyard.observability.logging import redact_url

    try:
        loaded = load_config(config or config_path_from_env())
    except ConfigError as exc:
        typer.echo(_config_message(exc), err=True)
        raise typer.Exit(2) from None
    for warning in loaded.warnings:
        typer.echo(f"warning: {warning}", err=True)
    settings = loaded.settings
    typer.echo(
        f"configuration OK ({'registry:2 format' if settings.is_registry2_config else 'dockyard format'})"
    )
    typer.echo(f"  listen:   {settings.http.addr}{' (TLS)' if settings.http.tls.certificate else ''}")
    s3 = settings.storage.s3
    where = f" bucket {s3.bucket}" if s3 else f" {settings.storage_root}"
    if settings.storage.driver_name == "inmemory":
        where = ""
    typer.echo(f"  storage:  {settings.storage.driver_name}{where}")
    typer.echo(f"  database: {redact_url(settings.database_url)}")
    typer.echo(f"  deletes:  {'enabled' if settings.storage.delete.enabled else 'disabled'}")
    typer.echo(f"  auth:     {_auth_description(settings)}")


@db_app.command("upgrade")
def db_upgrade(config: ConfigOption = None) -> None:
    """Apply database migrations (safe to run from several nodes at once)."""
    from dockyard.db.engine import build_engine
    from dockyard.db.migrate import current_revision, upgrade

    settings = _settings(config)
    engine = build_engine(settings.database_url)
    upgrade(engine)
    typer.echo(f"database at revision {current_revision(engine)}")


@app.command()
def cert(
    host: Annotated[str, typer.Argument(help="Host name or IP address clients use for the registry.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory for the files.")] = Path("certs"),
    port: Annotated[int, typer.Option(help="Port clients use (for the certs.d paths).")] = 5000,
    name: Annotated[
        list[str] | None, typer.Option("--name", help="Extra DNS name or IP (repeatable).")
    ] = None,
) -> None:
    """Make a private CA and a server certificate for HOST, and say where clients want the CA."""
    from dockyard.cli.cert import run_cert_command

    typer.echo(run_cert_command(host, out, port, name or []))


def _auth_description(settings: Settings) -> str:
    auth = settings.auth
    if auth.htpasswd is not None:
        return f"htpasswd ({auth.htpasswd.path})"
    if auth.token.rootcertbundle is not None:
        return f"tokens from an external issuer ({auth.token.issuer})"
    if not auth.enabled:
        return "OFF: the registry is open to anyone who can reach it"
    ldap = " + LDAP" if auth.ldap is not None else ""
    oidc = " + OpenID Connect single sign-on" if auth.oidc is not None else ""
    return "dockyard accounts and tokens" + ldap + oidc


def _config_message(exc: ConfigError) -> str:
    from dockyard.config.loader import config_error_message

    return config_error_message(exc)


def main() -> None:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(app())
