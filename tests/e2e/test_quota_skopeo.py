"""Storage quotas with a real client: skopeo pushes every blob as POST, one PATCH with all of it,
PUT ?digest=, and does so for blobs another repository of the project holds whenever its own cache
does not know them there (another machine, a CI runner). A full project must take such a push, since
it adds nothing, and refuse one that brings new content."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.oci import write_oci_layout
from tests.support.server import RunningServer, start_server
from tests.support.timeouts import HTTP_TIMEOUT
from tests.support.tools import ContainerTools

ADMIN = ("admin", "quota-skopeo-Passw0rd")


@pytest.fixture
def machines(tmp_path: Path) -> Iterator[tuple[ContainerTools, ContainerTools]]:
    """Two machines pushing: each has its own blob info cache."""
    laptop, runner = ContainerTools(tmp_path / "laptop"), ContainerTools(tmp_path / "runner")
    yield laptop, runner
    laptop.cleanup()
    runner.cleanup()


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[RunningServer]:
    running = start_server(
        tmp_path / "server",
        {"auth": {"enabled": True}, "http": {"workers": 2}},
        env={"DOCKYARD_ADMIN_PASSWORD": ADMIN[1]},
    )
    yield running
    running.stop()


def push(tools: ContainerTools, source: str, destination: str, check: bool = True) -> str:
    result = tools.skopeo(
        "copy", "--dest-tls-verify=false", "--dest-creds", ":".join(ADMIN), source, destination, check=check
    )
    return result.stderr if result.returncode else ""


def test_a_full_project_takes_an_image_it_already_holds_and_refuses_new_content(
    registry: RunningServer, machines: tuple[ContainerTools, ContainerTools], tmp_path: Path
) -> None:
    laptop, runner = machines
    image = write_oci_layout(tmp_path / "image", layers=2, layer_size=256 * 1024, seed=7)
    other = write_oci_layout(tmp_path / "other", layers=1, layer_size=64 * 1024, seed=8)
    with httpx.Client(base_url=f"{registry.url}/api/v1", auth=ADMIN, timeout=HTTP_TIMEOUT) as api:
        assert api.post("/projects", json={"name": "team"}).status_code == 201
        push(laptop, image.transport_ref, f"docker://{registry.host}/team/app:1")
        used = api.get("/projects/team/quota").json()["used_bytes"]
        assert (
            api.put("/projects/team/quota", json={"limit_bytes": used, "warn_percent": 80}).status_code == 200
        )

        # Another machine pushes the same image into another repository of the full project.
        push(runner, image.transport_ref, f"docker://{registry.host}/team/copy:1")
        assert api.get("/projects/team/quota").json()["used_bytes"] == used

        refused = push(runner, other.transport_ref, f"docker://{registry.host}/team/app:2", check=False)
        assert "denied: quota of project team exceeded" in refused, refused
        assert api.get("/projects/team/quota").json()["used_bytes"] == used
