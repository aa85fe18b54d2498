"""`dockyard inventory` against a real server: images built from this machine's real files (Debian
packages with their dpkg stanzas, the test venv's distributions, node's bundled npm, a Debian jar, a Go
binary), pushed over /v2, then inventoried from the install's storage and database."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.cli import run_dockyard
from tests.support.layers import (
    GO_BINARY_DEBIAN,
    dist_info,
    dpkg_files,
    dpkg_stanzas,
    dpkg_version,
    file,
    first_jar,
    layer,
    npm_root,
    real,
    whiteout,
)
from tests.support.ociclient import (
    OCI_CONFIG,
    OCI_EMPTY,
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    OCIClient,
    descriptor,
    digest_of,
    empty_descriptor,
    image_manifest,
    index_manifest,
)
from tests.support.server import RunningServer
from tests.support.timeouts import HTTP_TIMEOUT

OCI_TAR = "application/vnd.oci.image.layer.v1.tar"
DEBS = ["adduser", "sed", "base-files"]
PYTHON = ["httpx", "pydantic"]
OS_RELEASE = Path("/usr/lib/os-release")


def os_release() -> dict[str, str]:
    pairs = (line.split("=", 1) for line in OS_RELEASE.read_text().splitlines() if "=" in line)
    return {key: value.strip('"') for key, value in pairs}


def inventory(server: RunningServer, ref: str, *args: str) -> subprocess.CompletedProcess[str]:
    return run_dockyard("inventory", "--config", server.config_path, ref, *args)


def inventory_json(server: RunningServer, ref: str) -> dict[str, Any]:
    done = inventory(server, ref, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def push(oci: OCIClient, repo: str, tag: str, layers: list[tuple[str, bytes]], arch: str = "amd64") -> str:
    config = json.dumps(
        {"os": "linux", "architecture": arch, "rootfs": {"type": "layers", "diff_ids": []}}
    ).encode()
    for blob in [config, *(data for _, data in layers)]:
        oci.push_blob(repo, blob)
    body = image_manifest(
        descriptor(OCI_CONFIG, config), [descriptor(media_type, data) for media_type, data in layers]
    )
    return oci.push_manifest(repo, tag, body, OCI_MANIFEST).digest


@pytest.fixture(scope="module")
def layers() -> dict[str, bytes]:
    stanzas = dpkg_stanzas(DEBS)
    base = layer(
        [
            real("usr/lib/os-release", OS_RELEASE),
            file("var/lib/dpkg/status", "\n".join(stanzas[name] for name in DEBS).encode()),
            *[member for name in DEBS for member in dpkg_files(name, limit=10)],
        ]
    )
    npm = npm_root()
    apps = layer(
        [
            *[real(f"usr/lib/python3/dist-packages/{dist_info(p).name}", dist_info(p)) for p in PYTHON],
            real("usr/lib/node_modules/npm/package.json", npm / "package.json"),
            real("usr/lib/node_modules/npm/node_modules/semver", npm / "node_modules" / "semver"),
            real(f"opt/java/{first_jar().name}", first_jar()),
        ],
        compress=False,  # an uncompressed tar layer
    )
    go = layer([real("usr/bin/umoci", GO_BINARY_DEBIAN)])
    remove = layer(  # apt-get remove sed; pip uninstall httpx
        [
            file(
                "var/lib/dpkg/status", "\n".join(stanzas[name] for name in ("adduser", "base-files")).encode()
            ),
            whiteout(f"usr/lib/python3/dist-packages/{dist_info('httpx').name}"),
        ]
    )
    return {"base": base, "apps": apps, "go": go, "remove": remove}


@pytest.fixture(scope="module")
def pushed(server: RunningServer, layers: dict[str, bytes]) -> dict[str, str]:
    with httpx.Client(base_url=server.url, timeout=HTTP_TIMEOUT) as http:
        oci = OCIClient(http)
        repo = "inventory/app"
        stack = [(OCI_LAYER, layers["base"]), (OCI_TAR, layers["apps"]), (OCI_LAYER, layers["go"])]
        full = push(oci, repo, "full", stack)
        removed = push(oci, repo, "removed", [*stack, (OCI_LAYER, layers["remove"])])
        arm = push(oci, repo, "arm", [(OCI_LAYER, layers["base"])], arch="arm64")
        oci.push_blob(repo, b"{}")  # the empty config of the artifacts below
        attestation = image_manifest(empty_descriptor(), [descriptor(OCI_LAYER, layers["remove"])])
        oci.push_manifest(repo, digest_of(attestation), attestation, OCI_MANIFEST)
        index = index_manifest(
            [
                {
                    **descriptor(OCI_MANIFEST, _manifest(oci, repo, full)),
                    "platform": {"os": "linux", "architecture": "amd64"},
                },
                {
                    **descriptor(OCI_MANIFEST, _manifest(oci, repo, arm)),
                    "platform": {"os": "linux", "architecture": "arm64"},
                },
                {
                    **descriptor(OCI_MANIFEST, attestation),
                    "platform": {"os": "unknown", "architecture": "unknown"},
                    "annotations": {"vnd.docker.reference.type": "attestation-manifest"},
                },
            ]
        )
        oci.push_manifest(repo, "multi", index, OCI_INDEX)
        artifact = image_manifest(
            empty_descriptor(), [descriptor("text/plain", b"hello")], artifact_type="application/vnd.example"
        )
        oci.push_blob(repo, b"hello")
        oci.push_manifest(repo, "artifact", artifact, OCI_MANIFEST)
    return {"repo": repo, "full": full, "removed": removed, "arm": arm, "attestation": digest_of(attestation)}


def _manifest(oci: OCIClient, repo: str, digest: str) -> bytes:
    return oci.get_manifest(repo, digest).content


def test_inventory_of_an_image_from_real_content(
    server: RunningServer, pushed: dict[str, str], layers: dict[str, bytes]
) -> None:
    report = inventory_json(server, f"{pushed['repo']}:full")
    assert report["digest"] == pushed["full"]
    [image] = report["images"]
    release = os_release()
    distro = f"{release['ID']}-{release['VERSION_ID']}"
    assert image["platform"] == "linux/amd64"
    assert image["distro"] == distro
    assert image["layers"] == [digest_of(layers[name]) for name in ("base", "apps", "go")]
    found = {(p["ecosystem"], p["name"]): p for p in image["packages"]}
    stanzas = dpkg_stanzas(DEBS)
    for name in DEBS:
        package = found[("Debian", name)]
        assert package["version"] == dpkg_version(stanzas[name])
        assert package["layer"] == digest_of(layers["base"])
        assert f"distro={distro}" in package["purl"]
    import importlib.metadata

    for project in PYTHON:
        distribution = importlib.metadata.distribution(project)
        package = found[("PyPI", distribution.metadata["Name"])]
        assert package["version"] == distribution.version
        assert package["layer"] == digest_of(layers["apps"])
    npm = json.loads((npm_root() / "package.json").read_text())
    semver = json.loads((npm_root() / "node_modules" / "semver" / "package.json").read_text())
    assert found[("npm", "npm")]["version"] == npm["version"]
    assert found[("npm", "semver")]["version"] == semver["version"]
    maven = [p for p in image["packages"] if p["ecosystem"] == "Maven"]
    assert maven and maven[0]["path"] == f"opt/java/{first_jar().name}"
    assert found[("Go", "stdlib")]["layer"] == digest_of(layers["go"])
    assert found[("Go", "stdlib")]["path"] == "usr/bin/umoci"
    assert image["unreadable"] == [] and image["skipped"] == [] and image["skipped_total"] == 0


def test_what_an_upper_layer_removes_is_not_reported(
    server: RunningServer, pushed: dict[str, str], layers: dict[str, bytes]
) -> None:
    [image] = inventory_json(server, f"{pushed['repo']}@{pushed['removed']}")["images"]
    found = {(p["ecosystem"], p["name"]): p for p in image["packages"]}
    assert ("Debian", "sed") not in found  # the status file rewritten without it
    assert ("PyPI", "httpx") not in found  # its dist-info whited out
    assert ("PyPI", "pydantic") in found
    # adduser is in the rewritten status too, but it came with the base layer
    assert found[("Debian", "adduser")]["layer"] == digest_of(layers["base"])


def test_an_index_is_inventoried_per_platform(server: RunningServer, pushed: dict[str, str]) -> None:
    report = inventory_json(server, f"{pushed['repo']}:multi")
    assert [(i["platform"], i["manifest"]) for i in report["images"]] == [
        ("linux/amd64", pushed["full"]),
        ("linux/arm64", pushed["arm"]),
    ]
    assert report["not_images"] == {pushed["attestation"]: "attestation manifest"}
    arm = {p["name"] for p in report["images"][1]["packages"]}
    assert arm == set(DEBS)


def test_table_output_and_errors(server: RunningServer, pushed: dict[str, str]) -> None:
    done = inventory(server, f"{pushed['repo']}:full")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert any(
        line.split()[:3] == ["sed", dpkg_version(dpkg_stanzas(["sed"])["sed"]), "Debian"] for line in lines
    )
    unknown = inventory(server, f"{pushed['repo']}:no-such-tag")
    assert unknown.returncode == 1 and "manifest unknown" in unknown.stderr
    artifact = inventory(server, f"{pushed['repo']}:artifact")
    assert artifact.returncode == 1 and "not a container image" in artifact.stderr, artifact.stderr
    assert OCI_EMPTY in artifact.stderr


# --- SBOMs ------------------------------------------------------------------------------------------
CYCLONEDX = "application/vnd.cyclonedx+json"
SPDX = "application/spdx+json"


def sbom(server: RunningServer, ref: str, *args: str) -> subprocess.CompletedProcess[str]:
    return run_dockyard("sbom", "--config", server.config_path, ref, *args)


def referrers(server: RunningServer, repo: str, digest: str, artifact_type: str) -> list[dict[str, Any]]:
    answer = httpx.get(
        f"{server.url}/v2/{repo}/referrers/{digest}",
        params={"artifactType": artifact_type},
        timeout=HTTP_TIMEOUT,
    )
    assert answer.status_code == 200, answer.text
    return list(answer.json()["manifests"])


def stored_document(server: RunningServer, repo: str, referrer: str) -> bytes:
    oci = OCIClient(httpx.Client(base_url=server.url, timeout=HTTP_TIMEOUT))
    manifest = oci.get_manifest(repo, referrer).json()
    [layer] = manifest["layers"]
    return oci.http.get(f"/v2/{repo}/blobs/{layer['digest']}").content


def test_cyclonedx_sbom_is_valid_and_stored_as_a_referrer(
    server: RunningServer, pushed: dict[str, str]
) -> None:
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    repo, image = pushed["repo"], pushed["full"]
    assert referrers(server, repo, image, CYCLONEDX) == []
    done = sbom(server, f"{repo}:full", "--format", "cyclonedx")
    assert done.returncode == 0, done.stderr
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(done.stdout) is None
    document = json.loads(done.stdout)
    assert document["specVersion"] == "1.6"
    assert document["metadata"]["component"]["version"] == image
    components = {c["name"]: c for c in document["components"]}
    assert components["sed"]["version"] == dpkg_version(dpkg_stanzas(["sed"])["sed"])
    assert components["sed"]["purl"].startswith("pkg:deb/")
    [listed] = referrers(server, repo, image, CYCLONEDX)
    assert listed["artifactType"] == CYCLONEDX
    assert f"stored as referrer {listed['digest']}" in done.stderr
    assert stored_document(server, repo, listed["digest"]).decode().strip() == done.stdout.strip()
    again = sbom(server, f"{repo}@{image}")  # cyclonedx is the default format
    assert again.returncode == 0 and again.stdout == done.stdout
    assert "stored already as" in again.stderr
    assert len(referrers(server, repo, image, CYCLONEDX)) == 1
    refreshed = sbom(server, f"{repo}@{image}", "--refresh", "--no-store")
    assert refreshed.returncode == 0 and "referrer" not in refreshed.stderr
    assert len(referrers(server, repo, image, CYCLONEDX)) == 1


def test_spdx_sbom_of_one_platform_of_an_index(
    server: RunningServer, pushed: dict[str, str], tmp_path: Path
) -> None:
    from spdx_tools.spdx.parser.parse_anything import parse_file
    from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

    repo = pushed["repo"]
    refused = sbom(server, f"{repo}:multi", "--format", "spdx")
    assert refused.returncode == 1
    assert "index of 2 images: choose one (linux/amd64, linux/arm64)" in refused.stderr
    out = tmp_path / "arm.spdx.json"
    done = sbom(server, f"{repo}:multi", "--format", "spdx", "--platform", "linux/arm64", "-o", str(out))
    assert done.returncode == 0, done.stderr
    document = parse_file(str(out))
    assert validate_full_spdx_document(document) == []
    assert document.creation_info.spdx_version == "SPDX-2.3"
    assert {p.name for p in document.packages} == {repo, *DEBS}
    [listed] = referrers(server, repo, pushed["arm"], SPDX)
    assert stored_document(server, repo, listed["digest"]) == out.read_bytes()
    assert referrers(server, repo, pushed["full"], SPDX) == []
    bad = sbom(server, f"{repo}:full", "--format", "xml")
    assert bad.returncode == 2 and "expected one of cyclonedx, spdx" in bad.stderr


def test_sbom_job_through_the_api(
    make_server: Callable[..., RunningServer], layers: dict[str, bytes]
) -> None:
    password = "sbom-job-admin-password-1"
    jobs = make_server(
        {"auth": {"enabled": True}, "jobs": {"run_in_serve": True}},
        env={"DOCKYARD_ADMIN_PASSWORD": password},
    )
    admin = ("admin", password)
    with httpx.Client(base_url=jobs.url, auth=admin, timeout=HTTP_TIMEOUT) as http:
        image = push(OCIClient(http), "library/base", "12", [(OCI_LAYER, layers["base"])])
        api = "/api/v1/jobs"
        bad = http.post(api, json={"kind": "sbom", "params": {"repository": "library/base"}}).json()
        queued = http.post(
            api,
            json={
                "kind": "sbom",
                "params": {"repository": "library/base", "reference": "12", "format": "spdx"},
            },
        )
        assert queued.status_code == 201, queued.text
        # It fails on its first attempt, naming the parameter: the sbom kind allows one (the job was
        # queued by an HTTP worker, which does not know the kinds' limits: the runner applies them).
        deadline = time.monotonic() + 60
        while (failed := http.get(f"{api}/{bad['id']}").json())["error"] is None:
            assert time.monotonic() < deadline, failed
            time.sleep(0.2)
        assert (failed["status"], failed["attempts"]) == ("failed", 1), failed
        assert "params.reference" in failed["error"], failed
        deadline = time.monotonic() + 60
        good = f"{api}/{queued.json()['id']}"
        while (done := http.get(good).json())["status"] not in ("succeeded", "failed"):
            assert time.monotonic() < deadline, done
            time.sleep(0.2)
        assert done["status"] == "succeeded", done
        result = done["result"]
        assert (result["image"], result["format"], result["created"]) == (image, "spdx", True)
        listed = http.get(f"/v2/library/base/referrers/{image}").json()["manifests"]
        assert [(m["digest"], m["artifactType"]) for m in listed] == [(result["referrer"], SPDX)]
