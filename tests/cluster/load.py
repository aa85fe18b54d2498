"""Load for the chaos tests: threads pushing and pulling through HAProxy with `ResilientClient`s, and
skopeo copying, until told to stop; every push a client was told succeeded is kept for the final check.
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.cluster.deployment import ADMIN, Cluster
from tests.cluster.resilient import OCI_MANIFEST, Fatal, Image, Journal, ResilientClient, make_image
from tests.support.oci import write_oci_layout
from tests.support.tools import ContainerTools

MiB = 1024 * 1024
CHUNK = 1 * MiB
# What skopeo reports for failures it (and containers/image) would retry: a cut connection or a 5xx.
SKOPEO_RETRYABLE = re.compile(
    r"\b50[0234]\b|connection reset|connection refused|\bEOF\b|broken pipe|"
    r"Service Unavailable|Bad Gateway|Gateway Time-?out|Internal Server Error",
    re.IGNORECASE,
)
SKOPEO_ATTEMPTS = 6


@dataclass
class Load:
    cluster: Cluster
    workdir: Path
    pushers: int = 3
    pullers: int = 2
    skopeo: bool = True
    # Seconds each thread waits between its operations. 0: as fast as the cores allow; a pause keeps
    # requests in flight on every node without the load taking both cores for the whole test.
    pause: float = 0.0
    # Of this load's own: its images' layers and tags differ from those of an earlier test on the same
    # cluster (whose blobs a push would otherwise find there and skip).
    seed: int = field(default_factory=lambda: random.randrange(1 << 30))
    journal: Journal = field(default_factory=Journal)
    pushed: list[Image] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        # Two base layers every pusher's images share (as images built FROM one base do).
        bases = [random.Random(f"base{n}").randbytes(2 * MiB + n) for n in range(2)]
        for number in range(self.pushers):
            self._spawn(f"pusher{number}", lambda number=number: self._push_loop(number, bases))
        for number in range(self.pullers):
            self._spawn(f"puller{number}", lambda number=number: self._pull_loop(number))
        if self.skopeo:
            self._spawn("skopeo", self._skopeo_loop)

    def pushes(self) -> int:
        with self._lock:
            return len(self.pushed)

    def wait_for_pushes(self, count: int, timeout: float = 120.0) -> None:
        """Until `count` more pushes than now have succeeded (the registry takes writes)."""
        target = self.pushes() + count
        deadline = time.monotonic() + timeout
        while self.pushes() < target:
            assert not self.journal.fatal, self.journal.fatal
            assert time.monotonic() < deadline, f"{self.pushes()} pushes, expected {target}"
            assert all(thread.is_alive() for thread in self._threads), "a load thread died"
            time.sleep(0.1)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=180)
        assert not any(thread.is_alive() for thread in self._threads), "a load thread hangs"

    def record(self, image: Image) -> None:
        with self._lock:
            self.pushed.append(image)

    # --- the threads --------------------------------------------------------------------------
    def _spawn(self, name: str, body: Callable[[], None]) -> None:
        def run() -> None:
            try:
                body()
            except Fatal:
                pass  # recorded in the journal already
            except Exception as exc:
                self.journal.fail(f"{name}: {exc!r}")

        thread = threading.Thread(target=run, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _client(self) -> ResilientClient:
        return ResilientClient(self.cluster.http(), self.journal, CHUNK)

    def _push_loop(self, worker: int, bases: list[bytes]) -> None:
        rng = random.Random(f"{self.seed}-{worker}")
        client = self._client()
        number = 0
        while not self._stop.is_set():
            own = rng.randbytes(rng.randint(MiB // 2, 3 * MiB))
            # Half the images go to one repository all pushers share, half to the pusher's own.
            repo = "chaos/shared" if number % 2 else f"chaos/pusher{worker}"
            image = make_image(repo, f"{self.seed}-w{worker}-{number}", [bases[number % 2], own])
            client.push_image(image)
            self.record(image)
            number += 1
            self._stop.wait(self.pause)

    def _pull_loop(self, worker: int) -> None:
        rng = random.Random(100 + worker)
        client = self._client()
        while not self._stop.is_set():
            with self._lock:
                image = rng.choice(self.pushed) if self.pushed else None
            if image is None:
                time.sleep(0.1)
                continue
            client.pull_and_verify(image)
            self._stop.wait(self.pause)

    def _skopeo_loop(self) -> None:
        tools = ContainerTools(self.workdir / "skopeo-home")
        try:
            number = 0
            while not self._stop.is_set():
                layout = write_oci_layout(
                    self.workdir / f"layout{number}", layers=2, layer_size=MiB, seed=self.seed + number
                )
                blobs = {digest: layout.blobs[digest] for digest in layout.images[0].blob_digests}
                manifest = layout.blobs[layout.top.digest]
                image = Image("chaos/skopeo", f"{self.seed}-s{number}", manifest, blobs)
                target = f"docker://{self.cluster.proxy.host}/{image.repo}:{image.tag}"
                self._skopeo_copy(tools, layout.transport_ref, target)
                self.record(image)
                number += 1
                self._stop.wait(self.pause)
        finally:
            tools.cleanup()

    def _skopeo_copy(self, tools: ContainerTools, source: str, target: str) -> None:
        creds = f"{ADMIN[0]}:{ADMIN[1]}"
        for _ in range(SKOPEO_ATTEMPTS):
            args = ("copy", "--retry-times", "3", "--dest-tls-verify=false", "--dest-creds", creds)
            result = tools.skopeo(*args, source, target, check=False)
            if result.returncode == 0:
                return
            if not SKOPEO_RETRYABLE.search(result.stderr):
                self.journal.fail(f"skopeo: {result.stderr.strip()[-500:]}")
                raise Fatal(result.stderr)
            self.journal.retry("skopeo copy: " + result.stderr.strip().splitlines()[-1][-120:])
            time.sleep(1)
        self.journal.fail(f"skopeo failed {SKOPEO_ATTEMPTS} times: {result.stderr.strip()[-500:]}")
        raise Fatal(result.stderr)


def verify_all(cluster: Cluster, journal: Journal, images: list[Image]) -> None:
    """Every image pulls bit for bit through HAProxy; every node has its manifest (exact bytes), its
    blobs (sizes) and its tag."""
    client = ResilientClient(cluster.http(), journal, CHUNK, deadline=10)
    for image in images:
        client.pull_and_verify(image)
    client.http.close()
    tags: dict[str, set[str]] = {}
    for image in images:
        tags.setdefault(image.repo, set()).add(image.tag)
    for node in cluster.nodes:
        with cluster.http(node.url) as http:
            for image in images:
                got = http.get(f"/v2/{image.repo}/manifests/{image.digest}", headers={"Accept": OCI_MANIFEST})
                assert got.status_code == 200 and got.content == image.manifest, (node.url, image.tag)
                for digest, data in image.blobs.items():
                    head = http.head(f"/v2/{image.repo}/blobs/{digest}")
                    assert head.headers.get("content-length") == str(len(data)), (node.url, digest)
            for repo, expected in tags.items():
                listed = http.get(f"/v2/{repo}/tags/list", params={"n": 10000})
                assert listed.status_code == 200, listed.text
                assert expected <= set(listed.json()["tags"]), (node.url, repo)
