"""`dockyard backup | restore | verify | import-registry2`: offline maintenance on this node's
config (the same database and storage `serve` uses), with progress bars.

Only typer loads at import time: the server-side modules load inside each command."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from rich.progress import Progress as RichProgress

    from dockyard.config.settings import Settings
    from dockyard.services import Services

maintenance_app = typer.Typer()

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="YAML config file (dockyard's or a registry:2 config.yml)."),
]


class BarProgress:
    """The maintenance jobs' Progress, drawn as rich progress bars (one per phase)."""

    def __init__(self, bars: RichProgress) -> None:
        self._bars = bars
        self._task: Any = None

    def phase(self, description: str, total: int) -> None:
        self._task = self._bars.add_task(description, total=total)

    def advance(self, amount: int = 1) -> None:
        if self._task is not None:
            self._bars.advance(self._task, amount)


@contextlib.contextmanager
def _progress() -> Iterator[BarProgress]:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("{task.description:<16}"),
        BarColumn(),
        TextColumn("{task.percentage:>5.1f}%"),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, transient=False) as bars:
        yield BarProgress(bars)


def _settings(config: Path | None) -> Settings:
    from dockyard.cli.main import _settings as load

    return load(config)


@contextlib.contextmanager
def _services(config: Path | None) -> Iterator[Services]:
    from dockyard.services import build_services

    services = build_services(_settings(config))
    try:
        yield services
    finally:
        services.close()


def _run(job: Callable[[], Any]) -> Any:
    """Run a job; domain errors become a one-line message and exit status 1."""
    from dockyard.errors import ConfigError, DockyardError

    try:
        return job()
    except ConfigError as exc:
        typer.echo(f"dockyard: {exc.args[0] if exc.args else exc.message}", err=True)
        raise typer.Exit(2) from None
    except DockyardError as exc:
        typer.echo(f"dockyard: {exc.args[0] if exc.args else exc.message}", err=True)
        raise typer.Exit(1) from None


def _report(problems: list[str], summary: str, started: float) -> None:
    for problem in problems:
        typer.echo(f"problem: {problem}", err=True)
    typer.echo(f"{summary} in {time.monotonic() - started:.1f} s")
    if problems:
        typer.echo(f"{len(problems)} problem(s) found", err=True)
        raise typer.Exit(1)


@maintenance_app.command("backup")
def backup_command(
    dest: Annotated[
        Path, typer.Argument(help="Backup directory (blobs already there are not copied again).")
    ],
    config: ConfigOption = None,
) -> None:
    """Back up the metadata DB (a consistent snapshot) and the blobs into DEST."""
    from dockyard.maintenance.backup import backup

    started = time.monotonic()
    with _services(config) as services, _progress() as progress:
        result = _run(lambda: backup(services, dest, progress))
    _report(
        result.problems.items,
        f"backed up {result.repositories} repositories, {result.manifests} manifests, {result.tags} tags, "
        f"{result.blobs} blobs ({result.blobs_copied} new, {result.bytes_copied} bytes copied) to {dest}",
        started,
    )


@maintenance_app.command("restore")
def restore_command(
    src: Annotated[Path, typer.Argument(help="A directory `dockyard backup` wrote.")],
    config: ConfigOption = None,
    force: Annotated[
        bool,
        typer.Option("--force", help="Restore over a non-empty deployment: its database is replaced."),
    ] = False,
) -> None:
    """Restore a backup into this (empty) deployment: the DB first, then the blobs."""
    from dockyard.maintenance.backup import restore
    from dockyard.services import build_driver_from

    started = time.monotonic()
    settings = _settings(config)
    driver = _run(lambda: build_driver_from(settings))
    with _progress() as progress:
        result = _run(lambda: restore(src, settings, driver, progress, force))
    _report(
        result.problems.items,
        f"restored the database and {result.blobs} blobs ({result.bytes_restored} bytes) from {src}",
        started,
    )


@maintenance_app.command("verify")
def verify_command(
    deep: Annotated[bool, typer.Option("--deep", help="Also hash every blob against its digest.")] = False,
    config: ConfigOption = None,
) -> None:
    """Check that every blob manifests need is recorded and stored with its size (--deep: and digest)."""
    from dockyard.maintenance.verify import verify

    started = time.monotonic()
    with _services(config) as services, _progress() as progress:
        result = _run(lambda: verify(services, deep, progress))
    _report(
        result.problems.items,
        f"verified {result.manifests} manifests and {result.blobs} blobs"
        + (f" ({result.bytes_hashed} bytes hashed)" if deep else ""),
        started,
    )


@maintenance_app.command("import-registry2")
def import_registry2_command(
    path: Annotated[Path, typer.Argument(help="registry:2's storage root (rootdirectory).")],
    config: ConfigOption = None,
    verify_digests: Annotated[
        bool, typer.Option("--verify-digests/--no-verify-digests", help="Hash each blob before adopting it.")
    ] = True,
) -> None:
    """Adopt a registry:2 filesystem storage tree: blobs (hard-linked when on the same filesystem),
    manifests and tags, each manifest validated as a push would be. Safe to run again."""
    from dockyard.maintenance.import_registry2 import import_registry2

    started = time.monotonic()
    with _services(config) as services, _progress() as progress:
        result = _run(lambda: import_registry2(path, services, progress, verify_digests))
    _report(
        result.problems.items,
        f"imported {result.repositories} repositories, {result.manifests} manifests, {result.tags} tags, "
        f"{result.blobs} blobs ({result.blobs_linked} hard-linked, {result.blobs_copied} copied, "
        f"{result.blobs_present} already present)",
        started,
    )
