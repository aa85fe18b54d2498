"""A node SIGKILLed under load, in the middle of chunked uploads and pulls, then started again.

At the end every image any client was told was pushed pulls bit for bit (through HAProxy and from each
node), and every failure a client saw was one a real client retries (tests/cluster/resilient.py says
exactly which); failures happen only while the node is down or coming back.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from tests.cluster.deployment import Cluster, node_name
from tests.cluster.load import CHUNK, Load, verify_all
from tests.cluster.resilient import Journal, ResilientClient, digest_of, make_image
from tests.cluster.test_cross_node import on

MiB = 1024 * 1024
VICTIM = 1  # node2
# Each load thread pauses between operations: with 3 pushers, 2 pullers and skopeo there is still a
# request in flight most of the time, at a fraction of the CPU of an unpaced load (41 pushes, 34 s CPU).
LOAD_PAUSE = 3.0
SETTLE_SECONDS = 15.0  # after HAProxy shows the node UP again: its slowstart (10 s) and some margin


def slow_body(data: bytes, sent_half: threading.Event) -> Iterator[bytes]:
    """A PATCH body that streams slowly and says when half of it is out: the node dies mid-chunk."""
    piece = 256 * 1024
    for start in range(0, len(data), piece):
        if start >= len(data) // 2:
            sent_half.set()
            time.sleep(0.2)
        yield data[start : start + piece]


def test_a_node_killed_mid_upload_and_mid_load_loses_nothing(cluster: Cluster, tmp_path: Path) -> None:
    victim = cluster.nodes[VICTIM]
    load = Load(cluster, tmp_path, pause=LOAD_PAUSE)
    load.start()
    load.wait_for_pushes(4)

    # An upload in flight on the victim: one chunk done, the next one streaming when it dies.
    data = os.urandom(9 * MiB + 3)
    direct = cluster.http(victim.url)
    started = direct.post("/v2/chaos/victim/blobs/uploads/", headers={"Content-Length": "0"})
    first = direct.patch(on(direct, started.headers["Location"]), content=data[: 4 * MiB],
                         headers={"Content-Range": f"0-{4 * MiB - 1}"})  # fmt: skip
    assert first.status_code == 202, first.text
    sent_half, outcome = threading.Event(), {}

    def second_chunk() -> None:
        try:
            url = on(direct, first.headers["Location"])
            outcome["answer"] = direct.patch(url, content=slow_body(data[4 * MiB :], sent_half))
        except httpx.TransportError as exc:
            outcome["error"] = exc

    patching = threading.Thread(target=second_chunk)
    patching.start()
    assert sent_half.wait(30)
    killed_at = time.monotonic()
    cluster.kill_node(VICTIM)
    patching.join(30)
    assert "error" in outcome, f"the PATCH survived its node's death: {outcome}"

    # The same session continues through HAProxy, on the nodes that are left, from where it stood.
    journal = Journal()
    client = ResilientClient(cluster.http(), journal, CHUNK)
    location, offset = client.retrying(lambda: client._resume("chaos/victim", first.headers["Location"]))
    assert offset == 4 * MiB  # what the first chunk left; the cut one left nothing behind
    headers = {"Content-Range": f"{offset}-{len(data) - 1}"}
    rest = client.retrying(lambda: client.send("PATCH", location, content=data[offset:], headers=headers))
    assert rest.status_code == 202, rest.text
    url = client.http.base_url.join(rest.headers["Location"]).copy_merge_params({"digest": digest_of(data)})
    assert client.retrying(lambda: client.send("PUT", url)).status_code == 201
    victim_image = make_image("chaos/victim", "survivor", [data])
    client.push_image(victim_image)  # the layer is there already (HEAD): config and manifest
    load.record(victim_image)

    cluster.proxy.wait_for_state(node_name(VICTIM), up=False, timeout=30)
    load.wait_for_pushes(4)  # two nodes carry on
    cluster.restart_node(VICTIM)
    cluster.proxy.wait_for_state(node_name(VICTIM), up=True, timeout=60)
    back_at = time.monotonic()
    load.wait_for_pushes(6)
    load.stop()

    assert not load.journal.fatal, load.journal.fatal
    assert not journal.fatal, journal.fatal
    late = [at - back_at for at in load.journal.retried_at if at > back_at + SETTLE_SECONDS]
    assert not late, f"failures long after the node was back: {late} {load.journal.retried}"
    early = [killed_at - at for at in load.journal.retried_at if at < killed_at]
    assert not early, f"failures before anything went wrong: {load.journal.retried}"
    verify_all(cluster, load.journal, load.pushed)
    assert not load.journal.fatal, load.journal.fatal
    print(f"\n{load.pushes()} pushes; failures clients retried: {dict(load.journal.retried)}")
