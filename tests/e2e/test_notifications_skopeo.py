"""registry:2 notifications from a push by a real client: `skopeo copy` of an image into dockyard sends
a listener on loopback one push event per blob and one for the manifest, in registry:2's envelope,
with skopeo's user agent, the pushing user and the manifest's tag (docs/notifications.md)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.oci import write_oci_layout
from tests.support.receivers import Receiver, running_receiver
from tests.support.server import RunningServer, start_server
from tests.support.tools import ContainerTools

ADMIN = ("admin", "notify-skopeo-Passw0rd")
LAYER = "application/octet-stream"


@pytest.fixture
def listener() -> Iterator[Receiver]:
    with running_receiver() as receiver:
        yield receiver


@pytest.fixture
def registry(tmp_path: Path, listener: Receiver) -> Iterator[RunningServer]:
    running = start_server(
        tmp_path / "server",
        {
            "auth": {"enabled": True},
            "jobs": {"run_in_serve": True},
            "upstream": {"allowed_networks": ["127.0.0.0/8"]},
            "notifications": {"endpoints": [{"name": "listener", "url": listener.url}]},
        },
        env={"DOCKYARD_ADMIN_PASSWORD": ADMIN[1]},
    )
    yield running
    running.stop()


def test_a_skopeo_push_sends_blob_and_manifest_push_events(
    registry: RunningServer, listener: Receiver, tmp_path: Path
) -> None:
    tools = ContainerTools(tmp_path / "machine")
    try:
        image = write_oci_layout(tmp_path / "image", layers=2, seed=11)
        tools.skopeo(
            "copy", "--dest-tls-verify=false", "--dest-creds", ":".join(ADMIN), image.transport_ref,
            f"docker://{registry.host}/team/app:1.0",
        )  # fmt: skip
    finally:
        tools.cleanup()
    (pushed,) = image.images
    blobs = set(pushed.blob_digests)
    listener.wait_for(
        lambda events: {e["target"]["digest"] for e in events} >= {*blobs, pushed.manifest.digest}
    )

    events = listener.accepted_events()
    blob_events = [e for e in events if e["target"]["mediaType"] == LAYER]
    assert {e["target"]["digest"] for e in blob_events} == blobs
    (manifest,) = [e for e in events if e["target"]["digest"] == pushed.manifest.digest]
    assert manifest["action"] == "push"
    target = manifest["target"]
    assert (target["repository"], target["tag"], target["mediaType"]) == (
        "team/app", "1.0", pushed.manifest.media_type
    )  # fmt: skip
    assert target["size"] == target["length"] == pushed.manifest.size
    assert manifest["actor"]["name"] == "admin"
    assert "skopeo" in manifest["request"]["useragent"] or "containers" in manifest["request"]["useragent"]
    assert all(e["action"] == "push" and e["target"]["repository"] == "team/app" for e in blob_events)
