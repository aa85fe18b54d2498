"""`dockyard doctor`: check this node's installation (maintenance/doctor.py) and print what it found.

Only typer loads at import time: the checks and what they need load inside the command."""

from __future__ import annotations

import json
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from dockyard.config.settings import Settings
    from dockyard.maintenance.doctor import Finding, Installation

doctor_app = typer.Typer(help="Check this installation and explain what is wrong.")


class Action(StrEnum):
    pull = "pull"
    push = "push"
    delete = "delete"


_COLOURS = {"OK": "green", "WARN": "yellow", "FAIL": "red", "SKIP": "bright_black"}


ConfigFile = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="YAML config file (the one `dockyard serve` uses)."),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print the findings as JSON.")]


@doctor_app.callback(invoke_without_command=True)
def doctor(
    ctx: typer.Context,
    config: ConfigFile = None,
    as_json: AsJson = False,
) -> None:
    """Check config, database, storage, free space, Redis, TLS, clock, signing keys, uploads, GC and
    quotas; exit 1 when any check fails."""
    if ctx.invoked_subcommand is not None:
        return
    from dockyard.maintenance.doctor import Finding, failed, run_checks

    settings, config_finding = _load(config)
    findings = [config_finding]
    if settings is not None:
        installation = _installation(settings)
        try:
            findings += run_checks(installation)
        finally:
            if installation.engine is not None:
                installation.engine.dispose()
    else:
        findings.append(Finding("checks", "SKIP", "nothing else was checked: the config is not valid."))
    _render(findings, as_json)
    if failed(findings):
        raise typer.Exit(1)


def _load(config: Path | None) -> tuple[Settings | None, Finding]:
    from dockyard.config.loader import config_error_message, config_path_from_env, load_config
    from dockyard.errors import ConfigError
    from dockyard.maintenance.doctor import Finding

    path = config or config_path_from_env()
    try:
        loaded = load_config(path)
    except ConfigError as exc:
        return None, Finding(
            "config", "FAIL", f"the config is not valid: {config_error_message(exc)}", "fix the key named."
        )
    source = f"{path}" if path else "defaults and DOCKYARD_* variables (no config file)"
    if loaded.warnings:
        return loaded.settings, Finding(
            "config", "WARN", f"read {source}; {'; '.join(loaded.warnings)}.", "remove or fix those keys."
        )
    return loaded.settings, Finding("config", "OK", f"read {source}.")


def _installation(settings: Settings) -> Installation:
    from dockyard.maintenance.doctor import Installation

    installation = Installation(settings=settings, engine=None, driver=None)
    try:
        from dockyard.db.engine import build_engine

        installation.engine = build_engine(settings.database_url)
    except Exception as exc:  # the database check reports it
        installation.database_error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    root = settings.storage_root
    if settings.storage.driver_name == "filesystem" and not root.is_dir():
        # The driver would create it: doctor only looks, and serve made it at start.
        installation.driver_error = f"{root} is not a directory"
        return _with_extras(installation, settings)
    try:
        from dockyard.services import build_driver_from

        installation.driver = build_driver_from(settings)
    except Exception as exc:  # the storage check reports it
        installation.driver_error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return _with_extras(installation, settings)


def _with_extras(installation: Installation, settings: Settings) -> Installation:
    if settings.redis.url:
        installation.redis_ping = _redis_ping(settings.redis.url)
    installation.key_passphrases = _key_passphrases(settings)
    return installation


def _redis_ping(url: str) -> Callable[[], None]:
    from dockyard.registry.cache_redis import connect

    client = connect(url)

    def ping() -> None:
        client.ping()

    return ping


def _key_passphrases(settings: Settings) -> list[bytes | None]:
    """What the signing keys may be sealed under, as serve computes it, without creating the datadir's
    secret file when there is none (doctor only looks)."""
    from dockyard.bootstrap import KEY_SECRET_FILE, signing_key_passphrases

    if not settings.http.secret and not (settings.datadir / KEY_SECRET_FILE).is_file():
        return [None]
    passphrase, older = signing_key_passphrases(settings)
    return [passphrase, *older]


def _render(findings: list[Finding], as_json: bool, totals: bool = True) -> None:
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "ok": not any(f.verdict == "FAIL" for f in findings),
                    "checks": [f.as_dict() for f in findings],
                },
                indent=2,
            )
        )
        return
    width = max(len(f.check) for f in findings)
    for finding in findings:
        verdict = typer.style(f"{finding.verdict:<4}", fg=_COLOURS[finding.verdict], bold=True)
        typer.echo(f"{verdict}  {finding.check:<{width}}  {finding.summary}")
        if finding.action:
            typer.echo(f"      {'':<{width}}  -> {finding.action}")
    if not totals:
        return
    counts = {v: sum(f.verdict == v for f in findings) for v in ("OK", "WARN", "FAIL")}
    typer.echo(f"\n{counts['OK']} ok, {counts['WARN']} warning(s), {counts['FAIL']} failure(s)")


@doctor_app.command("why-denied")
def why_denied(
    who: Annotated[str, typer.Argument(help="A user name, or a robot's full name (robot$team+ci).")],
    repository: Annotated[str, typer.Argument(help="The repository, e.g. team/app.")],
    action: Annotated[Action, typer.Option("--action", "-a", help="What was refused.")] = Action.push,
    config: ConfigFile = None,
    as_json: AsJson = False,
) -> None:
    """Explain why WHO may not pull, push or delete in REPOSITORY (a 403), from the same permission
    rules the registry applies; exit 1 when the action is refused."""
    from dockyard.cli.main import _settings
    from dockyard.db.engine import build_engine
    from dockyard.db.session import Database
    from dockyard.maintenance.why_denied import explain_access

    settings = _settings(config)
    db = Database(build_engine(settings.database_url))
    try:
        explanation = explain_access(db, settings, who, repository, action.value)
    finally:
        db.dispose()
    findings = explanation.findings
    verdict = "may" if explanation.allowed else "may not"
    if as_json:
        typer.echo(
            json.dumps({"allowed": explanation.allowed, "checks": [f.as_dict() for f in findings]}, indent=2)
        )
    else:
        _render(findings, as_json=False, totals=False)
        typer.echo(f"\n{who} {verdict} {action.value} {repository}.")
    if not explanation.allowed:
        raise typer.Exit(1)


@doctor_app.command("disk")
def disk(
    config: ConfigFile = None,
    as_json: AsJson = False,
) -> None:
    """Why is the disk full: what is stored, the largest projects, what garbage collection would free
    (a dry run: nothing is deleted) and which projects have a retention policy."""
    from dockyard.cli.main import _settings
    from dockyard.db.engine import build_engine
    from dockyard.db.session import Database
    from dockyard.maintenance.disk import disk_report
    from dockyard.maintenance.doctor import Installation, check_free_space
    from dockyard.services import build_driver_from

    settings = _settings(config)
    db = Database(build_engine(settings.database_url))
    try:
        findings = disk_report(db, build_driver_from(settings)).findings()
    finally:
        db.dispose()
    findings.insert(0, check_free_space(Installation(settings=settings, engine=None, driver=None)))
    if as_json:
        typer.echo(json.dumps({"checks": [f.as_dict() for f in findings]}, indent=2))
    else:
        _render(findings, as_json=False, totals=False)


@doctor_app.command("slow")
def slow(
    config: ConfigFile = None,
    url: Annotated[
        str | None,
        typer.Option(
            "--url", help="The metrics URL (default: this node's, from metrics.listen or http.addr)."
        ),
    ] = None,
    top: Annotated[int, typer.Option("--top", help="How many routes to show.", min=1)] = 10,
    as_json: AsJson = False,
) -> None:
    """Which requests are slow: per route and method, from this node's metrics since it started
    (request count, mean and 95th percentile), slowest first. Reads `metrics.token` from the config."""
    import httpx

    from dockyard.cli.main import _settings
    from dockyard.maintenance.slow import route_latencies, slow_findings

    settings = _settings(config)
    target = url or _metrics_url(settings)
    headers = {"Authorization": f"Bearer {settings.metrics.token}"} if settings.metrics.token else {}
    loopback = httpx.URL(target).host in ("127.0.0.1", "::1", "localhost")
    try:
        # This node's own listener on loopback: its certificate is for the public name, not 127.0.0.1.
        answer = httpx.get(target, headers=headers, timeout=10, verify=not loopback)
    except httpx.HTTPError as exc:
        typer.echo(f"dockyard: could not read {target}: {exc}", err=True)
        raise typer.Exit(1) from None
    if answer.status_code != 200:
        hint = " (set metrics.token in the config, or metrics.public)" if answer.status_code == 401 else ""
        typer.echo(f"dockyard: {target} answered {answer.status_code}{hint}", err=True)
        raise typer.Exit(1)
    findings = slow_findings(route_latencies(answer.text), top)
    if as_json:
        typer.echo(json.dumps({"url": target, "checks": [f.as_dict() for f in findings]}, indent=2))
    else:
        _render(findings, as_json=False, totals=False)


def _metrics_url(settings: Settings) -> str:
    from dockyard.config.settings import split_addr

    if settings.metrics.listen:
        host, port = split_addr(settings.metrics.listen)
        scheme = "http"
    else:
        host, port = split_addr(settings.http.addr)
        scheme = "https" if settings.http.tls.enabled else "http"
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1" if host != "::" else "::1"
    return f"{scheme}://{'[' + host + ']' if ':' in host else host}:{port}/metrics"
