"""`dockyard garbage-collect`: like `registry garbage-collect`, on the config `serve` reads, but online.

It queues a "gc" job and runs it here unless a worker of the deployment claims it first, in which case
it follows that worker; either way a progress bar shows how far it got and the report is printed.

Only typer loads at import time: the server-side modules load inside the command."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from dockyard.audit.interfaces import AuditAction
    from dockyard.audit.services import AuditLog
    from dockyard.jobs.interfaces import JobRecord

gc_app = typer.Typer()


@gc_app.command("garbage-collect")
def garbage_collect(
    config_file: Annotated[
        Path | None, typer.Argument(help="Config file, as `registry garbage-collect` takes it.")
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="YAML config file (dockyard's or a registry:2 config.yml)."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", "-d", help="Delete nothing; report what would go and its bytes.")
    ] = False,
    delete_untagged: Annotated[
        bool,
        typer.Option(
            "--delete-untagged", "-m", help="Also delete manifests no tag, index or kept subject keeps."
        ),
    ] = False,
    delete_referrers: Annotated[
        bool,
        typer.Option(
            "--delete-referrers-with-subject", help="Signatures, SBOMs... go when their subject is gone."
        ),
    ] = False,
    min_age: Annotated[
        str | None,
        typer.Option(
            "--min-age", help="Safety window: keep what was referenced or pushed within it (default 2h)."
        ),
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="Threads deleting storage objects (default 8).", min=1, max=256)
    ] = None,
) -> None:
    """Delete blobs (and optionally untagged manifests) nothing references, while the registry serves."""
    from dockyard.cli.main import _settings
    from dockyard.config.loader import config_path_from_env
    from dockyard.gc.interfaces import GCOptions, GCOptionsInvalid

    params: dict[str, Any] = {
        "dry_run": dry_run,
        "delete_untagged": delete_untagged,
        "delete_referrers_with_subject": delete_referrers,
    }
    if min_age is not None:
        params["min_age"] = min_age
    if workers is not None:
        params["workers"] = workers
    try:
        params = GCOptions.from_params(params).as_params()  # a bad value is an error before anything runs
    except GCOptionsInvalid as exc:
        typer.echo(f"dockyard: {exc.message}", err=True)
        raise typer.Exit(2) from None
    settings = _settings(config or config_file or config_path_from_env())
    record = _run_gc_job(settings, params)
    if record.status != "succeeded" or record.result is None:
        typer.echo(f"dockyard: garbage collection job {record.id} {record.status}: {record.error}", err=True)
        raise typer.Exit(1)
    _print_report(record.result)


def _run_gc_job(settings: Any, params: dict[str, Any]) -> JobRecord:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from dockyard.audit.interfaces import AuditAction
    from dockyard.services import build_job_runner, build_services

    services = build_services(settings)
    try:
        runner = build_job_runner(services)
        job_id = services.jobs.enqueue("gc", params)
        _audit(services.audit, AuditAction.CREATE, job_id, params)
        typer.echo(f"garbage collection job {job_id} queued{' (dry run)' if params['dry_run'] else ''}")
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, transient=False) as bars:
            task = bars.add_task("collecting", total=None)

            def show(record: JobRecord) -> None:
                bars.update(task, completed=record.progress_done, total=record.progress_total)

            try:
                finished = runner.run_job_here(job_id, on_progress=show)
            except KeyboardInterrupt:
                services.jobs.cancel(job_id)  # the run stops after its current batch
                _audit(services.audit, AuditAction.CANCEL, job_id, params)
                typer.echo(f"cancelled garbage collection job {job_id}", err=True)
                raise typer.Exit(130) from None
            bars.update(task, completed=finished.progress_done, total=finished.progress_total)
        return finished
    finally:
        services.close()


def _audit(audit: AuditLog, action: AuditAction, job_id: int, params: dict[str, Any]) -> None:
    """Record the run (or its cancelling) as the API would, with this machine's user as the actor:
    a local command has no dockyard account, and the log must still say who collected garbage."""
    import getpass

    from dockyard.audit.interfaces import ActorKind, AuditEvent, ResourceType

    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry for this uid (containers)
        user = str(os.getuid())
    detail = {"kind": "gc", "job_id": job_id, "params": params, "command": "garbage-collect"}
    audit.record(
        AuditEvent(
            action,
            f"cli:{user}",
            ActorKind.SYSTEM,
            resource_type=ResourceType.JOB,
            resource_name="gc",
            detail=detail,
        )
    )


def _print_report(result: Mapping[str, Any]) -> None:
    dry = bool(result.get("dry_run"))
    for name in result.get("manifests", []):
        typer.echo(f"{'manifest eligible for deletion' if dry else 'deleted manifest'}: {name}")
    for digest in result.get("blobs", []):
        typer.echo(f"{'blob eligible for deletion' if dry else 'deleted blob'}: {digest}")
    unlisted = (
        result["manifests_deleted"]
        + result["blobs_deleted"]
        - len(result["manifests"])
        - len(result["blobs"])
    )
    if unlisted > 0:
        typer.echo(f"... and {unlisted} more")
    verb = "would delete" if dry else "deleted"
    typer.echo(
        f"{verb} {result['manifests_deleted']} manifests and {result['blobs_deleted']} blobs, "
        f"{'would free' if dry else 'freed'} {result['bytes_freed']} bytes ({_human(result['bytes_freed'])}) "
        f"in {result['duration_seconds']:.1f} s"
    )
    if result.get("storage_delete_failures"):
        typer.echo(
            f"warning: {result['storage_delete_failures']} storage objects could not be deleted "
            "(their rows are gone; the files are harmless leftovers)",
            err=True,
        )


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{size} B"
        value /= 1024
    raise AssertionError("unreachable")
