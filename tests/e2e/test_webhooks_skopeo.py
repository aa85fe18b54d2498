"""A per-project webhook policy from a push by a real client: `skopeo copy` into a project with a
harbor-format, signed policy delivers one PUSH_ARTIFACT event for the manifest (no blob events) to a
receiver on loopback, with the digest, tag, pushing user and a valid signature (docs/webhooks.md)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.oci import write_oci_layout
from tests.support.receivers import Receiver, running_receiver
from tests.support.server import RunningServer, start_server
from tests.support.timeouts import HTTP_TIMEOUT
from tests.support.tools import ContainerTools

ADMIN = ("admin", "hooks-skopeo-Passw0rd")
SECRET = "skopeo-webhook-secret"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as running:
        yield running


@pytest.fixture
def registry(tmp_path: Path, receiver: Receiver) -> Iterator[RunningServer]:
    running = start_server(
        tmp_path / "server",
        {
            "auth": {"enabled": True},
            "jobs": {"run_in_serve": True},
            "upstream": {"allowed_networks": ["127.0.0.0/8"]},
        },
        env={"DOCKYARD_ADMIN_PASSWORD": ADMIN[1]},
    )
    with httpx.Client(base_url=f"{running.url}/api/v1", auth=ADMIN, timeout=HTTP_TIMEOUT) as api:
        assert api.post("/projects", json={"name": "team"}).status_code == 201
        hook = {"name": "ci", "url": receiver.url, "events": ["push"], "format": "harbor", "secret": SECRET}
        assert api.post("/projects/team/webhooks", json=hook).status_code == 201
    yield running
    running.stop()


def test_a_skopeo_push_delivers_a_signed_harbor_event(
    registry: RunningServer, receiver: Receiver, tmp_path: Path
) -> None:
    tools = ContainerTools(tmp_path / "machine")
    try:
        image = write_oci_layout(tmp_path / "image", layers=2, seed=23)
        tools.skopeo(
            "copy", "--dest-tls-verify=false", "--dest-creds", ":".join(ADMIN), image.transport_ref,
            f"docker://{registry.host}/team/app:1.0",
        )  # fmt: skip
    finally:
        tools.cleanup()
    (pushed,) = image.images
    (request,) = receiver.wait_for_bodies(lambda got: len(got) >= 1)
    body = request.body
    assert body["type"] == "PUSH_ARTIFACT" and body["operator"] == "admin"
    (resource,) = body["event_data"]["resources"]
    assert resource["digest"] == pushed.manifest.digest and resource["tag"] == "1.0"
    assert resource["resource_url"] == f"{registry.host}/team/app:1.0"
    assert body["event_data"]["repository"]["repo_full_name"] == "team/app"
    expected = "sha256=" + hmac.new(SECRET.encode(), request.raw, hashlib.sha256).hexdigest()
    assert request.headers["x-dockyard-signature"] == [expected]
    assert len(receiver.requests) == 1  # the blobs sent nothing
