"""`dockyard retention show|set|delete|run|runs|report`: a project's tag retention policy and its runs."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from dockyard.cli.client.errors import CliError
from dockyard.cli.client.options import api_command
from dockyard.cli.client.output import Column, when
from dockyard.cli.client.session import Session
from dockyard.cli.client.urls import segment
from dockyard.cli.polling import poll_delays

retention_app = typer.Typer(
    no_args_is_help=True, help="Manage a project's tag retention policy (docs/retention.md)."
)

Project = Annotated[str, typer.Argument(help="The project's name.", show_default=False)]
WAIT_POLL_SECONDS = 1.0  # the longest pause between two looks at the run (cli/polling.py)


def _selector(selector: dict[str, Any] | None) -> str:
    selector = selector or {}
    text = ",".join(selector.get("match") or ["**"])
    if selector.get("exclude"):
        text += " except " + ",".join(selector["exclude"])
    if selector.get("untagged"):
        text += " +untagged"
    return text


def _action(rule: dict[str, Any]) -> str:
    parameter = rule.get("count") if rule.get("count") is not None else rule.get("days")
    return rule["action"] + ("" if parameter is None else f" {parameter}")


RULE_COLUMNS = [
    Column("#", "number"),
    Column("Retain", _action),
    Column("Repositories", lambda r: _selector(r.get("repositories"))),
    Column("Tags", lambda r: _selector(r.get("tags"))),
    Column("Enabled", "disabled", lambda value: "no" if value else "yes"),
]
RUN_COLUMNS = [
    Column("Run", "id"),
    Column("Job", "job_id"),
    Column("Kind", "dry_run", lambda value: "dry run" if value else "run"),
    Column("Status", "status"),
    Column("Kept", lambda r: (r.get("summary") or {}).get("kept", "-")),
    Column("Deleted", lambda r: (r.get("summary") or {}).get("deleted", "-")),
    Column("Started", "started_at", when),
]
DECISION_COLUMNS = [
    Column("Repository", "repository"),
    Column("Tag", lambda d: d["tag"] or "(untagged)"),
    Column("Digest", lambda d: d["digest"][:19]),
    Column("Outcome", "outcome"),
    Column("Why", "reason"),
]


def _repository_columns(deleted: str) -> list[Column]:
    """Per repository counts; `deleted` heads the deletes ("Would delete" in a dry run)."""
    return [
        Column("Repository", "repository"),
        Column("Kept", "kept"),
        Column(deleted, "deleted"),
        Column("Kept (immutable)", "kept_immutable"),
        Column("Skipped", "skipped"),
    ]


def _path(project: str) -> str:
    return f"/projects/{segment(project)}/retention"


@api_command(retention_app, "show")
def show(cli: Session, project: Project) -> None:
    """Show the project's policy."""
    policy = cli.api.get(_path(project))
    if cli.out.as_json:
        cli.out.json(policy)
        return
    cli.out.note(f"Schedule: {policy.get('schedule') or 'none (runs by hand only)'}")
    rows = [{"number": index + 1, **rule} for index, rule in enumerate(policy.get("rules", []))]
    cli.out.table(rows, RULE_COLUMNS, "No rules: retention deletes nothing.")


@api_command(retention_app, "set")
def set_policy(
    cli: Session,
    project: Project,
    file: Annotated[
        str, typer.Argument(help="The policy as JSON or YAML; - reads stdin.", show_default=False)
    ],
) -> None:
    """Replace the project's policy with the one in FILE (see `dockyard retention show --json`)."""
    policy = cli.api.put(_path(project), _read_policy(file))
    cli.out.done(f"Set the retention policy of {project}: {len(policy['rules'])} rules.", policy)


@api_command(retention_app, "delete")
def delete(cli: Session, project: Project) -> None:
    """Remove the project's policy (nothing is deleted by retention afterwards)."""
    cli.api.delete(_path(project))
    cli.out.done(f"Removed the retention policy of {project}.")


@api_command(retention_app, "run")
def run(
    cli: Session,
    project: Project,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only report what would be deleted.")] = False,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the run and print its report.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds --wait waits at most.")] = 600.0,
) -> None:
    """Queue a run of the project's policy (a dry run changes nothing)."""
    queued = cli.api.post(f"{_path(project)}/run", {"dry_run": dry_run})
    if not wait:
        what = "Dry run" if dry_run else "Run"
        cli.out.done(f"{what} of {project}'s retention policy queued as job {queued['job_id']}.", queued)
        return
    _print_report(cli, _wait_for(cli, project, queued["job_id"], timeout))


@api_command(retention_app, "runs")
def runs(cli: Session, project: Project) -> None:
    """The project's latest retention runs."""
    cli.out.table(cli.api.get(f"{_path(project)}/runs"), RUN_COLUMNS, "No retention runs yet.")


@api_command(retention_app, "report")
def report(
    cli: Session, project: Project, run_id: Annotated[int, typer.Argument(help="From `retention runs`.")]
) -> None:
    """What a run kept and deleted, tag by tag, and why."""
    _print_report(cli, cli.api.get(f"{_path(project)}/runs/{run_id}"))


def _read_policy(file: str) -> Any:
    try:
        text = sys.stdin.read() if file == "-" else Path(file).read_text()
    except OSError as exc:
        raise CliError(f"cannot read {file}: {exc.strerror}") from None
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CliError(f"{file} is neither JSON nor YAML: {exc}") from None


def _wait_for(cli: Session, project: str, job_id: int, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    delays = poll_delays(WAIT_POLL_SECONDS)
    while time.monotonic() < deadline:
        for item in cli.api.get(f"{_path(project)}/runs", {"limit": 100}):
            if item["job_id"] == job_id and item["status"] != "running":
                run: dict[str, Any] = cli.api.get(f"{_path(project)}/runs/{item['id']}")
                return run
        time.sleep(next(delays))
    raise CliError(f"job {job_id} has not finished after {timeout:g} seconds (is a worker running?)")


def _print_report(cli: Session, run: dict[str, Any]) -> None:
    if cli.out.as_json:
        cli.out.json(run)
        return
    if run["status"] == "failed":
        raise CliError(f"retention run {run['id']} failed: {run.get('error')}")
    document = run.get("report") or {}
    verb = "would delete" if run["dry_run"] else "deleted"
    repositories = document.get("repositories", [])
    rows = [
        {
            "repository": repository["repository"],
            **decision,
            "outcome": verb if decision["outcome"] == "deleted" else decision["outcome"],
        }
        for repository in repositories
        for decision in repository["decisions"]
    ]
    cli.out.table(rows, DECISION_COLUMNS, "Nothing in scope: no rule covers any repository.")
    if repositories:  # per repository: what a user checks before enabling a policy
        cli.out.table(repositories, _repository_columns(verb.capitalize()), "")
    out_of_scope = document.get("out_of_scope_repositories") or []
    if out_of_scope:
        cli.out.note(f"Not covered by any rule, left as they are: {', '.join(out_of_scope)}.")
    summary = run.get("summary") or {}
    cli.out.note(
        f"Run {run['id']}: kept {summary.get('kept', 0)}, {verb} {summary.get('deleted', 0)}, "
        f"kept (immutable) {summary.get('kept_immutable', 0)}, skipped {summary.get('skipped', 0)}."
    )
