"""A real client under the limits: skopeo (Debian's 1.9) pushes an image to a registry that allows one
open upload per client (it uploads one layer at a time, so it never meets the limit), and through a
request limit it meets. Met on a read (`GET`, `HEAD`), skopeo waits for Retry-After and retries by
itself; met on a write (a blob `PATCH`, the manifest `PUT`), it stops with the registry's message
(`toomanyrequests: too many requests from this address ...`)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.oci import write_oci_layout
from tests.support.server import RunningServer, start_server
from tests.support.timeouts import HTTP_TIMEOUT
from tests.support.tools import ContainerTools


@pytest.fixture
def tools(tmp_path: Path) -> Iterator[ContainerTools]:
    made = ContainerTools(tmp_path / "client")
    yield made
    made.cleanup()


def serve(tmp_path: Path, limits: dict[str, object]) -> RunningServer:
    return start_server(tmp_path / "server", {"http": {"workers": 2}, "limits": limits})


def push(tools: ContainerTools, registry: RunningServer, source: str, tag: str) -> None:
    destination = f"docker://{registry.host}/team/app:{tag}"
    tools.skopeo("copy", "--dest-tls-verify=false", source, destination)  # check=True: it must succeed


def tags(registry: RunningServer) -> list[str]:
    """From another address than skopeo's: its budget may be spent."""
    transport = httpx.HTTPTransport(local_address="127.0.0.2")
    with httpx.Client(transport=transport, timeout=HTTP_TIMEOUT) as http:
        return sorted(http.get(f"{registry.url}/v2/team/app/tags/list").json()["tags"])


def test_skopeo_pushes_under_the_concurrent_upload_limit(tools: ContainerTools, tmp_path: Path) -> None:
    registry = serve(tmp_path, {"uploads_per_client": 1})
    try:
        image = write_oci_layout(tmp_path / "image", layers=5, layer_size=2 * 1024 * 1024, seed=11)
        push(tools, registry, image.transport_ref, "1")
        assert tags(registry) == ["1"]
    finally:
        registry.stop()


def test_skopeo_over_the_request_limit_says_why(tools: ContainerTools, tmp_path: Path) -> None:
    registry = serve(tmp_path, {"address": {"rate": 1, "burst": 3}})
    try:
        image = write_oci_layout(tmp_path / "image", layers=3, layer_size=64 * 1024, seed=12)
        destination = f"docker://{registry.host}/team/app:1"
        result = tools.skopeo(
            "copy", "--dest-tls-verify=false", image.transport_ref, destination, check=False
        )
        assert re.search(r"status=429", registry.log()), (
            "the push never met the limit: the test shows nothing"
        )
        if result.returncode != 0:  # met on a write: skopeo stops, in the registry's words
            assert "toomanyrequests: too many requests from this address" in result.stderr, result.stderr
        else:  # met on reads only: skopeo waited for Retry-After each time
            assert tags(registry) == ["1"]
    finally:
        registry.stop()
