"""`dockyard artifact files|cat|diff`: the layer browser of the management API from a terminal.

- `files REF [PATH] [--layer DIGEST]`: a directory of the image's merged tree (or of one layer), as it
  streams in;
- `cat REF PATH [--layer DIGEST] [-o FILE]`: one file's bytes (to stdout, or a file);
- `diff REF1 REF2`: layers, files and packages that changed from REF1 to REF2.
"""

from __future__ import annotations

import posixpath
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from dockyard.cli.client.errors import CliError
from dockyard.cli.client.options import api_command
from dockyard.cli.client.output import Column, size, text
from dockyard.cli.client.session import Session
from dockyard.cli.client.urls import segment
from dockyard.cli.commands_artifacts import Reference, artifact_app, split_reference

PlatformOption = Annotated[
    str | None,
    typer.Option("--platform", help="For a multi-platform image: which one (linux/amd64, linux/arm64/v8)."),
]
LayerOption = Annotated[
    str | None,
    typer.Option("--layer", help="One layer (its digest) instead of the image's merged tree."),
]


def _base(repository: str, reference: str) -> str:
    return f"/repositories/{segment(repository, keep_slashes=True)}/artifacts/{segment(reference)}"


def _shown_path(row: dict[str, Any]) -> str:
    path = str(row["path"])
    if row.get("link"):
        arrow = "=>" if row["type"] == "hardlink" else "->"
        return f"{path} {arrow} {row['link']}"
    if row["type"] == "dir":
        return path + "/"
    return path


def _marks(row: dict[str, Any]) -> str:
    if row.get("opaque"):
        return "opaque"
    if row.get("whiteout"):
        return "whiteout"
    return "implied" if row.get("implied") else ""


def _short(digest: Any) -> str:
    return str(digest).removeprefix("sha256:")[:12] if digest else ""


FILE_COLUMNS = [
    Column("MODE", "mode_string"),
    Column("OWNER", lambda row: f"{row['uid']}:{row['gid']}"),
    Column("SIZE", lambda row: None if row["type"] == "dir" else row["size"], size),
    Column("PATH", _shown_path),
    Column("NOTE", _marks),
]


@api_command(artifact_app, "files")
def files(
    cli: Session,
    ref: Reference,
    path: Annotated[str, typer.Argument(help="A directory in the image, e.g. /etc.")] = "/",
    layer: LayerOption = None,
    recursive: Annotated[bool, typer.Option("--recursive", "-r", help="Everything below PATH.")] = False,
    platform: PlatformOption = None,
) -> None:
    """List a directory of the image's files: its merged tree as a container sees it (with the layer
    each entry comes from), or one layer's entries as stored, whiteouts included (--layer)."""
    repository, reference = split_reference(ref)
    params: dict[str, str | bool | None] = {"path": path, "recursive": recursive, "platform": platform}
    route = f"/layers/{segment(layer)}/files" if layer else "/files"
    rows = [item for item in cli.api.lines(_base(repository, reference) + route, params) if "end" not in item]
    columns = FILE_COLUMNS if layer else [*FILE_COLUMNS, Column("LAYER", lambda row: _short(row["layer"]))]
    cli.out.table(rows, columns, empty=f"Nothing in {path}.")


@api_command(artifact_app, "cat")
def cat(
    cli: Session,
    ref: Reference,
    path: Annotated[str, typer.Argument(help="The file's path in the image, e.g. /etc/os-release.")],
    layer: LayerOption = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file instead of stdout.")
    ] = None,
    platform: PlatformOption = None,
) -> None:
    """Print one file of the image (as the merged tree has it, or as --layer stores it); a symbolic
    link is not followed: ask for its target."""
    repository, reference = split_reference(ref)
    base = _base(repository, reference)
    if layer is None:
        layer = _layer_of(cli, base, path, platform)
    route = f"{base}/layers/{segment(layer)}/download"
    params = {"path": path, "platform": platform}
    if output is None:
        cli.api.download(route, params, sys.stdout.buffer)
        sys.stdout.buffer.flush()
        return
    with output.open("wb") as out:
        written = cli.api.download(route, params, out)
    cli.out.note(f"Wrote {written} bytes to {output}.")


def _layer_of(cli: Session, base: str, path: str, platform: str | None) -> str:
    """The layer the merged tree takes `path` from (its directory is listed, not the whole image)."""
    wanted = "/" + path.strip("/")
    params = {"path": posixpath.dirname(wanted), "platform": platform}
    for item in cli.api.lines(f"{base}/files", params):
        if item.get("path") == wanted:
            if item["type"] == "symlink":
                raise CliError(f"{wanted} is a symbolic link to {item['link']}: ask for its target")
            if item["type"] != "file" and item["type"] != "hardlink":
                raise CliError(f"{wanted} is a {item['type']}, not a file")
            return str(item["layer"])
    raise CliError(f"no {wanted} in the image")


@api_command(artifact_app, "diff")
def diff(
    cli: Session,
    ref1: Annotated[
        str, typer.Argument(help="From: REPOSITORY:TAG or REPOSITORY@DIGEST.", show_default=False)
    ],
    ref2: Annotated[
        str, typer.Argument(help="To: REPOSITORY:TAG, REPOSITORY@DIGEST (any repository you may pull).")
    ],
    platform: PlatformOption = None,
    packages: Annotated[
        bool, typer.Option("--packages/--no-packages", help="Compare the package inventories too.")
    ] = True,
) -> None:
    """What changed from REF1 to REF2: layers shared, added and removed; files added, removed and
    changed; packages added, removed and changed."""
    repository, reference = split_reference(ref1)
    other, other_reference = split_reference(ref2)
    to = (
        f"{other}@{other_reference}"
        if other_reference.startswith("sha256:")
        else f"{other}:{other_reference}"
    )
    result = cli.api.get(
        _base(repository, reference) + "/diff", {"to": to, "platform": platform, "packages": packages}
    )
    if cli.out.as_json:
        cli.out.json(result)
        return
    layers = result["layers"]
    layer_rows = [
        {"change": change, "digest": digest}
        for change in ("shared", "removed", "added")
        for digest in layers[change]
    ]
    cli.out.table(layer_rows, [Column("LAYERS", "change"), Column("DIGEST", "digest")], empty="No layers.")
    changes = result["files"]
    file_rows = [{"change": "added", **row} for row in changes["added"]]
    file_rows += [{"change": "removed", **row} for row in changes["removed"]]
    file_rows += [{"change": "changed", **row["to"], "fields": row["fields"]} for row in changes["changed"]]
    file_rows.sort(key=lambda row: row["path"])
    cli.out.table(
        file_rows,
        [
            Column("FILES", "change"),
            Column("PATH", "path"),
            Column("TYPE", "type"),
            Column("SIZE", "size", size),
            Column("WHAT CHANGED", "fields", text),
        ],
        empty="No files changed.",
    )
    if changes["truncated"]:
        cli.out.note(f"Only the first changes of each kind are listed: {changes['counts']}.")
    if result["packages"] is not None:
        found = result["packages"]
        package_rows = [
            {"change": "added", "ecosystem": p["ecosystem"], "name": p["name"], "to": p["versions"]}
            for p in found["added"]
        ]
        package_rows += [
            {"change": "removed", "ecosystem": p["ecosystem"], "name": p["name"], "from": p["versions"]}
            for p in found["removed"]
        ]
        package_rows += [{"change": "changed", **p} for p in found["changed"]]
        cli.out.table(
            package_rows,
            [
                Column("PACKAGES", "change"),
                Column("ECOSYSTEM", "ecosystem"),
                Column("NAME", "name"),
                Column("FROM", "from", text),
                Column("TO", "to", text),
            ],
            empty="No packages changed.",
        )
