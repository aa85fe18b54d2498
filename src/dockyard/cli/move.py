"""`dockyard move` (carry a running registry onto another database and storage) and `dockyard
read-only` (the runtime switch the move uses, for an operator's own maintenance windows too).

Only typer loads at import time: the server-side modules load inside each command."""

from __future__ import annotations

import os
import time
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from dockyard.cli.maintenance import ConfigOption, _progress, _run, _settings

if TYPE_CHECKING:
    from dockyard.config.settings import Settings, StorageSettings
    from dockyard.maintenance.move import MoveResult

move_app = typer.Typer()
TO_DATABASE_ENV = "DOCKYARD_MOVE_TO_DATABASE"


@move_app.command("move")
def move_command(
    config: ConfigOption = None,
    to_database: Annotated[
        str | None,
        typer.Option(
            "--to-database",
            envvar=TO_DATABASE_ENV,
            help="The new database.url, an empty PostgreSQL database (or SQLite file). From "
            f"${TO_DATABASE_ENV} when not given, to keep its password off the command line.",
            show_envvar=False,
        ),
    ] = None,
    to_storage: Annotated[
        Path | None,
        typer.Option(
            "--to-storage",
            help="A YAML file with the new `storage:` section, as `serve` reads it (the new config "
            "file itself will do). Read as written, without environment variables.",
        ),
    ] = None,
    blobs_only: Annotated[
        bool,
        typer.Option("--blobs-only", help="Copy the blobs only, no read-only window; run it again later."),
    ] = False,
    write_config: Annotated[
        Path | None,
        typer.Option("--write-config", help="Write the new config file here: the old one with the changes."),
    ] = None,
    jobs: Annotated[int, typer.Option("--jobs", min=1, max=64, help="Blobs copied at once.")] = 4,
    window_timeout: Annotated[
        float,
        typer.Option("--window-timeout", min=1, help="Seconds writes in flight may delay the window."),
    ] = 60.0,
) -> None:
    """Carry this registry onto another database and/or blob storage while it serves: the blobs first
    (resumable), then a short read-only window for the metadata and the last blobs. Then restart it
    on the new config (the report says what to change)."""
    from dockyard.db.engine import build_engine
    from dockyard.db.readonly import ReadOnlyFlag, deployment_identity
    from dockyard.maintenance.move import MovePlan, move
    from dockyard.services import build_driver_from

    if to_database is None and to_storage is None:
        raise typer.BadParameter("name --to-database, --to-storage, or both", param_hint="--to-database")
    if write_config is not None and write_config.exists():
        raise typer.BadParameter(f"{write_config} exists already", param_hint="--write-config")
    settings = _settings(config)
    target_settings = _target_settings(settings, to_database, to_storage)
    source_identity, target_identity = deployment_identity(settings), deployment_identity(target_settings)
    if source_identity == target_identity:
        raise typer.BadParameter("the target is the database and storage this registry uses already")
    flag = ReadOnlyFlag.for_settings(settings)
    if flag.is_on() and not blobs_only:
        state = flag.state()
        _fail(
            f"this registry is read-only already ({state.reason if state else ''}): if that is a finished "
            "move, restart on its new config; else `dockyard read-only off` first"
        )
    plan = MovePlan(
        source=build_engine(settings.database_url),
        source_driver=_run(lambda: build_driver_from(settings)),
        flag=flag,
        target=build_engine(to_database) if to_database else None,
        target_driver=_run(lambda: build_driver_from(target_settings)) if to_storage else None,
        reason=f"moved to {target_identity} on {time.strftime('%Y-%m-%d %H:%M %Z')}: serve the new config",
        workers=jobs,
        window_timeout=window_timeout,
    )
    started = time.monotonic()
    try:
        with _progress() as progress:
            result = _run(lambda: _move_or_explain(move, plan, progress, blobs_only))
    finally:
        plan.source.dispose()
        if plan.target is not None:
            plan.target.dispose()
    if blobs_only:
        typer.echo(
            f"copied {result.blobs_copied} of {result.blobs} blobs ({result.bytes_copied} bytes) in "
            f"{time.monotonic() - started:.1f} s; the registry kept serving. Run `dockyard move` again "
            "without --blobs-only to finish: it copies only what is new."
        )
    else:
        if write_config is not None:
            _write_new_config(config, to_database, to_storage, write_config)
        seconds = time.monotonic() - started
        typer.echo(_report(result, settings, to_database, to_storage, write_config, seconds))
    for problem in result.problems.items:
        typer.echo(f"problem: {problem}", err=True)
    if result.problems:
        raise typer.Exit(1)


class Switch(StrEnum):
    on = "on"
    off = "off"
    status = "status"


@move_app.command("read-only")
def read_only_command(
    action: Annotated[Switch, typer.Argument(help="on, off, or status.")] = Switch.status,
    reason: Annotated[str, typer.Option("--reason", help="Shown by `status` and at start.")] = "",
    config: ConfigOption = None,
) -> None:
    """Switch this node's registry to read-only and back, while it runs: pulls go on, pushes and
    other writes are refused. `on` returns once the writes in flight have ended."""
    from dockyard.db.engine import build_engine
    from dockyard.db.readonly import ReadOnlyFlag, wait_for_writers

    settings = _settings(config)
    flag = ReadOnlyFlag.for_settings(settings)
    if action is Switch.on:
        flag.turn_on(reason or "switched on by `dockyard read-only on`")
        engine = build_engine(settings.database_url)
        try:
            wait_for_writers(engine, timeout=60)
        except TimeoutError as exc:
            _fail(f"read-only, but {exc}: they may still commit")
        finally:
            engine.dispose()
        typer.echo("read-only: no more writes commit; pulls go on")
    elif action is Switch.off:
        if flag.turn_off():
            typer.echo("writable again")
        else:
            _echo_state(flag, settings)
    else:
        _echo_state(flag, settings)


def _echo_state(flag: Any, settings: Settings) -> None:
    state = flag.state()
    if flag.is_on():
        typer.echo(f"read-only since {state.since}: {state.reason}")
    elif settings.storage.maintenance.readonly.enabled:
        typer.echo("read-only by configuration (storage.maintenance.readonly.enabled)")
    elif state is not None:
        typer.echo(f"writable ({flag.path} names another deployment: {state.deployment})")
    else:
        typer.echo("writable")


# --- helpers ----------------------------------------------------------------------------------
def _move_or_explain(move: Any, plan: Any, progress: Any, blobs_only: bool) -> MoveResult:
    from dockyard.maintenance.interfaces import MaintenanceError

    try:
        result: MoveResult = move(plan, progress, blobs_only)
    except TimeoutError as exc:
        raise MaintenanceError(f"{exc}: the move stopped and the registry takes writes again") from exc
    return result


def _target_settings(settings: Settings, to_database: str | None, to_storage: Path | None) -> Settings:
    """The source's settings with the target's database and storage: what the new config serves."""
    from dockyard.config.settings import DatabaseSettings

    update: dict[str, Any] = {}
    if to_database is not None:
        update["database"] = _run(lambda: DatabaseSettings(url=to_database))
    if to_storage is not None:
        update["storage"] = _target_storage(to_storage)
    return settings.model_copy(update=update)


def _target_storage(path: Path) -> StorageSettings:
    from dockyard.config.loader import load_config

    storage = _run(lambda: load_config(path, environ={})).settings.storage
    if storage.driver_name == "inmemory":
        _fail(f"{path}: storage.inmemory keeps nothing: name a storage to move to")
    filesystem = storage.filesystem
    if storage.driver_name == "filesystem" and (filesystem is None or not filesystem.rootdirectory):
        _fail(f"{path}: storage.filesystem.rootdirectory must be set for a move")
    return storage


def _raw_yaml(path: Path | None) -> dict[str, Any]:
    import yaml

    if path is None:
        return {}
    data = yaml.safe_load(path.read_text()) or {}
    return data if isinstance(data, dict) else {}


def _new_config(old: Path | None, to_database: str | None, to_storage: Path | None) -> dict[str, Any]:
    data = _raw_yaml(old)
    if to_database is not None:
        data["database"] = {**(data.get("database") or {}), "url": to_database}
    if to_storage is not None:
        from dockyard.config.storage_settings import DRIVER_NAMES  # pydantic: not on every CLI start

        storage = {k: v for k, v in (data.get("storage") or {}).items() if k not in DRIVER_NAMES}
        data["storage"] = {**storage, **(_raw_yaml(to_storage).get("storage") or {})}
    return data


def _write_new_config(old: Path | None, to_database: str | None, to_storage: Path | None, dest: Path) -> None:
    import yaml

    text = yaml.safe_dump(_new_config(old, to_database, to_storage), sort_keys=False)
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # it holds the secrets the old one did
    with os.fdopen(fd, "w") as file:
        file.write(text)


def _masked(data: Any) -> Any:
    if isinstance(data, dict):
        return {
            key: "********" if key in ("secretkey", "accesskey", "password") and value else _masked(value)
            for key, value in data.items()
        }
    return data


def _report(
    result: MoveResult,
    settings: Settings,
    to_database: str | None,
    to_storage: Path | None,
    written: Path | None,
    seconds: float,
) -> str:
    import yaml

    from dockyard.observability.logging import redact_url

    tables = f"{len(result.rows)} tables ({sum(result.rows.values())} rows), " if result.rows else ""
    lines = [
        f"moved in {seconds:.1f} s, read-only for the last {result.window_seconds or 0:.1f} s: {tables}"
        f"{result.blobs} blobs ({result.blobs_copied} copied, {result.bytes_copied} bytes), "
        f"{result.uploads_carried} unfinished uploads carried over, {len(result.uploads_dropped)} dropped",
        "",
        "This registry is read-only now: pulls work, pushes are refused (405 UNSUPPORTED).",
        f"Restart it on the new config{f' (written to {written})' if written else ''}. What changes:",
        "",
    ]
    changes: dict[str, Any] = {}
    if to_database is not None:
        changes["database"] = {"url": redact_url(to_database)}
    if to_storage is not None:
        changes["storage"] = _masked(_raw_yaml(to_storage).get("storage") or {})
    lines += ["    " + line for line in yaml.safe_dump(changes, sort_keys=False).rstrip().splitlines()]
    if to_storage is not None:
        lines.append(f"    (the storage section of {to_storage}; keep delete, maintenance, redirect)")
    lines += ["", "On every node of the new setup:"]
    if settings.http.secret:
        lines.append("  - keep http.secret as it is: it signs sessions and encrypts the token signing keys")
    else:
        files = ("session-secret", "signing-key-secret")
        secrets = " and ".join(str(settings.datadir / name) for name in files)
        lines += [
            f"  - copy {secrets} into each node's datadir (mode 0600): the first signs the management",
            "    sessions (else users sign in again), the second opens the token signing keys (else each",
            "    node signs with a new key of its own; tokens issued before stay valid either way)",
        ]
    lines += [
        "  - with more than one node, set redis.url (docs/ha.md)",
        f"  - then: dockyard serve --config {written or 'NEW-CONFIG'}",
        "",
        "To stay on this one instead: `dockyard read-only off` (the target gets none of the later changes).",
    ]
    return "\n".join(lines)


def _fail(message: str) -> None:
    typer.echo(f"dockyard: {message}", err=True)
    raise typer.Exit(1)
