"""`dockyard artifact ...`: what a CI pipeline asks of one artifact, over the network, with a stored login
or a robot's secret in DOCKYARD_USERNAME / DOCKYARD_PASSWORD (docs/ci.md):

- `scan REF --wait --fail-on high`: the stored scan result (waiting for it; a scan is requested when the
  project does not scan on push), exit status 3 when findings reach the threshold;
- `sign REF --key key.pem`: a cosign signature (simple-signing payload, pushed as the `sha256-<hex>.sig`
  tag, as `cosign sign` does), verifiable by dockyard and by `cosign verify`;
- `verify REF`: the registry's verdict on the artifact's signature (exit status 0, 3 unsigned, 4 invalid);
- `tag REF TAG...`: more tags for the same manifest (a promotion), without moving any layer.
"""

from __future__ import annotations

import base64
import json
import os
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from dockyard.cli.client.errors import ApiFailure, CliError
from dockyard.cli.client.options import api_command
from dockyard.cli.client.session import Session
from dockyard.cli.client.urls import segment
from dockyard.cli.polling import poll_delays

artifact_app = typer.Typer(
    no_args_is_help=True,
    help="One artifact: wait for its scan and gate on it, sign it, verify its signature, tag it (CI).",
)

EXIT_POLICY = 3  # the scan reaches --fail-on (as `trust verify` exits 3 for unsigned)
SEVERITIES = ("critical", "high", "medium", "low")
SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
KEY_PASSWORD_VARIABLE = "DOCKYARD_SIGNING_KEY_PASSWORD"
POLL_SECONDS = 2.0  # the longest pause between two looks at a scan (cli/polling.py)
SCAN_ON_PUSH_GRACE = 10.0  # a push's scan job is queued just after the push: wait this long for it

Reference = Annotated[
    str, typer.Argument(help="REPOSITORY:TAG or REPOSITORY@DIGEST, e.g. team/app:1.4.", show_default=False)
]


def split_reference(ref: str) -> tuple[str, str]:
    """`repo@sha256:...`, `repo:tag` or `repo` (latest) -> (repository, reference)."""
    if "@" in ref:
        name, _, digest = ref.partition("@")
        return name, digest
    slash, colon = ref.rfind("/"), ref.rfind(":")
    if colon > slash:
        return ref[:colon], ref[colon + 1 :]
    return ref, "latest"


def _artifact_path(repository: str, reference: str) -> str:
    return f"/repositories/{segment(repository, keep_slashes=True)}/artifacts/{segment(reference)}"


def _digest(cli: Session, repository: str, reference: str) -> str:
    """The digest a tag names now (so a tag moved while we wait does not change what is judged)."""
    if reference.startswith("sha256:"):
        return reference
    return str(cli.api.get(_artifact_path(repository, reference))["digest"])


# --- scan ---------------------------------------------------------------------------------------


@api_command(artifact_app, "scan")
def scan(
    cli: Session,
    ref: Reference,
    wait: Annotated[
        bool, typer.Option("--wait", help="Wait for the scan result (requesting a scan if none is coming).")
    ] = False,
    timeout: Annotated[
        float, typer.Option("--timeout", min=1, help="Seconds to wait with --wait before failing.")
    ] = 600,
    fail_on: Annotated[
        str | None,
        typer.Option(
            "--fail-on",
            help="Exit with status 3 when findings of this severity or worse are found (critical, high, "
            "medium, low); allowlisted ones do not count. A failed scan fails too.",
        ),
    ] = None,
) -> None:
    """The artifact's stored vulnerability scan: its counts and, with --fail-on, a gate on them."""
    if fail_on is not None and fail_on not in SEVERITIES:
        raise CliError(f"--fail-on {fail_on!r}: one of {', '.join(SEVERITIES)}")
    repository, reference = split_reference(ref)
    digest = _digest(cli, repository, reference)
    report = _wait_for_scan(cli, repository, digest, timeout) if wait else _read_scan(cli, repository, digest)
    if report is None:
        raise CliError(f"{repository}@{digest} has not been scanned (--wait requests a scan)")
    if report["status"] in ("pending", "running") and report["counts"] is None:
        raise CliError(f"{repository}@{digest}: the scan is {report['status']} (--wait waits for it)")
    blocking = _blocking(report, fail_on)
    if cli.out.as_json:
        cli.out.json(report)
    else:
        _print_report(cli, repository, report, fail_on, blocking)
    if report["status"] == "done" and not report.get("vulndb_version"):
        cli.out.note("warning: the scan used an empty vulnerability database: dockyard vulndb import")
    if fail_on is not None and report["status"] == "failed":
        cli.out.error(f"{repository}@{digest}: the scan failed ({report['reason']}): no result to judge")
        raise typer.Exit(1)
    if blocking:
        counted = _counted(report, fail_on)
        cli.out.error(
            f"{repository}@{digest}: {counted} at or above {fail_on} (--fail-on {fail_on}): failing"
        )
        raise typer.Exit(EXIT_POLICY)


def _read_scan(cli: Session, repository: str, digest: str) -> dict[str, Any] | None:
    try:
        report: dict[str, Any] = cli.api.get(f"{_artifact_path(repository, digest)}/scan")
    except ApiFailure as failure:
        if failure.status == 404:
            return None
        raise
    return report


def _wait_for_scan(cli: Session, repository: str, digest: str, timeout: float) -> dict[str, Any]:
    """The finished scan (done or failed); a scan is requested when none is coming."""
    start = time.monotonic()
    requested = False
    delays = poll_delays(POLL_SECONDS)
    while True:
        report = _read_scan(cli, repository, digest)
        if report is not None and report["status"] in ("done", "failed"):
            return report
        waited = time.monotonic() - start
        if (
            report is None
            and not requested
            and (waited >= SCAN_ON_PUSH_GRACE or not _scans_on_push(cli, repository))
        ):
            job = cli.api.post(f"{_artifact_path(repository, digest)}/scan")
            cli.out.note(f"requested a scan of {repository}@{digest} (job {job['job_id']})")
            requested = True
            continue
        if waited > timeout:
            state = "not scanned" if report is None else f"the scan is still {report['status']}"
            raise CliError(f"{repository}@{digest}: {state} after {timeout:g} s")
        time.sleep(next(delays))


def _scans_on_push(cli: Session, repository: str) -> bool:
    if "/" not in repository:
        return False
    project = repository.split("/", 1)[0]
    return bool(cli.api.get(f"/projects/{segment(project)}/scan-settings")["scan_on_push"])


def _blocking(report: dict[str, Any], fail_on: str | None) -> list[dict[str, Any]]:
    """The findings at or above the threshold that count (not allowlisted)."""
    if fail_on is None or not report.get("counts"):
        return []
    levels = SEVERITIES[: SEVERITIES.index(fail_on) + 1]
    if not any(report["counts"].get(level, 0) for level in levels):
        return []
    found = [f for f in report["findings"] if f["severity"] in levels and not f["allowlisted"]]
    return found or [{"severity": fail_on}]  # counts without findings cannot happen; fail closed anyway


def _counted(report: dict[str, Any], fail_on: str | None) -> str:
    levels = SEVERITIES[: SEVERITIES.index(fail_on or "low") + 1]
    parts = [f"{report['counts'][level]} {level}" for level in levels if report["counts"].get(level)]
    return ", ".join(parts) + (
        " vulnerability" if sum(report["counts"][lv] for lv in levels) == 1 else " vulnerabilities"
    )


def _made_by(report: dict[str, Any]) -> str:
    """Which scanner made the result, and with which vulnerability database (external: their own)."""
    scanner = report.get("scanner") or "unknown scanner"
    version = report.get("vulndb_version")
    return f"scanner {scanner}" + (f", vulnerability database version {version}" if version else "")


def _print_report(
    cli: Session, repository: str, report: dict[str, Any], fail_on: str | None, blocking: list[dict[str, Any]]
) -> None:
    counts = report.get("counts") or {}
    summary = ", ".join(f"{n} {level}" for level, n in counts.items() if n) or "no known vulnerabilities"
    if report["status"] == "failed":
        summary = f"scan failed: {report['reason']}"
    allowlisted = f" ({report['allowlisted']} allowlisted)" if report.get("allowlisted") else ""
    typer.echo(f"{repository}@{report['digest']}: {summary}{allowlisted} ({_made_by(report)})")
    for finding in blocking:
        if "advisory_id" not in finding:
            continue
        aliases = f" ({', '.join(finding['aliases'])})" if finding["aliases"] else ""
        fixed = ", ".join(finding["fixed_versions"]) or "no fix"
        typer.echo(
            f"  {finding['severity']:<8} {finding['advisory_id']}{aliases} {finding['package']} "
            f"{finding['installed_version']} (fixed: {fixed}) {finding['platform']}"
        )


# --- sign and verify ----------------------------------------------------------------------------


@api_command(artifact_app, "sign")
def sign(
    cli: Session,
    ref: Reference,
    key: Annotated[
        Path,
        typer.Option(
            "--key",
            exists=True,
            dir_okay=False,
            help="The private key, PEM (PKCS#8 or SEC1 EC; ECDSA P-256/P-384, RSA, Ed25519); "
            f"encrypted ones open with ${KEY_PASSWORD_VARIABLE}.",
        ),
    ],
) -> None:
    """Sign the artifact as `cosign sign --key` does: a simple-signing payload naming its digest, signed
    with the key, pushed as the `sha256-<hex>.sig` tag of the same repository (the tag's earlier
    signatures are kept). The project must trust the public key: `dockyard trust key add`."""
    repository, reference = split_reference(ref)
    digest = _digest(cli, repository, reference)
    host = cli.login.url.split("://", 1)[1]
    body = payload(digest, f"{host}/{repository}")
    signature = base64.b64encode(sign_payload(_private_key(key), body)).decode()
    layer = {
        "mediaType": SIMPLE_SIGNING,
        "size": len(body),
        "digest": cli.registry.push_blob(repository, body),
        "annotations": {SIGNATURE_ANNOTATION: signature},
    }
    tag = signature_tag(digest)
    layers = [
        existing
        for existing in _existing_signatures(cli, repository, tag)
        if existing.get("digest") != layer["digest"]
        or existing.get("annotations", {}).get(SIGNATURE_ANNOTATION) != signature
    ]
    layers.append(layer)
    config = json.dumps(
        {
            "architecture": "",
            "os": "",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [item["digest"] for item in layers]},
        },
        separators=(",", ":"),
    ).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": OCI_CONFIG,
            "size": len(config),
            "digest": cli.registry.push_blob(repository, config),
        },
        "layers": layers,
    }
    data = json.dumps(manifest, separators=(",", ":")).encode()
    pushed = cli.registry.put_manifest(repository, tag, data, OCI_MANIFEST)
    cli.out.done(
        f"Signed {repository}@{digest}: signature {repository}:{tag} ({pushed}).",
        {"repository": repository, "digest": digest, "tag": tag, "signature": pushed},
    )


def signature_tag(digest: str) -> str:
    algorithm, _, hexdigest = digest.partition(":")
    return f"{algorithm}-{hexdigest}.sig"


def payload(digest: str, reference: str) -> bytes:
    """cosign's simple-signing payload (what `cosign generate` prints: Go's field order, no spaces)."""
    document = {
        "critical": {
            "identity": {"docker-reference": reference},
            "image": {"docker-manifest-digest": digest},
            "type": "cosign container image signature",
        },
        "optional": None,
    }
    return json.dumps(document, separators=(",", ":")).encode()


def _private_key(path: Path) -> Any:
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    data = path.read_bytes()
    if b"SIGSTORE PRIVATE KEY" in data or b"COSIGN PRIVATE KEY" in data:
        raise CliError(
            f"{path}: a cosign-encrypted key; give the PEM key it was imported from "
            "(`cosign import-key-pair --key key.pem` makes a cosign.key of the same key)"
        )
    password = os.environ.get(KEY_PASSWORD_VARIABLE)
    try:
        return load_pem_private_key(data, password.encode() if password else None)
    except TypeError as exc:
        hint = (
            f"set {KEY_PASSWORD_VARIABLE}" if password is None else "it is not encrypted: unset the password"
        )
        raise CliError(f"{path}: {exc} ({hint})") from None
    except ValueError as exc:
        raise CliError(f"{path}: not a PEM private key dockyard can use ({exc})") from None


def sign_payload(private_key: Any, body: bytes) -> bytes:
    """The signature cosign makes with such a key: ECDSA (SHA-256, or SHA-384 on P-384) in ASN.1 DER,
    RSA PKCS#1 v1.5 with SHA-256, Ed25519 over the payload itself."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        digest: hashes.HashAlgorithm = (
            hashes.SHA384() if isinstance(private_key.curve, ec.SECP384R1) else hashes.SHA256()
        )
        return private_key.sign(body, ec.ECDSA(digest))
    if isinstance(private_key, rsa.RSAPrivateKey):
        return private_key.sign(body, padding.PKCS1v15(), hashes.SHA256())
    if isinstance(private_key, ed25519.Ed25519PrivateKey):
        return private_key.sign(body)
    raise CliError(f"a {type(private_key).__name__} cannot sign: use ECDSA P-256, RSA or Ed25519")


def _existing_signatures(cli: Session, repository: str, tag: str) -> list[dict[str, Any]]:
    """The signature layers the tag holds already (read through the API: a project that requires
    signatures refuses a GET of the unsigned signature manifest itself on /v2)."""
    try:
        manifest = cli.api.get(_artifact_path(repository, tag))["manifest"]
    except ApiFailure as failure:
        if failure.status == 404:
            return []
        raise
    layers = manifest.get("layers") if isinstance(manifest, dict) else None
    return [
        layer
        for layer in layers or []
        if isinstance(layer, dict) and layer.get("mediaType") == SIMPLE_SIGNING
    ]


@api_command(artifact_app, "verify")
def verify(cli: Session, ref: Reference) -> None:
    """Whether the artifact's signature verifies with its project's trusted keys, as the registry (and
    its pull policy) judges it. Exit status: 0 verified, 3 unsigned, 4 invalid, 1 an error."""
    repository, reference = split_reference(ref)
    verdict = cli.api.get(f"{_artifact_path(repository, reference)}/signature")
    cli.out.done(f"{repository}@{verdict['digest']}: {verdict['status']}: {verdict['reason']}", verdict)
    code = {"verified": 0, "unsigned": 3}.get(verdict["status"], 4)
    if code:
        raise typer.Exit(code)


# --- tag ----------------------------------------------------------------------------------------


@api_command(artifact_app, "tag")
def tag(
    cli: Session,
    ref: Reference,
    tags: Annotated[list[str], typer.Argument(help="The new tags (in the same repository).")],
) -> None:
    """Give the artifact more tags, e.g. promote a tested build to `stable`: its manifest is put under
    each tag, byte for byte, so the digest stays and no layer moves (immutable tags and quotas apply)."""
    repository, reference = split_reference(ref)
    data, media_type, digest = cli.registry.get_manifest(repository, reference)
    for name in tags:
        pushed = cli.registry.put_manifest(repository, name, data, media_type)
        if pushed != digest:
            raise CliError(f"{repository}:{name} got {pushed}, not {digest}")
    cli.out.done(
        f"Tagged {repository}@{digest} as {', '.join(tags)}.",
        {"repository": repository, "digest": digest, "tags": tags},
    )
