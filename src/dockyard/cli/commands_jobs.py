"""`dockyard job ...`: background jobs (GC, retention, upload purging) and their schedules, through the
management API (system administrators)."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

import typer

from dockyard.cli.client.errors import CliError
from dockyard.cli.client.options import api_command
from dockyard.cli.client.output import Column, when
from dockyard.cli.client.session import Session
from dockyard.cli.client.urls import segment
from dockyard.cli.polling import poll_delays

job_app = typer.Typer(no_args_is_help=True, help="Background jobs and their schedules.")

FINISHED = ("succeeded", "failed", "cancelled")
FOLLOW_SECONDS = 1.0  # the longest pause between two looks at the job (cli/polling.py)


def _progress(job: dict[str, Any]) -> str:
    done, total = job.get("progress_done") or 0, job.get("progress_total")
    if total:
        return f"{done}/{total} ({100 * done // max(total, 1)}%)"
    return str(done) if done else ""


JOB_COLUMNS = [
    Column("ID", "id"),
    Column("Kind", "kind"),
    Column("Status", "status"),
    Column("Attempts", lambda job: f"{job['attempts']}/{job['max_attempts']}"),
    Column("Progress", _progress),
    Column("Created", "created_at", when),
    Column("Finished", "finished_at", when),
]
JOB_FIELDS = [
    *JOB_COLUMNS[:5],
    Column("Params", lambda job: json.dumps(job["params"]) if job["params"] else ""),
    Column("Created", "created_at", when),
    Column("Started", "started_at", when),
    Column("Finished", "finished_at", when),
    Column("Error", "error"),
    Column("Result", lambda job: json.dumps(job["result"]) if job["result"] is not None else ""),
]
SCHEDULE_COLUMNS = [
    Column("Kind", "kind"),
    Column("Cron (UTC)", "cron"),
    Column("Enabled", "enabled"),
    Column("Next run", "next_run_at", when),
    Column("Params", lambda schedule: json.dumps(schedule["params"]) if schedule["params"] else ""),
]

ParamOption = Annotated[
    list[str] | None,
    typer.Option("--param", "-p", help="KEY=VALUE (VALUE as JSON when it parses, else text); repeatable."),
]


@api_command(job_app, "list")
def list_jobs(
    cli: Session,
    kind: Annotated[
        str | None, typer.Option(help="Only this kind (gc, retention, purge-uploads, ...).")
    ] = None,
    status: Annotated[
        str | None, typer.Option(help="queued, running, succeeded, failed or cancelled.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many jobs.")] = 50,
) -> None:
    """List jobs, newest first."""
    jobs = cli.api.get_all("/jobs", {"kind": kind, "status": status}, limit=limit)
    cli.out.table(jobs, JOB_COLUMNS, "No jobs.")


@api_command(job_app, "show")
def show_job(
    cli: Session,
    job_id: Annotated[int, typer.Argument(help="The job's ID.", show_default=False)],
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Print new log lines until it ends.")
    ] = False,
) -> None:
    """Show a job and its log."""
    job = cli.api.get(f"/jobs/{job_id}")
    if follow and not cli.out.as_json:
        job = _follow(cli, job)
        return
    cli.out.record(job, JOB_FIELDS, f"Job {job_id}")
    if not cli.out.as_json:
        for entry in job["logs"]:
            cli.out.note(f"{entry['time']}  {entry['line']}")


@api_command(job_app, "run")
def run_job(
    cli: Session,
    kind: Annotated[str, typer.Argument(help="gc, retention, purge-uploads, ...", show_default=False)],
    param: ParamOption = None,
    wait: Annotated[bool, typer.Option("--wait", "-w", help="Follow the job's log until it ends.")] = False,
) -> None:
    """Queue a job now (a worker of the server runs it)."""
    job = cli.api.post("/jobs", {"kind": kind, "params": _params(param)})
    if wait and not cli.out.as_json:
        job = _follow(cli, job)
        if job["status"] != "succeeded":
            raise typer.Exit(1)
        return
    cli.out.done(f"Queued job {job['id']} ({kind}).", job)


@api_command(job_app, "cancel")
def cancel_job(
    cli: Session, job_id: Annotated[int, typer.Argument(help="The job's ID.", show_default=False)]
) -> None:
    """Cancel a queued job, or ask a running one to stop."""
    job = cli.api.post(f"/jobs/{job_id}/cancel")
    message = "Cancelled" if job["status"] == "cancelled" else "Asked to stop"
    cli.out.done(f"{message}: job {job_id}.", job)


@api_command(job_app, "retry")
def retry_job(
    cli: Session, job_id: Annotated[int, typer.Argument(help="The job's ID.", show_default=False)]
) -> None:
    """Queue a failed or cancelled job again (as a new job)."""
    job = cli.api.post(f"/jobs/{job_id}/retry")
    cli.out.done(f"Queued job {job['id']} (a retry of {job_id}).", job)


@api_command(job_app, "schedules")
def list_schedules(cli: Session) -> None:
    """List the cron schedules."""
    cli.out.table(cli.api.get("/jobs/schedules"), SCHEDULE_COLUMNS, "No schedules.")


@api_command(job_app, "schedule")
def set_schedule(
    cli: Session,
    kind: Annotated[str, typer.Argument(help="gc, retention, purge-uploads, ...", show_default=False)],
    cron: Annotated[
        str, typer.Argument(help="5-field cron in UTC, e.g. '0 3 * * *', or @daily.", show_default=False)
    ],
    param: ParamOption = None,
    disable: Annotated[bool, typer.Option("--disable", help="Keep the schedule but do not fire it.")] = False,
) -> None:
    """Run KIND on a cron schedule (replaces its schedule)."""
    body = {"cron": cron, "params": _params(param), "enabled": not disable}
    schedule = cli.api.put(f"/jobs/schedules/{segment(kind)}", body)
    cli.out.done(f"{kind}: '{schedule['cron']}', next run {when(schedule['next_run_at'])}.", schedule)


@api_command(job_app, "unschedule")
def delete_schedule(
    cli: Session,
    kind: Annotated[str, typer.Argument(help="The kind whose schedule to delete.", show_default=False)],
) -> None:
    """Delete KIND's schedule (it then runs only when triggered)."""
    cli.api.delete(f"/jobs/schedules/{segment(kind)}")
    cli.out.done(f"Deleted the schedule of {kind}.")


def _params(items: list[str] | None) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for item in items or []:
        key, equals, value = item.partition("=")
        if not equals or not key:
            raise CliError(f"--param {item!r}: expected KEY=VALUE")
        try:
            params[key] = json.loads(value)
        except ValueError:
            params[key] = value
    return params


def _follow(cli: Session, job: dict[str, Any]) -> dict[str, Any]:
    """Print the job's log lines as they come, and its progress, until it finishes; the finished job."""
    job_id = job["id"]
    printed = 0
    delays = poll_delays(FOLLOW_SECONDS)
    cli.out.note(f"job {job_id} ({job['kind']}): {job['status']}")
    while True:
        job = cli.api.get(f"/jobs/{job_id}")
        for entry in job["logs"][printed:]:
            cli.out.note(f"{entry['time']}  {entry['line']}")
        printed = len(job["logs"])
        if job["status"] in FINISHED:
            cli.out.record(job, JOB_FIELDS, f"Job {job_id}")
            return job
        time.sleep(next(delays))
