"""`dockyard inventory REF`: the packages inside an image, read from this install's storage (the
config `serve` reads), as a table or as JSON.

Only typer loads at import time: the server-side modules load inside the command."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from dockyard.scanning.models import InventoryReport

inventory_app = typer.Typer()


def split_reference(ref: str) -> tuple[str, str]:
    """`repo@sha256:...`, `repo:tag` or `repo` (latest) -> (repository, reference)."""
    if "@" in ref:
        name, _, digest = ref.partition("@")
        return name, digest
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > slash:
        return ref[:colon], ref[colon + 1 :]
    return ref, "latest"


@inventory_app.command("inventory")
def inventory(
    ref: Annotated[str, typer.Argument(help="REPOSITORY:TAG or REPOSITORY@DIGEST in this registry.")],
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="YAML config file (dockyard's or a registry:2 config.yml)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the inventory as JSON.")] = False,
) -> None:
    """List the packages in an image (each platform of an index): distribution, language and Go
    binary packages, the layer that added each, and what could not be read."""
    from dockyard.cli.main import _settings
    from dockyard.config.loader import config_path_from_env
    from dockyard.errors import DockyardError
    from dockyard.scanning.services import Inventory
    from dockyard.services import build_services

    repository, reference = split_reference(ref)
    settings = _settings(config or config_path_from_env())
    services = build_services(settings)
    try:
        report = Inventory(services.registry, services.blobs).inventory(repository, reference)
    except DockyardError as exc:
        typer.echo(f"dockyard: {ref}: {exc.message}", err=True)
        raise typer.Exit(1) from None
    finally:
        services.close()
    if as_json:
        typer.echo(json.dumps(report.to_json(), indent=2))
    else:
        _print_table(report)


def _print_table(report: InventoryReport) -> None:
    typer.echo(f"{report.repository}@{report.digest} ({report.media_type})")
    for digest, why in report.not_images.items():
        typer.echo(f"  not an image: {digest}: {why}")
    for image in report.images:
        typer.echo(
            f"\n{image.platform} {image.manifest}  distro: {image.distro or 'unknown'}  "
            f"{len(image.packages)} packages, {len(image.layers)} layers, "
            f"{image.bytes_read} bytes read in {image.seconds:.1f} s"
        )
        rows = [("NAME", "VERSION", "ECOSYSTEM", "LAYER", "PATH")]
        for package in image.packages:
            layer = str(image.layers.index(package.layer) + 1) if package.layer in image.layers else "?"
            rows.append((package.name, package.version, package.ecosystem, layer, package.path))
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        for row in rows:
            typer.echo(
                "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[4]
            )
        for item in image.unreadable:
            where = item.path or "(the layer)"
            typer.echo(f"UNREADABLE {item.format}: {where} in {item.layer}: {item.reason}")
        for skipped in image.skipped:
            typer.echo(f"skipped: {skipped.path} in {skipped.layer}: {skipped.reason}")
        if image.skipped_total > len(image.skipped):
            typer.echo(f"... and {image.skipped_total - len(image.skipped)} more skipped")


@inventory_app.command("sbom")
def sbom(
    ref: Annotated[str, typer.Argument(help="REPOSITORY:TAG or REPOSITORY@DIGEST in this registry.")],
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="YAML config file (dockyard's or a registry:2 config.yml)."),
    ] = None,
    sbom_format: Annotated[
        str, typer.Option("--format", "-f", help="cyclonedx (CycloneDX 1.6 JSON) or spdx (SPDX 2.3 JSON).")
    ] = "cyclonedx",
    platform: Annotated[
        str | None, typer.Option(help="For an index: the image's platform, e.g. linux/arm64.")
    ] = None,
    refresh: Annotated[
        bool, typer.Option("--refresh", help="Make a new SBOM even if the image has one stored.")
    ] = False,
    store: Annotated[
        bool, typer.Option("--store/--no-store", help="Keep a new SBOM as a referrer of the image.")
    ] = True,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the SBOM here instead of to stdout.")
    ] = None,
) -> None:
    """Print an image's SBOM: the one stored as its referrer, else one made from its inventory now and
    stored as a referrer (artifactType application/vnd.cyclonedx+json or application/spdx+json)."""
    from dockyard.cli.main import _settings
    from dockyard.config.loader import config_path_from_env
    from dockyard.errors import DockyardError
    from dockyard.scanning.sbom import ARTIFACT_TYPES
    from dockyard.scanning.sboms import Sboms
    from dockyard.scanning.services import Inventory
    from dockyard.services import build_services

    if sbom_format not in ARTIFACT_TYPES:
        raise typer.BadParameter(f"expected one of {', '.join(ARTIFACT_TYPES)}", param_hint="--format")
    repository, reference = split_reference(ref)
    settings = _settings(config or config_path_from_env())
    services = build_services(settings)
    try:
        inventory = Inventory(services.registry, services.blobs)
        sboms = Sboms(services.registry, services.blobs, services.blob_uploads, inventory)
        found = sboms.sbom(repository, reference, sbom_format, platform, refresh=refresh, store=store)
    except DockyardError as exc:
        typer.echo(f"dockyard: {ref}: {exc.message}", err=True)
        raise typer.Exit(1) from None
    finally:
        services.close()
    if output is not None:
        output.write_bytes(found.document)
    else:
        typer.echo(found.document.decode())
    if found.referrer:
        verb = "stored as" if found.created else "stored already as"
        typer.echo(f"{found.image}: {sbom_format} SBOM {verb} referrer {found.referrer}", err=True)
