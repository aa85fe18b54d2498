"""`dockyard project ...`: projects, the first component of repository names (`team` in `team/app`)."""

from __future__ import annotations

from typing import Annotated

import typer

from dockyard.cli.client.errors import CliError
from dockyard.cli.client.options import api_command
from dockyard.cli.client.output import Column, when
from dockyard.cli.client.session import Session
from dockyard.cli.client.urls import segment

project_app = typer.Typer(no_args_is_help=True, help="Manage projects.")

ProjectName = Annotated[str, typer.Argument(help="The project's name.", show_default=False)]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]


def visibility(public: object) -> str:
    return "public" if public else "private"


def proxy_of(proxy: object) -> str:
    """A proxy project's endpoint and tag TTL, or "-"."""
    if not isinstance(proxy, dict):
        return "-"
    return f"{proxy.get('endpoint')} (tag TTL {proxy.get('tag_ttl_seconds')} s)"


ProxyEndpoint = Annotated[
    str | None,
    typer.Option(
        "--proxy",
        metavar="ENDPOINT",
        help="Make the project a pull-through cache of this registry endpoint (`dockyard endpoint list`).",
    ),
]
ProxyTTL = Annotated[
    int | None,
    typer.Option(
        "--tag-ttl",
        min=0,
        metavar="SECONDS",
        help="Proxy projects: how long a cached tag is served before upstream is asked again (300).",
    ),
]


def _proxy_body(endpoint: str | None, ttl: int | None) -> dict[str, object]:
    body: dict[str, object] = {"endpoint": endpoint}
    if ttl is not None:
        body["tag_ttl_seconds"] = ttl
    return body


def pull_policy_of(policy: object) -> str:
    if not isinstance(policy, dict):
        return "-"
    rules = ["require signature"] if policy.get("require_signature") else []
    if policy.get("block_severity") not in (None, "none"):
        rules.append(f"block {policy['block_severity']}")
    if policy.get("block_unscanned"):
        rules.append("block unscanned")
    return ", ".join(rules) or "none"


def access(permissions: object) -> str:
    """The caller's permissions in a word (`project show` and --json list them all)."""
    granted = set(permissions) if isinstance(permissions, list) else set()
    for permission, word in (("project.update", "admin"), ("delete", "delete"), ("push", "push")):
        if permission in granted:
            return word
    return "pull" if "pull" in granted else "none"


PROJECT_COLUMNS = [
    Column("Name", "name"),
    Column("Visibility", "public", visibility),
    Column("Your access", "permissions", access),
    Column("Created", "created_at", when),
]
PROJECT_FIELDS = [
    Column("Name", "name"),
    Column("Visibility", "public", visibility),
    Column("Repositories", "repository_count"),
    Column("Proxy of", "proxy", proxy_of),
    Column("Pull policy", "pull_policy", pull_policy_of),
    Column("Created", "created_at", when),
    Column("Your permissions", "permissions"),
]


@api_command(project_app, "create")
def create(
    cli: Session,
    name: ProjectName,
    public: Annotated[bool, typer.Option("--public", help="Anyone may pull, anonymous users too.")] = False,
    proxy: ProxyEndpoint = None,
    tag_ttl: ProxyTTL = None,
) -> None:
    """Create a project (system administrators); you become its project admin. With --proxy, a
    pull-through cache of a registry endpoint (docs/proxy.md)."""
    body: dict[str, object] = {"name": name, "public": public}
    if proxy is not None:
        body["proxy"] = _proxy_body(proxy, tag_ttl)
    elif tag_ttl is not None:
        raise CliError("--tag-ttl goes with --proxy")
    project = cli.api.post("/projects", body)
    kind = f" proxy of {proxy}" if proxy is not None else ""
    cli.out.done(f"Created {visibility(project['public'])} project {project['name']}{kind}.", project)


@api_command(project_app, "list")
def list_projects(
    cli: Session,
    query: Annotated[str | None, typer.Option("--query", "-q", help="Part of the name.")] = None,
    public: Annotated[
        bool | None, typer.Option("--public/--private", help="Only public, or only private projects.")
    ] = None,
) -> None:
    """List the projects you may see."""
    projects = cli.api.get_all("/projects", {"q": query, "public": public})
    cli.out.table(projects, PROJECT_COLUMNS, "No projects.")


@api_command(project_app, "show")
def show(cli: Session, name: ProjectName) -> None:
    """Show a project."""
    cli.out.record(cli.api.get(f"/projects/{segment(name)}"), PROJECT_FIELDS)


@api_command(project_app, "update")
def update(
    cli: Session,
    name: ProjectName,
    public: Annotated[
        bool | None, typer.Option("--public/--private", help="Make the project public or private.")
    ] = None,
    proxy: ProxyEndpoint = None,
    tag_ttl: ProxyTTL = None,
    no_proxy: Annotated[
        bool, typer.Option("--no-proxy", help="Make a proxy project an ordinary one (its cache stays).")
    ] = False,
    require_signature: Annotated[
        bool | None,
        typer.Option(
            "--require-signature/--no-require-signature",
            help="Refuse pulls of artifacts without a signature that verifies with the project's keys.",
        ),
    ] = None,
    block_severity: Annotated[
        str | None,
        typer.Option(
            "--block-severity",
            help="Refuse pulls of artifacts with vulnerabilities at or above: none low medium high critical.",
        ),
    ] = None,
    block_unscanned: Annotated[
        bool | None,
        typer.Option("--block-unscanned/--no-block-unscanned", help="Refuse pulls of unscanned artifacts."),
    ] = None,
) -> None:
    """Change a project's settings: visibility, its pull policy, and (system administrators) its proxy
    settings."""
    body: dict[str, object] = {}
    if public is not None:
        body["public"] = public
    if require_signature is not None:
        body["require_signature"] = require_signature
    if block_severity is not None:
        body["block_severity"] = block_severity
    if block_unscanned is not None:
        body["block_unscanned"] = block_unscanned
    if no_proxy:
        if proxy is not None or tag_ttl is not None:
            raise CliError("--no-proxy goes without --proxy and --tag-ttl")
        body["proxy"] = None
    elif proxy is not None or tag_ttl is not None:
        current = cli.api.get(f"/projects/{segment(name)}").get("proxy") or {}
        endpoint = proxy or current.get("endpoint")
        if endpoint is None:
            raise CliError(f"project {name} is no proxy: pass --proxy ENDPOINT")
        body["proxy"] = _proxy_body(
            endpoint, tag_ttl if tag_ttl is not None else current.get("tag_ttl_seconds")
        )
    if not body:
        raise CliError(
            "nothing to change: pass --public, --private, --require-signature, --block-severity,"
            " --block-unscanned (or their --no- forms), --proxy, --tag-ttl or --no-proxy"
        )
    project = cli.api.patch(f"/projects/{segment(name)}", body)
    cli.out.done(
        f"Project {name}: {visibility(project['public'])}, proxy of {proxy_of(project.get('proxy'))},"
        f" pull policy: {pull_policy_of(project.get('pull_policy'))}.",
        project,
    )


@api_command(project_app, "delete")
def delete(cli: Session, name: ProjectName, yes: Yes = False) -> None:
    """Delete an empty project, with its members and robots."""
    if not yes:
        typer.confirm(f"Delete project {name}, its members and its robots?", abort=True, err=True)
    cli.api.delete(f"/projects/{segment(name)}")
    cli.out.done(f"Deleted project {name}.", {"name": name, "deleted": True})


@api_command(project_app, "scan-settings")
def scan_settings(
    cli: Session,
    name: ProjectName,
    scan_on_push: Annotated[
        bool | None,
        typer.Option(
            "--scan-on-push/--no-scan-on-push",
            help="Scan every image pushed to the project (a job, after the push). Without: show.",
        ),
    ] = None,
) -> None:
    """Show or change a project's scan settings (docs/security.md, "Scans")."""
    path = f"/projects/{segment(name)}/scan-settings"
    if scan_on_push is None:
        cli.out.record(
            cli.api.get(path),
            [
                Column("Project", "project"),
                Column("Scan on push", "scan_on_push", lambda on: "yes" if on else "no"),
            ],
        )
        return
    settings = cli.api.put(path, {"scan_on_push": scan_on_push})
    cli.out.done(f"Project {name}: scan on push {'on' if settings['scan_on_push'] else 'off'}.", settings)
