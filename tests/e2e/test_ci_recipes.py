"""docs/ci.md, run as written: the administrator's block and the pipeline script `ci/dockyard.sh` are
read from the page and run with `sh` against a real dockyard (auth on, job worker, a vulnerability
database with one high-severity advisory), with buildah building and pushing as the robot the block
created. A clean image goes through build, push, gate, sign and promote and pulls under the project's
pull policy; a vulnerable one stops the pipeline at the gate. The Jenkins, GitLab and GitHub files of the
page call exactly the script's steps."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from tests.support.server import DOCKYARD, REPO_ROOT, RunningServer, start_server
from tests.support.timeouts import HTTP_TIMEOUT
from tests.support.tools import ContainerTools

pytestmark = pytest.mark.db_independent

DOC = REPO_ROOT / "docs" / "ci.md"
ADMIN = ("admin", "ci-recipes-Passw0rd-1")
PROJECT, PIPELINE = "team", "ci"
STEPS = ["build", "push", "gate", "sign", "promote"]
FIXED = "3.0.11-1~deb12u2"
VULNERABLE = "3.0.9-1"
ADVISORY = "TEST-DEB-OPENSSL"


def blocks() -> dict[str, str]:
    """The page's marked code blocks: `<!-- ci:NAME -->` then a fenced block."""
    found = re.findall(r"<!-- ci:(\w+) -->\n```\w*\n(.*?)\n```\n", DOC.read_text(), re.S)
    return dict(found)


def sh(script: str, env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        ["sh", "-c", script, "sh", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    print(f"--- sh {' '.join(args)}: exit {done.returncode}\n{done.stdout}{done.stderr}")
    return done


def advisory() -> dict[str, object]:
    return {
        "id": ADVISORY,
        "modified": "2026-01-01T00:00:00Z",
        "aliases": ["CVE-2099-1313"],
        "summary": "test: openssl",
        "database_specific": {"severity": "HIGH"},
        "affected": [
            {
                "package": {"ecosystem": "Debian:12", "name": "openssl"},
                "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": FIXED}]}],
            }
        ],
    }


def build_context(root: Path, version: str) -> Path:
    """A Containerfile FROM scratch whose one layer is a Debian 12 dpkg database with libssl3 `version`."""
    rootfs = root / "rootfs"
    (rootfs / "etc").mkdir(parents=True)
    (rootfs / "var/lib/dpkg").mkdir(parents=True)
    (rootfs / "etc/os-release").write_text('PRETTY_NAME="Debian GNU/Linux 12"\nID=debian\nVERSION_ID="12"\n')
    (rootfs / "var/lib/dpkg/status").write_text(
        "Package: libssl3\nStatus: install ok installed\nPriority: optional\nSection: libs\n"
        "Architecture: amd64\nMulti-Arch: same\nSource: openssl\n"
        f"Version: {version}\nDescription: Secure Sockets Layer toolkit - shared libraries\n"
    )
    (root / "Containerfile").write_text("FROM scratch\nCOPY rootfs/ /\n")
    return root


@dataclass
class Setup:
    server: RunningServer
    tools: ContainerTools
    robot: str
    secret: str
    signing_key: Path
    root: Path

    def pipeline_env(self, image: str, context: Path) -> dict[str, str]:
        return {
            **self.tools.env,
            "PATH": f"{Path(DOCKYARD).parent}:{os.environ['PATH']}",
            "XDG_CONFIG_HOME": str(self.root / "no-login"),  # the robot needs no stored login
            "REGISTRY": self.server.host,
            "DOCKYARD_SERVER": self.server.url,  # plain HTTP in the test
            "TLS_VERIFY": "false",
            "DOCKYARD_USERNAME": self.robot,
            "DOCKYARD_PASSWORD": self.secret,
            "IMAGE": image,
            "TAG": "1",
            "CONTEXT": str(context),
            "SIGNING_KEY": str(self.signing_key),
            "SCAN_TIMEOUT": "60",
        }

    def head(self, repository: str, reference: str) -> str:
        accept = "application/vnd.oci.image.manifest.v1+json"
        answer = httpx.head(
            f"{self.server.url}/v2/{repository}/manifests/{reference}",
            auth=ADMIN,
            headers={"Accept": accept},
            timeout=HTTP_TIMEOUT,
        )
        assert answer.status_code == 200, (repository, reference, answer.status_code)
        return answer.headers["docker-content-digest"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    root = tmp_path_factory.mktemp("ci-recipes")
    server = start_server(
        root / "server",
        {"auth": {"enabled": True}, "jobs": {"run_in_serve": True}},
        env={"DOCKYARD_ADMIN_PASSWORD": ADMIN[1]},
    )
    tools = ContainerTools(root / "containers")
    try:
        records = root / "osv"
        records.mkdir()
        (records / f"{ADVISORY}.json").write_text(json.dumps(advisory()))
        imported = subprocess.run(
            [DOCKYARD, "vulndb", "import", str(records), "--config", str(server.config_path)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert imported.returncode == 0, imported.stderr
        admin_dir = root / "admin"
        admin_dir.mkdir()
        env = {
            **os.environ,
            "PATH": f"{Path(DOCKYARD).parent}:{os.environ['PATH']}",
            "XDG_CONFIG_HOME": str(admin_dir / "config"),
            "DOCKYARD_CONFIG": str(server.config_path),  # `trust key add` runs on the registry node
            "DOCKYARD_SERVER": server.url,
            "PROJECT": PROJECT,
            "PIPELINE": PIPELINE,
        }
        login = subprocess.run(
            [DOCKYARD, "login", server.url, "--username", "admin", "--password-stdin"],
            input=ADMIN[1] + "\n",
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert login.returncode == 0, login.stderr
        done = sh(blocks()["admin"], env, admin_dir)
        assert done.returncode == 0, done.stderr
        robot = re.search(r"Created (robot\$\S+)", done.stdout)
        secret = re.search(r"Secret \(shown only this once\): (\S+)", done.stdout)
        assert robot is not None and secret is not None, done.stdout
        assert robot.group(1) == f"robot${PROJECT}+{PIPELINE}"
        yield Setup(server, tools, robot.group(1), secret.group(1), admin_dir / "signing.key", root)
    finally:
        tools.cleanup()
        server.stop()


def test_a_clean_image_is_built_pushed_gated_signed_and_promoted(setup: Setup, tmp_path: Path) -> None:
    script = blocks()["script"]
    env = setup.pipeline_env(f"{PROJECT}/app", build_context(tmp_path / "context", FIXED))
    work = tmp_path / "job"
    work.mkdir()
    for step in STEPS:
        done = sh(script, env, work, step)
        assert done.returncode == 0, (step, done.stderr)
        if step == "gate":
            assert "no known vulnerabilities" in done.stdout
            assert "empty vulnerability database" not in done.stderr
        if step == "sign":
            assert ": verified: " in done.stdout
    digest = (work / "image.digest").read_text().strip()
    assert setup.head(f"{PROJECT}/app", "1") == digest
    assert setup.head(f"{PROJECT}/app", "stable") == digest  # promoted: the same manifest
    trust = subprocess.run(
        [DOCKYARD, "trust", "verify", f"{PROJECT}/app:stable", "--config", str(setup.server.config_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert trust.returncode == 0, trust.stdout + trust.stderr
    # A deployment pulls `stable` under the project's policy (signature required, block high).
    pulled = setup.tools.skopeo(
        "copy",
        "--src-tls-verify=false",
        "--src-creds",
        f"{setup.robot}:{setup.secret}",
        f"docker://{setup.server.host}/{PROJECT}/app:stable",
        f"oci:{tmp_path / 'pulled'}:stable",
        check=False,
    )
    assert pulled.returncode == 0, pulled.stderr


def test_a_vulnerable_image_stops_the_pipeline_at_the_gate(setup: Setup, tmp_path: Path) -> None:
    script = blocks()["script"]
    env = setup.pipeline_env(f"{PROJECT}/vulnerable", build_context(tmp_path / "context", VULNERABLE))
    work = tmp_path / "job"
    work.mkdir()
    for step in ("build", "push"):
        done = sh(script, env, work, step)
        assert done.returncode == 0, (step, done.stderr)
    gate = sh(script, env, work, "gate")
    digest = (work / "image.digest").read_text().strip()
    assert gate.returncode == 3, gate.stdout + gate.stderr
    assert f"{ADVISORY} (CVE-2099-1313) libssl3 {VULNERABLE} (fixed: {FIXED})" in gate.stdout
    assert (
        f"{PROJECT}/vulnerable@{digest}: 1 high vulnerability at or above high (--fail-on high): failing"
        in gate.stderr
    )
    # The pull policy refuses it as well, to anyone.
    pulled = setup.tools.skopeo(
        "copy",
        "--src-tls-verify=false",
        "--src-creds",
        f"{setup.robot}:{setup.secret}",
        f"docker://{setup.server.host}/{PROJECT}/vulnerable:1",
        f"oci:{tmp_path / 'pulled'}:1",
        check=False,
    )
    assert pulled.returncode != 0
    assert "denied" in pulled.stderr


def called_steps(text: str) -> list[str]:
    return re.findall(r"sh ci/dockyard\.sh (\w+)", text)


def test_the_ci_files_call_the_scripts_steps_in_order() -> None:
    found = blocks()
    script_steps = re.findall(r"^(\w+)\)$", found["script"], re.M)
    assert script_steps == STEPS
    gitlab = yaml.safe_load(found["gitlab"])
    jobs = [name for name, job in gitlab.items() if isinstance(job, dict) and "script" in job]
    assert [gitlab[job]["stage"] for job in jobs] == gitlab["stages"]
    assert [step for job in jobs for step in called_steps("\n".join(gitlab[job]["script"]))] == STEPS
    github = yaml.safe_load(found["github"])
    (job,) = github["jobs"].values()
    assert called_steps("\n".join(step.get("run", "") for step in job["steps"])) == STEPS
    assert {"DOCKYARD_USERNAME", "DOCKYARD_PASSWORD"} <= set(job["env"])
    jenkins = found["jenkins"]
    assert called_steps(jenkins) == STEPS
    assert jenkins.count("{") == jenkins.count("}") and jenkins.count("(") == jenkins.count(")")
    assert jenkins.count("usernameVariable: 'DOCKYARD_USERNAME'") == 4  # every stage that talks to dockyard
