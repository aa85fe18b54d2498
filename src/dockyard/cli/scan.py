"""`dockyard scan REF`: the image's packages (dockyard.scanning's inventory) matched against the offline
vulnerability database (dockyard.vulndb), read from this install's storage and database.

Only typer loads at import time: the server-side modules load inside the command."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from dockyard.scanning.models import ImageInventory
    from dockyard.vulndb.interfaces import Finding
    from dockyard.vulndb.services import VulnDB

scan_app = typer.Typer()
SEVERITIES = ("critical", "high", "medium", "low", "none", "unknown")


@scan_app.command("scan")
def scan(
    ref: Annotated[str, typer.Argument(help="REPOSITORY:TAG or REPOSITORY@DIGEST in this registry.")],
    project: Annotated[
        str | None,
        typer.Option("--project", "-p", help="Honour this project's allowlist (default: the repository's)."),
    ] = None,
    show_allowlisted: Annotated[bool, typer.Option(help="Also list allowlisted findings.")] = False,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="YAML config file (dockyard's or a registry:2 config.yml)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the findings as JSON.")] = False,
) -> None:
    """List the known vulnerabilities of an image's packages (each platform of an index), with the
    layer that added each package; allowlisted ones (system-wide and the project's) left out."""
    from dockyard.cli.inventory import split_reference
    from dockyard.cli.main import _settings
    from dockyard.config.loader import config_path_from_env
    from dockyard.errors import DockyardError
    from dockyard.scanning.services import Inventory
    from dockyard.scans.services import Scans
    from dockyard.services import build_services
    from dockyard.vulndb.services import VulnDB

    repository, reference = split_reference(ref)
    owner = project or (repository.split("/", 1)[0] if "/" in repository else None)
    services = build_services(settings=_settings(config or config_path_from_env()))
    vulndb = VulnDB(services.db)
    try:
        report = Inventory(services.registry, services.blobs).inventory(repository, reference)
        version = vulndb.status().version
        images = [
            (image, vulndb.match(image.packages, _known_project(vulndb, owner, project), show_allowlisted))
            for image in report.images
        ]
        # Stored as the artifact's scan (the API's `.../scan`, listings, pull policies), with the
        # repository's project allowlist whatever --project says.
        stored = Scans(
            services.db, services.registry, services.blobs, vulndb, on_change=services.verdicts_changed
        ).scan(repository, report.digest, inventory=report)
    except DockyardError as exc:
        typer.echo(f"dockyard: {ref}: {exc.message}", err=True)
        raise typer.Exit(1) from None
    finally:
        services.close()
    if as_json:
        out = {
            "repository": report.repository,
            "digest": report.digest,
            "vulndb_version": version,
            "stored": {"status": stored.summary.status, "reason": stored.summary.reason},
            "images": [_image_json(image, findings) for image, findings in images],
        }
        typer.echo(json.dumps(out, indent=2))
        return
    if not version:
        typer.echo("warning: the vulnerability database is empty: dockyard vulndb import", err=True)
    typer.echo(f"{report.repository}@{report.digest} (vulnerability database version {version})")
    for digest, why in report.not_images.items():
        typer.echo(f"  not an image: {digest}: {why}")
    for image, findings in images:
        _print_image(image, findings)
    if stored.summary.status != "done":
        typer.echo(f"stored as {stored.summary.status}: {stored.summary.reason}", err=True)


def _known_project(vulndb: VulnDB, name: str | None, given: str | None) -> str | None:
    """The project whose allowlist applies: the one given (which must exist), else the repository's
    if it exists (a top-level repository, or one outside any project, has the system allowlist only)."""
    if name is None or given is not None:
        return name
    from dockyard.projects.interfaces import ProjectNotFound

    try:
        vulndb.allowlist(name)
    except ProjectNotFound:
        return None
    return name


def _summary(findings: list[Finding]) -> dict[str, int]:
    counts = Counter(f.severity for f in findings if not f.allowlisted)
    return {level: counts.get(level, 0) for level in SEVERITIES}


def _image_json(image: ImageInventory, findings: list[Finding]) -> dict[str, Any]:
    return {
        "manifest": image.manifest,
        "platform": image.platform,
        "distro": image.distro,
        "packages": len(image.packages),
        "unreadable": [u.to_json() for u in image.unreadable],
        "summary": _summary(findings),
        "findings": [
            {**f.as_dict(), "layer": f.package.layer, "path": f.package.path, "purl": f.package.purl}
            for f in findings
        ],
    }


def _print_image(image: ImageInventory, findings: list[Finding]) -> None:
    summary = ", ".join(f"{n} {level}" for level, n in _summary(findings).items() if n)
    typer.echo(
        f"\n{image.platform} {image.manifest}  distro: {image.distro or 'unknown'}  "
        f"{len(image.packages)} packages: {summary or 'no known vulnerabilities'}"
    )
    rows = [("SEVERITY", "ID", "PACKAGE", "INSTALLED", "FIXED", "LAYER")]
    for f in findings:
        layer = image.layers.index(f.package.layer) + 1 if f.package.layer in image.layers else "?"
        severity = f.severity + (" (allowlisted)" if f.allowlisted else "")
        rows.append(
            (
                severity,
                f.advisory_id,
                f.name,
                f.installed_version,
                ", ".join(f.fixed_versions) or "-",
                str(layer),
            )
        )
    if len(rows) > 1:
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            typer.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    for item in image.unreadable:
        typer.echo(f"UNREADABLE {item.format}: {item.path or '(the layer)'}: {item.reason} (not scanned)")
