"""`dockyard replication policy create|list|show|update|delete`, `replication run POLICY [--wait]`,
`replication runs`, `replication show RUN`, `replication cancel RUN`: replication between this registry
and registry endpoints (system administrators only; docs/replication.md)."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer

from dockyard.cli.client.errors import CliError
from dockyard.cli.client.options import api_command
from dockyard.cli.client.output import Column, when
from dockyard.cli.client.session import Session
from dockyard.cli.client.urls import segment
from dockyard.cli.polling import poll_delays

replication_app = typer.Typer(no_args_is_help=True, help="Replicate images to and from registry endpoints.")
policy_app = typer.Typer(no_args_is_help=True, help="Manage replication policies.")
replication_app.add_typer(policy_app, name="policy")

Name = Annotated[str, typer.Argument(help="The policy's name.", show_default=False)]
RunId = Annotated[
    int, typer.Argument(help="The run's ID (from `dockyard replication runs`).", show_default=False)
]
Direction = Annotated[
    str | None,
    typer.Option("--direction", "-d", help="push (here to the endpoint) or pull (the endpoint to here)."),
]
Endpoint = Annotated[str | None, typer.Option("--endpoint", "-e", help="The registry endpoint's name.")]
Repositories = Annotated[
    str | None, typer.Option("--repositories", "-r", help="Glob on source repositories (default **).")
]
Tags = Annotated[str | None, typer.Option("--tags", "-t", help="Glob on source tags (default **).")]
Namespace = Annotated[
    str | None,
    typer.Option(
        "--dest-namespace", help="Replaces the first name component on the destination ('' removes it)."
    ),
]
Trigger = Annotated[str | None, typer.Option("--trigger", help="manual, cron or event (on push).")]
Schedule = Annotated[str | None, typer.Option("--schedule", help="Cron (UTC) for the cron trigger.")]
Override = Annotated[
    bool | None,
    typer.Option("--override/--keep", help="Replace destination tags that point elsewhere, or keep them."),
]
Deletes = Annotated[
    bool | None,
    typer.Option(
        "--propagate-deletes/--no-propagate-deletes", help="Delete destination tags gone from the source."
    ),
]
Enabled = Annotated[bool | None, typer.Option("--enable/--disable", help="Whether triggers start runs.")]
Description = Annotated[str | None, typer.Option("--description", help="Free text.")]
Concurrency = Annotated[
    int | None, typer.Option("--concurrency", help="Artifacts a run copies at once (1 to 32; default 8).")
]
Bandwidth = Annotated[
    int | None,
    typer.Option(
        "--bandwidth",
        help="Bytes per second a run's blob copies take together (at least 65536); 0: no limit.",
    ),
]
ArtifactTypes = Annotated[
    list[str] | None,
    typer.Option(
        "--artifact-type",
        help="Copy only this type (repeat for several): image, signature, sbom, attestation, chart, or a "
        "media type glob. On update, '' clears the filter.",
    ),
]
Labels = Annotated[
    list[str] | None,
    typer.Option(
        "--label",
        help="Copy only images whose config labels match key=value (a glob; repeat: all must). "
        "On update, '' clears the filter.",
    ),
]
WAIT_POLL_SECONDS = 1.0  # the longest pause between two looks at the job (cli/polling.py)

POLICY_COLUMNS = [
    Column("Name", "name"),
    Column("Direction", "direction"),
    Column("Endpoint", "endpoint"),
    Column("Repositories", "repositories"),
    Column("Tags", "tags"),
    Column("Namespace", "dest_namespace"),
    Column("Trigger", lambda p: p["trigger"] + (f" {p['schedule']}" if p.get("schedule") else "")),
    Column("Enabled", "enabled"),
]
POLICY_FIELDS = [
    *POLICY_COLUMNS,
    Column("Override", "override"),
    Column("Propagate deletes", "propagate_deletes"),
    Column("Concurrency", "concurrency"),
    Column("Bandwidth (bytes/s)", lambda p: p.get("bandwidth") or "no limit"),
    Column("Artifact types", lambda p: ", ".join(p.get("artifact_types") or []) or "any"),
    Column("Labels", lambda p: ", ".join(p.get("labels") or []) or "any"),
    Column("Description", "description"),
    Column("Created", "created_at", when),
    Column("Updated", "updated_at", when),
]


def _count(key: str) -> Any:
    return lambda run: (run.get("counters") or {}).get(key, 0)


RUN_COLUMNS = [
    Column("Run", "id"),
    Column("Policy", "policy"),
    Column("Job", "job_id"),
    Column("Trigger", "trigger"),
    Column("Status", "status"),
    Column("Copied", _count("artifacts_copied")),
    Column("Skipped", _count("artifacts_skipped")),
    Column("Failed", _count("artifacts_failed")),
    Column("Bytes", _count("bytes_copied")),
    Column("Started", "started_at", when),
]
ARTIFACT_COLUMNS = [
    Column("Source", "source"),
    Column("Destination", "destination"),
    Column("Digest", lambda a: (a.get("digest") or "")[:19]),
    Column("Status", "status"),
    Column("Blobs", "blobs"),
    Column("Bytes", "bytes"),
    Column("Error", lambda a: a.get("error") or ""),
]


def _body(**options: Any) -> dict[str, Any]:
    body = {key: value for key, value in options.items() if value is not None}
    if body.get("dest_namespace") == "":
        body["dest_namespace"] = None
    return body


def _filters(artifact_types: list[str] | None, labels: list[str] | None) -> dict[str, list[str]]:
    """The filters given (an empty value clears one)."""
    given = {"artifact_types": artifact_types, "labels": labels}
    return {key: [v for v in values if v] for key, values in given.items() if values is not None}


@api_command(policy_app, "list")
def list_policies(cli: Session) -> None:
    """List the replication policies."""
    cli.out.table(cli.api.get("/replication/policies"), POLICY_COLUMNS, "No replication policies.")


@api_command(policy_app, "show")
def show_policy(cli: Session, name: Name) -> None:
    """Show one policy."""
    cli.out.record(cli.api.get(f"/replication/policies/{segment(name)}"), POLICY_FIELDS)


@api_command(policy_app, "create")
def create_policy(
    cli: Session,
    name: Name,
    direction: Direction = None,
    endpoint: Endpoint = None,
    repositories: Repositories = None,
    tags: Tags = None,
    dest_namespace: Namespace = None,
    trigger: Trigger = None,
    schedule: Schedule = None,
    override: Override = None,
    propagate_deletes: Deletes = None,
    enabled: Enabled = None,
    description: Description = None,
    concurrency: Concurrency = None,
    bandwidth: Bandwidth = None,
    artifact_type: ArtifactTypes = None,
    label: Labels = None,
) -> None:
    """Create a policy: `dockyard replication policy create dr -d push -e backup -r 'team/**'`."""
    if direction is None or endpoint is None:
        raise CliError("a policy needs --direction (push or pull) and --endpoint")
    body = _body(
        name=name,
        direction=direction,
        endpoint=endpoint,
        repositories=repositories,
        tags=tags,
        dest_namespace=dest_namespace,
        trigger=trigger,
        schedule=schedule,
        override=override,
        propagate_deletes=propagate_deletes,
        enabled=enabled,
        description=description,
        concurrency=concurrency,
    )
    if bandwidth is not None:  # 0: no limit
        body["bandwidth"] = bandwidth or None
    body.update(_filters(artifact_type, label))
    policy = cli.api.post("/replication/policies", body)
    cli.out.done(f"Created replication policy {policy['name']}.", policy)


@api_command(policy_app, "update")
def update_policy(
    cli: Session,
    name: Name,
    direction: Direction = None,
    endpoint: Endpoint = None,
    repositories: Repositories = None,
    tags: Tags = None,
    dest_namespace: Namespace = None,
    trigger: Trigger = None,
    schedule: Schedule = None,
    override: Override = None,
    propagate_deletes: Deletes = None,
    enabled: Enabled = None,
    description: Description = None,
    concurrency: Concurrency = None,
    bandwidth: Bandwidth = None,
    artifact_type: ArtifactTypes = None,
    label: Labels = None,
) -> None:
    """Change a policy: only what is given changes."""
    body = _body(
        direction=direction,
        endpoint=endpoint,
        repositories=repositories,
        tags=tags,
        trigger=trigger,
        schedule=schedule,
        override=override,
        propagate_deletes=propagate_deletes,
        enabled=enabled,
        description=description,
        concurrency=concurrency,
    )
    if bandwidth is not None:  # 0: no limit
        body["bandwidth"] = bandwidth or None
    body.update(_filters(artifact_type, label))
    if dest_namespace is not None:
        body["dest_namespace"] = dest_namespace or None
    if trigger is not None and trigger != "cron" and schedule is None:
        body["schedule"] = None
    if not body:
        raise CliError("nothing to change: give an option such as --tags or --enable")
    policy = cli.api.patch(f"/replication/policies/{segment(name)}", body)
    cli.out.done(f"Updated replication policy {name}.", policy)


@api_command(policy_app, "delete")
def delete_policy(
    cli: Session,
    name: Name,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a policy and its run history (nothing replicated is deleted)."""
    if not yes:
        typer.confirm(f"Delete replication policy {name}?", abort=True, err=True)
    cli.api.delete(f"/replication/policies/{segment(name)}")
    cli.out.done(f"Deleted replication policy {name}.", {"name": name, "deleted": True})


@api_command(replication_app, "run")
def run(
    cli: Session,
    name: Name,
    wait: Annotated[
        bool, typer.Option("--wait", "-w", help="Wait for the run and show what it did.")
    ] = False,
    timeout: Annotated[float, typer.Option(help="Seconds --wait waits at most.")] = 3600.0,
) -> None:
    """Queue a run of the policy now. With --wait, exits 1 unless it succeeded."""
    queued = cli.api.post(f"/replication/policies/{segment(name)}/run")
    if not wait:
        cli.out.done(f"Run of {name} queued as job {queued['job_id']}.", queued)
        return
    job = _wait_for_job(cli, queued["job_id"], timeout)
    runs = cli.api.get("/replication/runs", {"job_id": queued["job_id"], "page_size": 1})
    if not runs:
        raise CliError(f"job {job['id']} ended {job['status']} without a run: {job.get('error')}")
    detail = cli.api.get(f"/replication/runs/{runs[0]['id']}")
    _print_run(cli, detail)
    if job["status"] != "succeeded":
        raise typer.Exit(1)


@api_command(replication_app, "runs")
def runs(
    cli: Session,
    policy: Annotated[str | None, typer.Option("--policy", "-p", help="Only this policy's runs.")] = None,
    limit: Annotated[int, typer.Option(help="How many of the latest runs.")] = 20,
) -> None:
    """The latest replication runs, newest first."""
    params: dict[str, Any] = {"page_size": min(max(limit, 1), 100)}
    if policy:
        params["policy"] = policy
    cli.out.table(cli.api.get("/replication/runs", params), RUN_COLUMNS, "No replication runs yet.")


@api_command(replication_app, "show")
def show_run(cli: Session, run_id: RunId) -> None:
    """One run: its counters and each artifact's outcome."""
    _print_run(cli, cli.api.get(f"/replication/runs/{run_id}"))


@api_command(replication_app, "cancel")
def cancel(cli: Session, run_id: RunId) -> None:
    """Stop a running run (between two blobs, or within a few MiB of one)."""
    run = cli.api.post(f"/replication/runs/{run_id}/cancel")
    cli.out.done(f"Asked run {run_id} of {run['policy']} to stop.", run)


def _wait_for_job(cli: Session, job_id: int, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    delays = poll_delays(WAIT_POLL_SECONDS)
    while time.monotonic() < deadline:
        job: dict[str, Any] = cli.api.get(f"/jobs/{job_id}")
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(next(delays))
    raise CliError(f"job {job_id} has not finished after {timeout:g} seconds (is a worker running?)")


def _print_run(cli: Session, run: dict[str, Any]) -> None:
    if cli.out.as_json:
        cli.out.json(run)
        return
    cli.out.table(run.get("artifacts") or [], ARTIFACT_COLUMNS, "No artifacts selected.")
    c = run.get("counters") or {}
    cli.out.note(
        f"Run {run['id']} of {run['policy']}: {run['status']}. "
        f"Artifacts: {c.get('artifacts_copied', 0)} copied, "
        f"{c.get('artifacts_skipped', 0)} skipped, {c.get('artifacts_failed', 0)} failed, "
        f"{c.get('artifacts_deleted', 0)} deleted. Blobs: {c.get('blobs_copied', 0)} copied "
        f"({c.get('bytes_copied', 0)} bytes), {c.get('blobs_mounted', 0)} mounted, "
        f"{c.get('blobs_skipped', 0)} already there."
    )
    if run.get("error"):
        cli.out.note(f"Error: {run['error']}")
