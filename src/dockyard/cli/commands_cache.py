"""`dockyard cache warm REF...`: prefetch images into proxy projects (the pull-through cache).

It pulls each reference through the logged-in server's /v2 API, as a client would: the manifest (an
index and every platform's manifest), then every blob, read to the end and checked against its digest
(the bytes are discarded). The server fills its cache on the way, through the same single-flight path as
any pull (a blob another client is fetching is waited for, not fetched twice). No server-side code runs
here: it works against any dockyard the CLI is logged in to, with the stored personal access token.
"""

from __future__ import annotations

import functools
import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Annotated, Any

import typer

from dockyard.cli.client.errors import CliError
from dockyard.cli.client.options import api_command
from dockyard.cli.client.output import Column, size
from dockyard.cli.client.session import Session

cache_app = typer.Typer(no_args_is_help=True, help="The pull-through cache (proxy projects).")

INDEXES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
IMAGES = (
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
ACCEPT = ", ".join((*INDEXES, *IMAGES))
TIMEOUT = 300.0  # a blob the server fetches from upstream as it sends it
MAX_REFERENCES = 100

Refs = Annotated[
    list[str],
    typer.Argument(help="Images on the server: PROJECT/REPO:TAG or PROJECT/REPO@DIGEST.", show_default=False),
]
Jobs = Annotated[int, typer.Option("--jobs", "-j", min=1, max=16, help="Blobs fetched at once.")]

WARM_COLUMNS = [
    Column("Reference", "reference"),
    Column("Digest", "digest"),
    Column("Manifests", "manifests"),
    Column("Blobs", "blobs"),
    Column("Size", "bytes", size),
]


@dataclass
class Warmed:
    reference: str
    digest: str = ""
    manifests: int = 0
    blobs: dict[str, int] = field(default_factory=dict)  # digest -> size

    def row(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "digest": self.digest,
            "manifests": self.manifests,
            "blobs": len(self.blobs),
            "bytes": sum(self.blobs.values()),
        }


def split_reference(reference: str) -> tuple[str, str]:
    """(repository, tag or digest) of `name:tag` or `name@sha256:...` (a tag is required)."""
    if "@" in reference:
        name, digest = reference.split("@", 1)
        if not digest.startswith("sha256:") or len(digest) != 71:
            raise CliError(f"{reference}: a digest is sha256:<64 hex digits>")
        return name, digest
    name, sep, tag = reference.rpartition(":")
    if not sep or "/" in tag or not name:
        raise CliError(f"{reference}: give a tag or a digest (PROJECT/REPO:TAG or PROJECT/REPO@DIGEST)")
    return name, tag


@api_command(cache_app, "warm")
def warm(cli: Session, references: Refs, jobs: Jobs = 4) -> None:
    """Pull images through the server into its cache: manifests (all platforms) and blobs."""
    import httpx

    from dockyard.cli.client.http import tls_verify

    if len(references) > MAX_REFERENCES:
        raise CliError(f"at most {MAX_REFERENCES} references at once")
    parsed = [(reference, *split_reference(reference)) for reference in references]
    login = cli.login
    verify = tls_verify(
        cli.options.insecure or login.insecure,
        str(cli.options.ca_cert) if cli.options.ca_cert else login.ca_cert,
    )
    rows = []
    with httpx.Client(
        base_url=login.url.rstrip("/") + "/v2",
        auth=(login.username, login.token),
        verify=verify,
        timeout=httpx.Timeout(TIMEOUT, connect=30.0),
        headers={"User-Agent": "dockyard-cli cache warm"},
    ) as http:
        for reference, name, tag in parsed:
            warmed = Warmed(reference)
            _warm_manifest(http, name, tag, warmed, top=True)
            with ThreadPoolExecutor(max_workers=jobs) as pool:
                fetch = functools.partial(_warm_blob, http, name, reference=reference)
                list(pool.map(fetch, list(warmed.blobs)))
            rows.append(warmed.row())
    cli.out.table(rows, WARM_COLUMNS, "Nothing warmed.")


def _warm_manifest(http: Any, name: str, reference: str, warmed: Warmed, top: bool = False) -> None:
    answer = http.get(f"/{name}/manifests/{reference}", headers={"Accept": ACCEPT})
    if answer.status_code != 200:
        raise CliError(f"{name}:{reference}: {_failure(answer)}")
    digest = "sha256:" + hashlib.sha256(answer.content).hexdigest()
    if reference.startswith("sha256:") and digest != reference:
        raise CliError(f"{name}@{reference}: the server sent a manifest of digest {digest}")
    if top:
        warmed.digest = digest
    warmed.manifests += 1
    try:
        body = answer.json()
    except ValueError:
        raise CliError(f"{name}:{reference}: the manifest is not JSON") from None
    media_type = body.get("mediaType") or answer.headers.get("content-type", "")
    if media_type in INDEXES or ("manifests" in body and "layers" not in body):
        for child in body.get("manifests") or []:
            _warm_manifest(http, name, child["digest"], warmed)
        return
    for descriptor in [body.get("config") or {}, *(body.get("layers") or [])]:
        if "digest" in descriptor:
            warmed.blobs[descriptor["digest"]] = int(descriptor.get("size") or 0)


def _warm_blob(http: Any, name: str, digest: str, reference: str) -> None:
    hasher = hashlib.sha256()
    with http.stream("GET", f"/{name}/blobs/{digest}") as answer:
        if answer.status_code != 200:
            answer.read()
            raise CliError(f"{reference}: blob {digest}: {_failure(answer)}")
        for chunk in answer.iter_bytes(1 << 20):
            hasher.update(chunk)
    if "sha256:" + hasher.hexdigest() != digest:
        raise CliError(f"{reference}: blob {digest}: the bytes received do not match the digest")


def _failure(answer: Any) -> str:
    try:
        errors = answer.json().get("errors") or []
        detail = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors)
    except ValueError:
        detail = answer.text[:200]
    return f"{answer.status_code} {detail}".strip()
